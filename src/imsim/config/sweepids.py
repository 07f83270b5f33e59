"""The vocabulary of sweep files: which parameter ids and output ids a sweep may name.

A parameter is an evidence effect id, ``strategies.<strategy>.coverage``,
``collaborative.<parameter>`` or ``calibration``; an output is one of :data:`BASE_OUTPUTS`,
``deaths_averted.<race>`` or ``deaths_averted.<STATE>``. Unknown ids are refused with a
"did you mean" (:class:`imsim.core.errors.InputError`).
"""
from __future__ import annotations

from dataclasses import dataclass

from imsim.core.constants import RACES, STATES, STRATEGIES
from imsim.core.errors import InputError, did_you_mean

BASE_OUTPUTS = ("deaths_averted", "imr_change_pct", "bw_rate_ratio_change",
                "bw_rate_difference_change")

@dataclass(frozen=True)
class ParamSpec:
    """A parsed parameter id.

    Attributes
    ----------
    id : str
        The id as written.
    kind : str
        ``effect``, ``coverage``, ``collaborative`` or ``calibration``.
    target : str
        The effect id, strategy, collaborative parameter name, or ``""``.
    """

    id: str
    kind: str          # effect | coverage | collaborative | calibration
    target: str        # effect id, strategy, collaborative parameter name, or ""


def parameter_kinds() -> dict[str, list[str]]:
    """Return every parameter id the evaluator understands, by kind (``effect``, ``coverage``...)."""
    from imsim.collaborative.config import PARAMETERS
    from imsim.inputs.evidence import EvidenceLibrary

    return {
        "effect": EvidenceLibrary.load().ids,
        "coverage": [f"strategies.{k}.coverage" for k in STRATEGIES],
        "collaborative": [f"collaborative.{p}" for p in PARAMETERS],
        "calibration": ["calibration"],
    }


def all_parameter_ids() -> list[str]:
    """Return every parameter id the evaluator understands, in one list."""
    return [p for ids in parameter_kinds().values() for p in ids]


def parse_parameter(pid, file=None, where=None) -> ParamSpec:
    """Parse a parameter id.

    Parameters
    ----------
    pid : str
        E.g. ``unsafe_sleep_suid_or``, ``strategies.safe_sleep.coverage``,
        ``collaborative.<parameter>`` or ``calibration``.
    file, where : str, optional
        The file and key path to name in an error.

    Returns
    -------
    ParamSpec
        Its kind and target.

    Raises
    ------
    InputError
        For an unknown id, with the closest id ("did you mean ...?").
    """
    kinds = parameter_kinds()
    for kind, ids in kinds.items():
        if pid in ids:
            if kind == "effect":
                return ParamSpec(pid, kind, pid)
            if kind == "coverage":
                return ParamSpec(pid, kind, pid.split(".")[1])
            if kind == "collaborative":
                return ParamSpec(pid, kind, pid.split(".", 1)[1])
            return ParamSpec(pid, kind, "")
    allowed = all_parameter_ids()
    raise InputError(
        f"unknown parameter id '{pid}'{did_you_mean(str(pid), allowed)}; allowed: an evidence "
        f"effect id (`imsim data evidence`), strategies.<strategy>.coverage, "
        f"collaborative.<parameter> or calibration", file=file, where=where)


def output_ids(scenario) -> list[str]:
    """Return every output id available for ``scenario``.

    Parameters
    ----------
    scenario : Scenario
        The base scenario (its states give the ``deaths_averted.<STATE>`` ids).

    Returns
    -------
    list of str
        :data:`BASE_OUTPUTS`, ``deaths_averted.<race>`` and ``deaths_averted.<STATE>``.
    """
    return (list(BASE_OUTPUTS) + [f"deaths_averted.{r}" for r in RACES]
            + [f"deaths_averted.{s}" for s in scenario.state_list])


def check_output(oid, scenario, file=None, where=None) -> None:
    """Raise :class:`InputError` unless ``oid`` is an output id of ``scenario``.

    Parameters
    ----------
    oid : str
        The output id.
    scenario : Scenario
        The base scenario.
    file, where : str, optional
        The file and key path to name in the error.

    Raises
    ------
    InputError
        For an unknown output, or a state the scenario does not include.
    """
    allowed = output_ids(scenario)
    if oid not in allowed:
        extra = ""
        if isinstance(oid, str) and oid.startswith("deaths_averted.") and \
                oid.split(".", 1)[1] in STATES:
            extra = " (that state is not in the scenario's states)"
        raise InputError(
            f"unknown output '{oid}'{extra}{did_you_mean(str(oid), allowed)}; allowed: "
            f"{', '.join(BASE_OUTPUTS)}, deaths_averted.<race>, deaths_averted.<STATE>",
            file=file, where=where)
