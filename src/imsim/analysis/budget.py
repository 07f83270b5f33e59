"""Resource guards: how long and how much memory a run asks for, checked before it starts.

A valid scenario can still ask for far more than a machine has: ``--engine microsim
--replicates 10000`` over every state is about an hour and a half of work, and the expected
engine keeps every replicate of every cell in memory. :func:`estimate_run` predicts the time
and peak memory of ``imsim run`` from the run's size (cells x replicates; births x replicates for
the microsimulation) and per-unit costs measured on the development machine; :func:`check_run`
refuses a run past :data:`LIMIT_SECONDS` or :func:`limit_bytes` with one line giving the
estimate and the flag that accepts it (``--allow-large``).

The per-unit costs were measured with ``imsim.run`` on national scenarios (51 states, safe sleep
at 50% coverage) on 2 CPU cores (December 2026; peak resident memory from ``getrusage``):

* expected engine: 100 to 1,000 replicates x 510 to 2,040 cells took 2.6e-5 to 8.0e-5 s per cell
  x replicate (1,000 x 1,275 cells: 77 s, 6.0e-5); memory grew about 0.7 KB per cell x replicate
  above about 430 MB (1,000 x 1,275 cells: peak 1.28 GB);
* microsimulation: 5.5e-8 to 1.1e-7 s per birth x replicate (150 replicates of 3.47 million
  births: 57 s; 200 of 16.9 million: 188 s), memory about 4 KB per cell x replicate at 150
  replicates x 255 cells (peak 411 MB); the slowest figure was measured while other tests ran,
  and issue 17 reports 1 h 33 min for 10,000 replicates of the 2013-2015 baseline (11.9 million
  births: 4.7e-8).

The time constants lie in the upper half of those ranges and the memory constants above them,
so the estimate errs towards refusing; it is an order of magnitude, not a promise (other machines
are faster or slower).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from imsim.core.errors import InputError

#: Seconds per cell x replicate, expected engine (measured upper end, see module docstring).
EXPECTED_S_PER_CELL_REP = 8.0e-5
#: Seconds per birth x replicate, microsimulation (both arms).
MICROSIM_S_PER_BIRTH_REP = 8.0e-8
#: Bytes per cell x replicate kept for the tables (expected engine / microsimulation).
EXPECTED_BYTES_PER_CELL_REP = 1.0e3
MICROSIM_BYTES_PER_CELL_REP = 4.0e3
#: Memory of the loaded data and model before any replicate.
BASE_BYTES = 450e6
#: Longest run started without ``--allow-large`` (30 minutes).
LIMIT_SECONDS = 1800.0
#: Most memory a run may ask for without ``--allow-large``: 8 GB, or 75% of the machine's memory
#: when that is less.
LIMIT_BYTES = 8e9


def limit_bytes() -> float:
    """Return the memory limit: :data:`LIMIT_BYTES` or 75% of physical memory, the smaller."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return LIMIT_BYTES
    return min(LIMIT_BYTES, 0.75 * physical)


@dataclass(frozen=True)
class Estimate:
    """The predicted size of a run.

    Attributes
    ----------
    seconds : float
        Predicted run time (model only; figures and report add a few seconds).
    bytes : float
        Predicted peak memory.
    cells : int
        State x race x year cells.
    births : int
        Births over all cells (one replicate).
    replicates : int
        Uncertainty draws.
    engine : str
        ``expected`` or ``microsim``.
    """

    seconds: float
    bytes: float
    cells: int
    births: int
    replicates: int
    engine: str

    def describe(self) -> str:
        """Return ``"about 1 h 33 min and 11 GB (microsim engine, 10,000 replicates x ...)"``."""
        return (f"about {_duration(self.seconds)} and {_size(self.bytes)} ({self.engine} engine, "
                f"{self.replicates:,} replicate(s) x {self.cells:,} cells, {self.births:,} "
                "births per replicate)")


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m} min" if h < 48 else f"{s / 86400:,.0f} days"


def _size(b: float) -> str:
    return f"{b / 1e9:,.1f} GB" if b >= 1e9 else f"{b / 1e6:,.0f} MB"


def estimate_run(scenario, engine: str | None = None, replicates: int | None = None) -> Estimate:
    """Predict the time and memory of running ``scenario``.

    Parameters
    ----------
    scenario : imsim.config.scenario.Scenario
        The scenario.
    engine, replicates : optional
        Overrides of the scenario's (as ``imsim run --engine/--replicates``).

    Returns
    -------
    Estimate
        The prediction.
    """
    from imsim.inputs.baseline import get_baseline

    engine = engine or scenario.engine
    reps = int(replicates or scenario.replicates)
    cells = get_baseline().cells(scenario.year_list, scenario.state_list)
    n, births = int(cells.n), int(cells.births.sum())
    if engine == "microsim":
        seconds = MICROSIM_S_PER_BIRTH_REP * births * reps
        mem = BASE_BYTES + MICROSIM_BYTES_PER_CELL_REP * n * reps
    else:
        seconds = EXPECTED_S_PER_CELL_REP * n * reps
        mem = BASE_BYTES + EXPECTED_BYTES_PER_CELL_REP * n * reps
    return Estimate(seconds, mem, n, births, reps, engine)


def check_run(scenario, engine: str | None = None, replicates: int | None = None, *,
              allow_large: bool = False, file: str | None = None) -> Estimate:
    """Refuse a run predicted to exceed the time or memory limit, unless ``allow_large``.

    Parameters
    ----------
    scenario : imsim.config.scenario.Scenario
        The scenario.
    engine, replicates : optional
        Overrides of the scenario's.
    allow_large : bool
        Accept any size (``--allow-large``).
    file : str, optional
        The scenario file, for the message.

    Returns
    -------
    Estimate
        The prediction.

    Raises
    ------
    InputError
        One line: the estimate, the limits and the flag that accepts it.
    """
    est = estimate_run(scenario, engine, replicates)
    mem_limit = limit_bytes()
    if not allow_large and (est.seconds > LIMIT_SECONDS or est.bytes > mem_limit):
        raise InputError(f"this run asks for {est.describe()}; the limits are "
                         f"{_duration(LIMIT_SECONDS)} and {_size(mem_limit)} -- lower "
                         "--replicates, the years or the states, or add --allow-large to run "
                         "it anyway", file=file)
    return est


#: Seconds per cell x evaluation of a sweep row, per worker, when rows refit the baseline
#: (a swept input enters the baseline, the calibration draw, or the collaborative is rerun):
#: ``sweeps``-style PSA of scenarios/safe_sleep.yaml (1,275 cells), 512 rows on 2 workers in
#: 127 s while other tests ran (December 2026): 3.9e-4.
SWEEP_S_PER_CELL_EVAL = 4.0e-4
#: The same when no row refits (the evaluator's grouped path, one fit for every row): the
#: 16-parameter national Sobol sweep of benchmarks/bench_sweep.py, about 6e-7 s per cell x row
#: and worker on this 2-core machine (December 2026); 2e-6 leaves room for a loaded machine.
SWEEP_S_PER_CELL_EVAL_NO_REFIT = 2.0e-6
#: Memory of one sweep worker process (issue 17 measured about 270 MB each).
SWEEP_BYTES_PER_WORKER = 300e6


def sweep_rows(sweep) -> int:
    """Return the number of rows (model evaluations) a sweep file asks for, without sampling."""
    g = len(set(sweep.groups))
    if sweep.method == "sobol":
        return sweep.samples * ((2 * g + 2) if sweep.second_order else (g + 2))
    if sweep.method == "morris":
        return sweep.samples * (g + 1)
    return sweep.samples


def check_sweep(sweep, workers: int, *, allow_large: bool = False) -> Estimate:
    """Refuse a sweep predicted to exceed the time or memory limit, unless ``allow_large``.

    Parameters
    ----------
    sweep : imsim.config.sweepfile.Sweep
        The sweep.
    workers : int
        Local worker processes.
    allow_large : bool
        Accept any size (``imsim sweep --allow-large``).

    Returns
    -------
    Estimate
        The prediction (``replicates`` holds the rows, ``engine`` is ``"sweep"``).

    Raises
    ------
    InputError
        One line: the estimate, the limits and the flag that accepts it.
    """
    from imsim.inputs.baseline import get_baseline

    sc = sweep.scenario
    cells = get_baseline().cells(sc.year_list, sc.state_list)
    rows = sweep_rows(sweep)
    from imsim.inputs.baseline import BASELINE_EFFECTS

    refits = any(p == "calibration" or p in BASELINE_EFFECTS or p.startswith("collaborative.")
                 for p in sweep.param_ids)
    per = SWEEP_S_PER_CELL_EVAL if refits else SWEEP_S_PER_CELL_EVAL_NO_REFIT
    seconds = per * cells.n * rows / max(workers, 1)
    mem = (BASE_BYTES + SWEEP_BYTES_PER_WORKER * workers
           + 16.0 * rows * (2 * sweep.n_params + len(sweep.outputs)))
    est = Estimate(seconds, mem, int(cells.n), int(cells.births.sum()), rows, "sweep")
    mem_limit = limit_bytes()
    if not allow_large and (seconds > LIMIT_SECONDS or mem > mem_limit):
        raise InputError(f"this sweep asks for about {_duration(seconds)} and {_size(mem)} "
                         f"({rows:,} evaluations x {cells.n:,} cells on {workers} worker(s)); "
                         f"the limits are {_duration(LIMIT_SECONDS)} and {_size(mem_limit)} -- "
                         "lower samples, the years or the states, add --workers, or add "
                         "--allow-large to run it anyway", file=sweep.file)
    return est
