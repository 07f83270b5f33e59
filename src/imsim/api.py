"""The Python API: load a scenario, run it, read the result's tables, save its results folder.

>>> import imsim
>>> scenario = imsim.load_scenario("scenarios/baseline.yaml")
>>> result = imsim.run(scenario, engine="expected")
>>> result.summary.head()
>>> result.save("results/my-run")

This is the top layer, beside the command line: it joins the computation
(:func:`imsim.analysis.runner.run`) and the writing of a results folder
(:func:`imsim.output.runfolder.save_result`), which know nothing of each other.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from imsim.analysis.runner import Result
from imsim.core.version import __version__

__all__ = ["RunResult", "__version__", "load_scenario", "run"]


class RunResult(Result):
    """A :class:`~imsim.analysis.runner.Result` that can also write its results folder.

    Returned by :func:`run`; the computation knows nothing of files, this class adds
    :meth:`save`.
    """

    @classmethod
    def of(cls, result: Result) -> RunResult:
        """Wrap a computed ``result`` (its arrays and cached tables are shared, not copied).

        Parameters
        ----------
        result : imsim.analysis.runner.Result
            A finished run.

        Returns
        -------
        RunResult
            The same run, with :meth:`save`.
        """
        return cls(**{f.name: getattr(result, f.name) for f in dataclasses.fields(result)
                      if f.init})

    def save(self, out_dir: str | os.PathLike | None = None, figures: bool = True,
             report: bool = True) -> Path:
        """Write every table, figure, the report and the manifest into a new folder, atomically.

        Parameters
        ----------
        out_dir : path, optional
            The folder to create; it must not exist or be empty. Default: a fresh
            ``results/<name>-<timestamp>/``.
        figures : bool
            Draw the figures.
        report : bool
            Write ``report.html``.

        Returns
        -------
        Path
            The folder written (see :func:`imsim.output.runfolder.save_result`).

        Raises
        ------
        InputError
            When ``out_dir`` exists and is not empty (checked before anything is written).
        """
        from imsim.output.runfolder import save_result

        return save_result(self, out_dir, figures=figures, report=report)


def load_scenario(path: str | os.PathLike):
    """Load and validate a scenario file; see :func:`imsim.config.scenario.load_scenario`.

    Parameters
    ----------
    path : str or path
        A scenario YAML file.

    Returns
    -------
    imsim.config.scenario.Scenario
        The validated scenario, every default filled in.

    Raises
    ------
    InputError
        If the file cannot be read or any key or value is invalid (the message names the file,
        the key path, the bad value and what is allowed).
    """
    from imsim.config.scenario import load_scenario as _load

    return _load(path)


def run(scenario, engine: str | None = None, seed: int | None = None,
        replicates: int | None = None, progress: bool = False, calibration=None) -> RunResult:
    """Run a scenario and return a result that can save itself.

    Parameters
    ----------
    scenario : imsim.config.scenario.Scenario
        A loaded scenario (:func:`load_scenario`).
    engine : {"expected", "microsim"}, optional
        Overrides the scenario's engine.
    seed : int, optional
        Overrides the scenario's seed.
    replicates : int, optional
        Overrides the scenario's uncertainty draws (1: point estimate only).
    progress : bool
        Show a progress bar over the draws.
    calibration : str or path, optional
        A calibration name or folder, or ``"direct"``; default: the scenario's, else the
        packaged default fit.

    Returns
    -------
    RunResult
        The tables (``.summary``, ``.table(name)``), arms and ``.save()``; see
        :func:`imsim.analysis.runner.run`.

    Raises
    ------
    InputError
        For an unknown engine, a seed outside ``[0, 2**63)``, ``replicates < 1`` or a
        calibration that cannot be found or read.
    """
    from imsim.analysis.runner import run as _run

    return RunResult.of(_run(scenario, engine=engine, seed=seed, replicates=replicates,
                             progress=progress, calibration=calibration))
