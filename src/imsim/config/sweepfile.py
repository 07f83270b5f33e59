"""The sweep file: what to vary, how it is distributed, and what to report.

A sweep file (see docs/sweeps.md)::

    name: safe-sleep-sobol
    scenario: ../scenarios/safe_sleep.yaml   # relative to the sweep file
    method: sobol                            # sobol | morris | psa
    samples: 1024                            # N (a power of two for sobol)
    seed: 1
    second_order: false                      # sobol: also S2 (indices_s2.csv)
    outputs: [deaths_averted, imr_change_pct]
    parameters:
      unsafe_sleep_suid_or: {}               # the evidence library's distribution
      strategies.safe_sleep.coverage: {low: 0.2, high: 0.8}
      calibration: {group: true}
    thresholds: {deaths_averted: [100, 500]} # psa: P(output > t)

Every parameter gets a distribution (:class:`Dist`): by default the evidence library's for an
effect, the full allowed range for a coverage or collaborative parameter, or one given in the
file (uniform, triangular, normal, lognormal). Sampling is done on the unit hypercube (SALib for
sobol/morris, a seeded numpy Generator for psa) and mapped through each parameter's quantile
function, so Sobol indices refer to the parameters' own distributions. The file is validated
strictly when loaded: every error names the file, the key path and what is allowed.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imsim.core.constants import RACES, STATES, STRATEGIES
from imsim.core.errors import InputError, did_you_mean

METHODS = ("sobol", "morris", "psa")
TOP_KEYS = ("name", "description", "scenario", "method", "samples", "seed", "outputs",
            "parameters", "thresholds", "second_order", "levels", "chunk_size", "conf_level",
            "num_resamples")
SPEC_KEYS = ("low", "high", "dist", "mode", "mean", "sd", "median", "sdlog", "group")
DISTS = {"unif": "uniform", "uniform": "uniform", "triang": "triangular",
         "triangular": "triangular", "norm": "normal", "normal": "normal",
         "lognorm": "lognormal", "lognormal": "lognormal"}
DEFAULT_CHUNK = 256


# ---------------------------------------------------------------------------------------------
# The sweep definition
# ---------------------------------------------------------------------------------------------

class Dist:
    """A parameter's distribution: a quantile function and a 95% range.

    Parameters
    ----------
    kind : str
        ``"evidence"`` (the evidence library's distribution of an effect, passed as
        ``effect=``), ``"uniform"`` (``low``, ``high``), ``"triangular"`` (``low``, ``mode``,
        ``high``), ``"normal"`` (``mean``, ``sd``) or ``"lognormal"`` (``median``, ``sdlog``).
    **kw
        The distribution's parameters, as named above.
    """

    def __init__(self, kind: str, **kw):
        self.kind = kind
        self.kw = kw

    def ppf(self, q):
        from scipy import stats

        q = np.asarray(q, dtype=float)
        k = self.kw
        if self.kind == "evidence":
            return k["effect"].ppf(q)
        if self.kind == "uniform":
            return k["low"] + q * (k["high"] - k["low"])
        if self.kind == "triangular":
            c = (k["mode"] - k["low"]) / (k["high"] - k["low"])
            return stats.triang.ppf(q, c, loc=k["low"], scale=k["high"] - k["low"])
        if self.kind == "normal":
            return stats.norm.ppf(q, loc=k["mean"], scale=k["sd"])
        if self.kind == "lognormal":
            return np.exp(stats.norm.ppf(q, loc=math.log(k["median"]), scale=k["sdlog"]))
        raise ValueError(self.kind)

    @property
    def unbounded(self) -> bool:
        if self.kind == "evidence":
            return self.kw["effect"].dist in ("lognormal", "normal")
        return self.kind in ("normal", "lognormal")

    def describe(self) -> dict:
        if self.kind == "evidence":
            e = self.kw["effect"]
            return {"dist": f"evidence:{e.dist}", "point": e.point, "lo": e.lo, "hi": e.hi}
        return {"dist": self.kind, **self.kw}


def _num(v, file, where, what="a number"):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"expected {what}, got {v!r}", file=file, where=where)
    return float(v)


def _int(v, file, where, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"expected a whole number, got {v!r}", file=file, where=where)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError(f"{v} is out of range ({lo} to {hi})", file=file, where=where)
    return v


class Sweep:
    """A validated sweep file.

    Parameters
    ----------
    data : dict
        The parsed sweep file (see the module docstring).
    file : str, optional
        The file's name, used in error messages.
    base_dir : Path, optional
        The folder relative scenario paths are resolved against.

    Raises
    ------
    InputError
        If any key is unknown, missing, of the wrong type or out of range.
    """

    def __init__(self, data: dict, file: str | None = None, base_dir: Path | None = None):
        f = file
        if not isinstance(data, dict):
            raise InputError("a sweep must be a mapping of keys", file=f)
        for key in data:
            if key not in TOP_KEYS:
                raise InputError(f"unknown key '{key}'{did_you_mean(str(key), TOP_KEYS)}; "
                                 f"allowed keys: {', '.join(TOP_KEYS)}", file=f, where=str(key))
        for key in ("name", "scenario", "method", "samples", "outputs", "parameters"):
            if key not in data:
                raise InputError("required key is missing", file=f, where=key)
        name = data["name"]
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").replace(
                ".", "").isalnum() or len(name) > 80:
            raise InputError(f"name must be 1-80 letters, digits, '-', '_' or '.', got {name!r}",
                             file=f, where="name")
        self.name = name
        self.description = str(data.get("description", ""))
        method = data["method"]
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}{did_you_mean(str(method), METHODS)}; "
                             f"allowed: {', '.join(METHODS)}", file=f, where="method")
        self.method = method
        self.samples = _int(data["samples"], f, "samples", 1, 1 << 20)
        if method == "sobol" and self.samples & (self.samples - 1):
            lo = 1 << (self.samples.bit_length() - 1)
            raise InputError(f"samples must be a power of two for sobol, got {self.samples} "
                             f"(try {lo} or {lo * 2})", file=f, where="samples")
        self.seed = _int(data.get("seed", 0), f, "seed", 0, 2**32 - 1)
        self.second_order = data.get("second_order", False)
        if not isinstance(self.second_order, bool):
            raise InputError(f"expected true or false, got {self.second_order!r}", file=f,
                             where="second_order")
        if "second_order" in data and method != "sobol":
            raise InputError("second_order applies to method sobol only", file=f,
                             where="second_order")
        self.levels = _int(data.get("levels", 4), f, "levels", 2, 100)
        if "levels" in data and method != "morris":
            raise InputError("levels applies to method morris only", file=f, where="levels")
        self.chunk_size = _int(data.get("chunk_size", DEFAULT_CHUNK), f, "chunk_size", 1,
                               1 << 20)
        self.conf_level = _num(data.get("conf_level", 0.95), f, "conf_level")
        if not 0 < self.conf_level < 1:
            raise InputError(f"conf_level must be in (0, 1), got {self.conf_level}", file=f,
                             where="conf_level")
        self.num_resamples = _int(data.get("num_resamples", 100), f, "num_resamples", 10,
                                  100_000)
        # The base scenario (relative to the sweep file).
        sc = data["scenario"]
        if not isinstance(sc, str):
            raise InputError(f"expected a path to a scenario file, got {sc!r}", file=f,
                             where="scenario")
        path = Path(sc)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        from imsim.config.scenario import load_scenario

        try:
            self.scenario = load_scenario(path)
        except InputError as exc:
            raise InputError(f"base scenario: {exc.format()}", file=f, where="scenario") from None
        self.scenario_path = str(path)
        if self.scenario.engine != "expected":
            pass  # sweeps always use the expected engine; documented
        # Outputs.
        outs = data["outputs"]
        if isinstance(outs, str):
            outs = [outs]
        if not isinstance(outs, list) or not outs:
            raise InputError(f"outputs must be a non-empty list, got {outs!r}", file=f,
                             where="outputs")

        for i, o in enumerate(outs):
            check_output(o, self.scenario, file=f, where=f"outputs[{i}]")
        if len(set(outs)) != len(outs):
            raise InputError("an output is listed twice", file=f, where="outputs")
        self.outputs = list(outs)
        # Parameters.
        params = data["parameters"]
        if not isinstance(params, dict) or not params:
            raise InputError(f"parameters must be a non-empty mapping of parameter ids, got "
                             f"{params!r}", file=f, where="parameters")
        from imsim.inputs.evidence import EvidenceLibrary

        lib = EvidenceLibrary.load().with_overrides(self.scenario.effects or {})
        self.param_ids: list[str] = []
        self.dists: list[Dist] = []
        self.groups: list[str] = []
        for pid, spec in params.items():
            where = f"parameters.{pid}"
            p = parse_parameter(pid, file=f, where=where)
            if p.kind == "collaborative" and self.scenario.collaborative is None:
                raise InputError("collaborative.* parameters need a base scenario with a "
                                 "collaborative block", file=f, where=where)
            if spec is None:
                spec = {}
            if not isinstance(spec, dict):
                raise InputError(f"expected a mapping ({{}}, {{low: .., high: ..}}, {{dist: ..}} "
                                 f"or {{group: true}}), got {spec!r}", file=f, where=where)
            for key in spec:
                if key not in SPEC_KEYS:
                    raise InputError(f"unknown key '{key}'{did_you_mean(str(key), SPEC_KEYS)}; "
                                     f"allowed keys: {', '.join(SPEC_KEYS)}", file=f,
                                     where=f"{where}.{key}")
            group = spec.get("group", False)
            if group is True:
                group = pid
            elif group is False:
                group = pid
            elif not isinstance(group, str):
                raise InputError(f"group must be true or a group name, got {group!r}", file=f,
                                 where=f"{where}.group")
            self.groups.append(group)
            self.dists.append(self._dist(p, spec, lib, f, where))
            self.param_ids.append(pid)
        self.use_groups = len(set(self.groups)) != len(self.groups)
        # Thresholds (psa).
        th = data.get("thresholds", {}) or {}
        if "thresholds" in data and method != "psa":
            raise InputError("thresholds apply to method psa only", file=f, where="thresholds")
        if not isinstance(th, dict):
            raise InputError(f"thresholds must map outputs to lists of numbers, got {th!r}",
                             file=f, where="thresholds")
        self.thresholds: dict[str, list[float]] = {}
        for o, ts in th.items():
            if o not in self.outputs:
                raise InputError(f"'{o}' is not one of this sweep's outputs"
                                 f"{did_you_mean(str(o), self.outputs)}", file=f,
                                 where=f"thresholds.{o}")
            if not isinstance(ts, list):
                ts = [ts]
            self.thresholds[o] = [_num(t, f, f"thresholds.{o}") for t in ts]
        if method == "sobol" and len(set(self.groups)) < 2:
            raise InputError("sobol needs at least two parameters (or groups)", file=f,
                             where="parameters")
        self.raw = data
        self.file = f

    @staticmethod
    def _dist(p, spec, lib, f, where) -> Dist:
        from imsim.collaborative.abm import PARAMETERS

        dist = spec.get("dist")
        if dist is not None and dist not in DISTS:
            raise InputError(f"unknown distribution {dist!r}{did_you_mean(str(dist), DISTS)}; "
                             f"allowed: {', '.join(DISTS)}", file=f, where=f"{where}.dist")
        dist = DISTS.get(dist)
        for key in ("low", "high", "mode", "mean", "sd", "median", "sdlog"):
            if key in spec:
                _num(spec[key], f, f"{where}.{key}")
        has_bounds = "low" in spec or "high" in spec
        if dist is None and not has_bounds:
            extra = [k for k in spec if k != "group"]
            if extra:
                raise InputError(f"'{extra[0]}' needs a dist", file=f, where=f"{where}.{extra[0]}")
            if p.kind == "effect":
                eff = lib.effects[p.target]
                if p.target in lib.overrides:
                    raise InputError(f"the base scenario fixes {p.target} = "
                                     f"{lib.overrides[p.target]}; give {{low, high}} to vary it",
                                     file=f, where=where)
                if eff.dist == "fixed" or not (np.isfinite(eff.lo) and np.isfinite(eff.hi)) \
                        or eff.lo == eff.hi:
                    raise InputError(f"effect {p.target} has no uncertainty in the evidence "
                                     f"library (fixed at {eff.point}); give {{low, high}}",
                                     file=f, where=where)
                return Dist("evidence", effect=eff)
            if p.kind == "coverage":
                return Dist("uniform", low=0.0, high=1.0)
            if p.kind == "collaborative":
                _, lo, hi, _ = PARAMETERS[p.target]
                return Dist("uniform", low=float(lo), high=float(hi))
            return Dist("uniform", low=0.0, high=1.0)  # calibration
        if dist is None:
            dist = "uniform"
        need = {"uniform": ("low", "high"), "triangular": ("low", "mode", "high"),
                "normal": ("mean", "sd"), "lognormal": ("median", "sdlog")}[dist]
        for key in need:
            if key not in spec:
                raise InputError(f"a {dist} distribution needs {', '.join(need)}; '{key}' is "
                                 f"missing", file=f, where=f"{where}.{key}")
        allowed_here = set(need) | {"dist", "group"}
        for key in spec:
            if key not in allowed_here:
                raise InputError(f"'{key}' does not apply to a {dist} distribution (it takes "
                                 f"{', '.join(need)})", file=f, where=f"{where}.{key}")
        kw = {k: float(spec[k]) for k in need}
        if dist in ("uniform", "triangular"):
            if not kw["low"] < kw["high"]:
                raise InputError(f"bounds reversed or empty: low {kw['low']} is not below high "
                                 f"{kw['high']}", file=f, where=where)
            if dist == "triangular" and not kw["low"] <= kw["mode"] <= kw["high"]:
                raise InputError(f"mode {kw['mode']} is outside [low, high]", file=f,
                                 where=f"{where}.mode")
            lo_ok, hi_ok = _valid_range(p, lib)
            if kw["low"] < lo_ok or kw["high"] > hi_ok:
                raise InputError(f"range [{kw['low']}, {kw['high']}] is outside what "
                                 f"{p.id} allows ([{lo_ok}, {hi_ok}])", file=f, where=where)
        if dist in ("normal", "lognormal"):
            key = "sd" if dist == "normal" else "sdlog"
            if not kw[key] > 0:
                raise InputError(f"{key} must be > 0, got {kw[key]}", file=f,
                                 where=f"{where}.{key}")
            if dist == "lognormal" and not kw["median"] > 0:
                raise InputError(f"median must be > 0, got {kw['median']}", file=f,
                                 where=f"{where}.median")
            if p.kind != "effect":
                raise InputError(f"{p.id} is bounded; use {{low, high}} (uniform) or triangular",
                                 file=f, where=f"{where}.dist")
        return Dist(dist, **kw)

    # -- derived -----------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return len(self.param_ids)

    def problem(self) -> dict:
        """The SALib problem on the unit hypercube (values are mapped by :meth:`transform`)."""
        prob = {"num_vars": self.n_params, "names": list(self.param_ids),
                "bounds": [[0.0, 1.0]] * self.n_params}
        if self.use_groups:
            prob["groups"] = list(self.groups)
        return prob

    def unit_sample(self) -> np.ndarray:
        """Sample matrix on [0, 1]^P (seeded)."""
        prob = self.problem()
        if self.method == "sobol":
            from SALib.sample import sobol

            return sobol.sample(prob, self.samples, calc_second_order=self.second_order,
                                seed=self.seed)
        if self.method == "morris":
            from SALib.sample import morris

            return morris.sample(prob, self.samples, num_levels=self.levels, seed=self.seed)
        rng = np.random.default_rng(self.seed)
        return rng.random((self.samples, self.n_params))

    def transform(self, Q: np.ndarray) -> np.ndarray:
        """Map unit-cube values to parameter values through each distribution's quantiles.

        Morris visits the grid edges 0 and 1; for unbounded distributions (normal, lognormal)
        those are mapped to the 2.5% and 97.5% quantiles (the grid spans the 95% range).
        """
        X = np.empty_like(Q, dtype=float)
        for j, d in enumerate(self.dists):
            q = Q[:, j]
            if d.unbounded:
                if self.method == "morris":
                    q = 0.025 + 0.95 * q
                else:
                    q = np.clip(q, 1e-12, 1 - 1e-12)
            X[:, j] = d.ppf(q)
        return X

    def resolved(self) -> dict:
        return {
            "name": self.name, "description": self.description, "method": self.method,
            "samples": self.samples, "seed": self.seed, "second_order": self.second_order,
            "levels": self.levels, "chunk_size": self.chunk_size, "conf_level": self.conf_level,
            "num_resamples": self.num_resamples, "outputs": self.outputs,
            "parameters": {p: {**d.describe(), "group": g}
                           for p, d, g in zip(self.param_ids, self.dists, self.groups)},
            "thresholds": self.thresholds,
            "scenario_file": self.scenario_path,
            "scenario": self.scenario.resolved(),
        }

    def definition_hash(self) -> str:
        text = json.dumps(self.resolved(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _valid_range(p, lib) -> tuple[float, float]:
    """The values a parameter may take (for checking {low, high})."""
    if p.kind in ("coverage", "calibration"):
        return (0.0, 1.0)
    if p.kind == "collaborative":
        from imsim.collaborative.abm import PARAMETERS

        _, lo, hi, _ = PARAMETERS[p.target]
        return (float(lo), float(hi))
    eff = lib.effects[p.target]
    if eff.scale == "probability":
        return (0.0, 1.0)
    if eff.scale == "ratio":
        return (1e-9, math.inf)
    return (-math.inf, math.inf)


def load_sweep(path) -> Sweep:
    """Read and validate a sweep file.

    Parameters
    ----------
    path : str or os.PathLike
        The sweep YAML file; its scenario path is relative to the file's folder.

    Returns
    -------
    Sweep
        The validated sweep.
    """
    from imsim.config.scenario import read_yaml

    p = Path(path)
    data = read_yaml(p, what="sweep")
    return Sweep(data, file=str(p), base_dir=p.parent)


# -- the vocabulary of a sweep file: parameter ids and output ids -------------------------------
BASE_OUTPUTS = ("deaths_averted", "imr_change_pct", "bw_rate_ratio_change",
                "bw_rate_difference_change")

@dataclass(frozen=True)
class ParamSpec:
    """A parsed parameter id."""

    id: str
    kind: str          # effect | coverage | collaborative | calibration
    target: str        # effect id, strategy, collaborative parameter name, or ""


def parameter_kinds() -> dict[str, list[str]]:
    """Every parameter id the evaluator understands, by kind."""
    from imsim.collaborative.abm import PARAMETERS
    from imsim.inputs.evidence import EvidenceLibrary

    return {
        "effect": EvidenceLibrary.load().ids,
        "coverage": [f"strategies.{k}.coverage" for k in STRATEGIES],
        "collaborative": [f"collaborative.{p}" for p in PARAMETERS],
        "calibration": ["calibration"],
    }


def all_parameter_ids() -> list[str]:
    return [p for ids in parameter_kinds().values() for p in ids]


def parse_parameter(pid, file=None, where=None) -> ParamSpec:
    """Parse a parameter id; unknown ids raise InputError with a 'did you mean'."""
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
    """Every output id available for ``scenario``."""
    return (list(BASE_OUTPUTS) + [f"deaths_averted.{r}" for r in RACES]
            + [f"deaths_averted.{s}" for s in scenario.state_list])


def check_output(oid, scenario, file=None, where=None) -> None:
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
