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
strictly when loaded, by the checks every input file shares (:mod:`imsim.core.validation`): every
error names the file, the key path, the bad value and what is allowed.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from imsim.config.scenario import Scenario, load_scenario
from imsim.core.constants import (
    DISTS,
    METHODS,
    SWEEP_DISTRIBUTIONS,
    UNBOUNDED_DISTRIBUTIONS,
)
from imsim.config.sweepids import (  # noqa: F401  (re-exported)
    BASE_OUTPUTS,
    ParamSpec,
    all_parameter_ids,
    check_output,
    output_ids,
    parameter_kinds,
    parse_parameter,
)
from imsim.core.errors import InputError
from imsim.core.validation import (
    FiniteNumber,
    Invalid,
    Name,
    PositiveNumber,
    StrictModel,
    between,
    number,
    one_of,
    read_yaml,
    short,
    suggest,
    to_input_error,
)

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

    def __init__(self, kind: str, *, truncate: tuple[float, float] | None = None, **kw):
        self.kind = kind
        self.kw = kw
        self.truncate = None if truncate is None else (float(truncate[0]), float(truncate[1]))

    def cdf(self, x):
        """Return the distribution function at ``x`` (normal and lognormal only: truncation).

        Parameters
        ----------
        x : array_like of float
            Values in the parameter's units.

        Returns
        -------
        numpy.ndarray
            float64, the shape of ``x``.
        """
        from scipy import stats

        x = np.asarray(x, dtype=float)
        k = self.kw
        if self.kind == "normal":
            return stats.norm.cdf(x, loc=k["mean"], scale=k["sd"])
        if self.kind == "lognormal":
            with np.errstate(divide="ignore"):
                return stats.norm.cdf(np.log(np.maximum(x, 0.0)), loc=math.log(k["median"]),
                                      scale=k["sdlog"])
        raise ValueError(f"no distribution function for a {self.kind} distribution")

    def ppf(self, q):
        """Return the quantiles of the distribution at probabilities ``q``.

        Parameters
        ----------
        q : array_like of float
            Probabilities in [0, 1] (open at an unbounded end), any shape.

        Returns
        -------
        numpy.ndarray
            float64, the shape of ``q``, in the parameter's own units.

        Raises
        ------
        ValueError
            For an unknown kind.
        """
        from scipy import stats

        q = np.asarray(q, dtype=float)
        if self.truncate is not None:      # the distribution restricted to [a, b]
            fa, fb = self.cdf(self.truncate)
            q = fa + q * (fb - fa)
            return np.clip(self._ppf(q), *self.truncate)
        return self._ppf(q)

    def _ppf(self, q):
        from scipy import stats

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
        """True for a normal or lognormal distribution (given, or the effect's)."""
        if self.kind == "evidence":
            return self.kw["effect"].dist in UNBOUNDED_DISTRIBUTIONS
        return self.kind in UNBOUNDED_DISTRIBUTIONS

    def describe(self) -> dict:
        """Return a JSON-ready description: ``dist`` and its parameters (or point, lo, hi)."""
        if self.kind == "evidence":
            e = self.kw["effect"]
            return {"dist": f"evidence:{e.dist}", "point": e.point, "lo": e.lo, "hi": e.hi}
        out = {"dist": self.kind, **self.kw}
        if self.truncate is not None:
            out["truncate"] = list(self.truncate)
        return out


class ParameterSpec(StrictModel):
    """How one parameter of a sweep is distributed (see the module docstring).

    ``{}`` takes the default distribution; ``{low, high}`` is uniform; ``dist`` names another
    (:data:`imsim.core.constants.SWEEP_DISTRIBUTIONS` lists the keys each takes). ``group``: true
    (its own group, the default) or a group name shared with other parameters.
    """

    low: FiniteNumber | None = None
    high: FiniteNumber | None = None
    dist: str | None = None
    mode: FiniteNumber | None = None
    mean: FiniteNumber | None = None
    sd: PositiveNumber | None = None
    median: PositiveNumber | None = None
    sdlog: PositiveNumber | None = None
    truncate: bool = False
    group: bool | str = False

    @field_validator("dist", mode="before")
    @classmethod
    def _dist(cls, v):
        return None if v is None else DISTS[one_of(v, DISTS, "distribution")]

    @field_validator("group", mode="before")
    @classmethod
    def _group(cls, v):
        if not isinstance(v, (bool, str)):
            raise Invalid(f"expected true or a group name, got {short(v)}")
        return v

    @model_validator(mode="after")
    def _shape(self):
        given = [k for k in _VALUE_KEYS if getattr(self, k) is not None]
        if self.truncate and self.dist not in UNBOUNDED_DISTRIBUTIONS:
            raise Invalid("truncate applies to normal and lognormal distributions only "
                          f"(this one is {self.dist or ('uniform' if given else 'the default')}, "
                          "which already stays within its bounds)", at=("truncate",))
        if self.dist is None and self.low is None and self.high is None:
            if given:
                raise Invalid(f"'{given[0]}' needs a dist; allowed: {', '.join(DISTS)}",
                              at=(given[0],))
            return self
        kind = self.dist or "uniform"
        need = SWEEP_DISTRIBUTIONS[kind]
        for key in need:
            if getattr(self, key) is None:
                raise Invalid(f"a {kind} distribution needs {', '.join(need)}; '{key}' is "
                              "missing", at=(key,))
        for key in given:
            if key not in need:
                raise Invalid(f"'{key}' does not apply to a {kind} distribution (it takes "
                              f"{', '.join(need)})", at=(key,))
        if "low" in need and not self.low < self.high:
            raise Invalid(f"bounds reversed or empty: low {self.low:g} is not below high "
                          f"{self.high:g}")
        if kind == "triangular" and not self.low <= self.mode <= self.high:
            raise Invalid(f"{self.mode:g} is outside [low, high] = [{self.low:g}, "
                          f"{self.high:g}]", at=("mode",))
        return self

    def distribution(self, p: ParamSpec, lib) -> Dist:
        """Return the distribution of parameter ``p`` this spec describes.

        Parameters
        ----------
        p : ParamSpec
            The parsed parameter id.
        lib : EvidenceLibrary
            The evidence library with the base scenario's overrides.

        Returns
        -------
        Dist
            The default distribution for ``{}``, else the one given.

        Raises
        ------
        Invalid
            For an unbounded distribution of a bounded parameter, bounds outside the values the
            parameter can take, or ``{}`` for an effect that is overridden or has no range.
        """
        if self.dist is None and self.low is None and self.high is None:
            return _default_distribution(p, lib)
        kind = self.dist or "uniform"
        kw = {k: float(getattr(self, k)) for k in SWEEP_DISTRIBUTIONS[kind]}
        lo_ok, hi_ok = _valid_range(p, lib)
        if kind in UNBOUNDED_DISTRIBUTIONS:
            if p.kind != "effect" and not self.truncate:
                raise Invalid(f"{p.id} is bounded; use {{low, high}} (uniform) or triangular "
                              "(or add truncate: true)", at=("dist",))
            return _within_domain(Dist(kind, **kw), p, lib, lo_ok, hi_ok, self.truncate)
        for key in ("low", "high"):
            if not lo_ok <= kw[key] <= hi_ok:
                raise Invalid(f"{kw[key]:g} is outside [{lo_ok:g}, {hi_ok:g}]; allowed: the "
                              f"values {p.id} can take", at=(key,))
        return Dist(kind, **kw)


_VALUE_KEYS = ("low", "high", "mode", "mean", "sd", "median", "sdlog")

#: The most extreme probabilities an unbounded distribution is sampled at (Sweep.transform).
_Q_EXTREME = 1e-12


def _domain_text(p: ParamSpec, lib, lo: float, hi: float) -> str:
    if p.kind == "effect" and lib.effects[p.target].scale == "ratio":
        return "a ratio > 0"
    return f"{lo:g} to {hi:g}"


def _within_domain(d: Dist, p: ParamSpec, lib, lo: float, hi: float, truncate: bool) -> Dist:
    """Refuse (or, with ``truncate``, truncate) a normal or lognormal that leaves the domain.

    The sample reaches the quantiles :data:`_Q_EXTREME` and ``1 - _Q_EXTREME``; both must be
    finite and within ``[lo, hi]`` (a ratio: above 0), else the sweep would feed impossible
    values (a negative odds ratio, an infinite one) to the model.
    """
    with np.errstate(all="ignore"):
        x_lo, x_hi = d.ppf([_Q_EXTREME, 1 - _Q_EXTREME])
    if np.isfinite(x_lo) and np.isfinite(x_hi) and lo <= x_lo and x_hi <= hi:
        return d
    spec = ", ".join(f"{k} {v:g}" for k, v in d.kw.items())
    bad = (x_hi if not np.isfinite(x_hi) else x_lo if not np.isfinite(x_lo)
           else x_lo if x_lo < lo else x_hi)
    if truncate:
        a = lo if math.isfinite(lo) else float(x_lo)
        b = hi if math.isfinite(hi) else float(x_hi)
        if not (math.isfinite(a) and math.isfinite(b)):
            raise Invalid(f"a {d.kind} distribution with {spec} overflows (reaches {bad:g}), "
                          f"even truncated to {_domain_text(p, lib, lo, hi)}; allowed: a "
                          "distribution whose values stay finite (e.g. a smaller sdlog)")
        t = Dist(d.kind, truncate=(a, b), **d.kw)
        with np.errstate(all="ignore"):
            fa, fb = t.cdf([a, b])
        if not fb - fa > 1e-9:
            raise Invalid(f"a {d.kind} distribution with {spec} has almost no probability "
                          f"within {_domain_text(p, lib, lo, hi)}, the values {p.id} can "
                          "take, so truncating it leaves nothing to sample")
        return t
    where = "overflows" if not np.isfinite(bad) else "leaves"
    raise Invalid(f"a {d.kind} distribution with {spec} {where} the values {p.id} can take "
                  f"({_domain_text(p, lib, lo, hi)}): it reaches {bad:g}; allowed: a "
                  "distribution within that range (lognormal, uniform or triangular for a "
                  "ratio), or add truncate: true to sample it truncated to the range")


def _default_distribution(p: ParamSpec, lib) -> Dist:
    """``{}``: the evidence library's distribution of an effect, else uniform over the range."""
    if p.kind == "effect":
        eff = lib.effects[p.target]
        if p.target in lib.overrides:
            raise Invalid(f"the base scenario fixes {p.target} = {lib.overrides[p.target]}; "
                          "give {low, high} to vary it")
        if eff.dist == "fixed" or not (np.isfinite(eff.lo) and np.isfinite(eff.hi)) \
                or eff.lo == eff.hi:
            raise Invalid(f"effect {p.target} has no uncertainty in the evidence library (fixed "
                          f"at {eff.point}); give {{low, high}}")
        return Dist("evidence", effect=eff)
    low, high = _valid_range(p, lib)
    return Dist("uniform", low=float(low), high=float(high))


#: Keys that apply to one method only.
_METHOD_OF = {"second_order": "sobol", "levels": "morris", "thresholds": "psa"}


def _only_for(key: str, info: ValidationInfo) -> None:
    method, given = _METHOD_OF[key], info.data.get("method")
    if given is not None and given != method:
        raise Invalid(f"'{key}' applies to method {method} only (this sweep uses {given})")


#: The confidence level of SALib's bootstrap intervals: strictly between 0 and 1.
_ConfLevel = Annotated[float, Field(gt=0, lt=1), BeforeValidator(
    lambda v: number(v, 0.0, 1.0, open_low=True, open_high=True))]


class Sweep(StrictModel):
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

    name: Name
    description: str = ""
    method: Literal[METHODS]
    samples: between(1, 1 << 20, integer=True)
    seed: between(0, 2**32 - 1, integer=True) = 0
    second_order: bool = False
    levels: between(2, 100, integer=True) = 4
    chunk_size: between(1, 1 << 20, integer=True) = DEFAULT_CHUNK
    conf_level: _ConfLevel = 0.95
    num_resamples: between(10, 100_000, integer=True) = 100
    scenario: Scenario
    outputs: list[str]
    parameters: dict[str, ParameterSpec]
    thresholds: dict[str, list[float]] = Field(default_factory=dict)

    _dists: list[Dist] = PrivateAttr(default_factory=list)
    _file: str | None = PrivateAttr(default=None)
    _raw: dict = PrivateAttr(default_factory=dict)

    def __init__(self, data: dict, file: str | None = None, base_dir: Path | None = None):
        if not isinstance(data, dict):
            raise InputError("a sweep must be a mapping of keys", file=file)
        try:
            self.__pydantic_validator__.validate_python(data, self_instance=self,
                                                        context={"base_dir": base_dir})
        except ValidationError as err:
            raise to_input_error(err, file) from None
        self._file = file
        self._raw = data

    @field_validator("samples")
    @classmethod
    def _power_of_two(cls, v, info: ValidationInfo):
        if info.data.get("method") == "sobol" and v & (v - 1):
            lo = 1 << (v.bit_length() - 1)
            raise Invalid(f"samples must be a power of two for sobol, got {v} (try {lo} or "
                          f"{lo * 2})")
        return v

    @field_validator("second_order", "levels")
    @classmethod
    def _method_options(cls, v, info: ValidationInfo):
        _only_for(info.field_name, info)
        return v

    @field_validator("scenario", mode="before")
    @classmethod
    def _scenario(cls, v, info: ValidationInfo):
        if not isinstance(v, str):
            raise Invalid(f"expected a path to a scenario file, got {short(v)}")
        path = Path(v)
        base_dir = (info.context or {}).get("base_dir")
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        try:
            return load_scenario(path)
        except InputError as exc:
            raise Invalid(f"base scenario: {exc.format()}") from None

    @field_validator("outputs", mode="before")
    @classmethod
    def _outputs(cls, v, info: ValidationInfo):
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v:
            raise Invalid(f"outputs must be a non-empty list of output ids, got {short(v)}")
        scenario = info.data.get("scenario")
        for i, o in enumerate(v):
            if scenario is not None:
                try:
                    check_output(o, scenario)
                except InputError as exc:
                    raise Invalid(exc.message, at=(i,)) from None
            if o in v[:i]:
                raise Invalid(f"output {short(o)} is listed twice", at=(i,))
        return v

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters(cls, v, info: ValidationInfo):
        if not isinstance(v, dict) or not v:
            raise Invalid(f"parameters must be a non-empty mapping of parameter ids, got "
                          f"{short(v)}")
        scenario = info.data.get("scenario")
        for pid in v:
            try:
                p = parse_parameter(pid)
            except InputError as exc:
                raise Invalid(exc.message, at=(str(pid),)) from None
            if p.kind == "collaborative" and scenario is not None \
                    and scenario.collaborative is None:
                raise Invalid("collaborative.* parameters need a base scenario with a "
                              "collaborative block", at=(pid,))
            if p.kind == "coverage" and scenario is not None \
                    and scenario.collaborative is None \
                    and not any(p.target in scenario.portfolio(st).active()
                                for st in scenario.state_list):
                raise Invalid(f"the base scenario does not use {p.target} in any state, so "
                              "varying its coverage would change nothing; allowed: the coverage "
                              "of a strategy the scenario uses", at=(pid,))
        return {pid: {} if spec is None else spec for pid, spec in v.items()}

    @field_validator("thresholds", mode="before")
    @classmethod
    def _thresholds(cls, v, info: ValidationInfo):
        _only_for("thresholds", info)
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise Invalid(f"thresholds must map outputs to lists of numbers, got {short(v)}")
        outputs = info.data.get("outputs") or []
        out = {}
        for o, ts in v.items():
            if "outputs" in info.data and o not in outputs:
                raise Invalid(f"'{o}' is not one of this sweep's outputs{suggest(o, outputs)}; "
                              f"allowed: {', '.join(outputs)}", at=(str(o),))
            ts = ts if isinstance(ts, list) else [ts]
            out[o] = []
            for i, t in enumerate(ts):
                try:
                    out[o].append(number(t))
                except Invalid as exc:
                    raise exc.under(str(o), i) from None
        return out

    @model_validator(mode="after")
    def _distributions(self):
        from imsim.inputs.evidence import EvidenceLibrary

        lib = EvidenceLibrary.load().with_overrides(self.scenario.effects or {})
        dists = []
        for pid, spec in self.parameters.items():
            try:
                dists.append(spec.distribution(parse_parameter(pid), lib))
            except Invalid as exc:
                raise exc.under("parameters", pid) from None
        self._dists = dists
        if self.method == "sobol" and len(set(self.groups)) < 2:
            raise Invalid("sobol needs at least two parameters (or groups), got "
                          f"{len(set(self.groups))}", at=("parameters",))
        return self

    @property
    def param_ids(self) -> list[str]:
        """The parameter ids, in file order."""
        return list(self.parameters)

    @property
    def dists(self) -> list[Dist]:
        """Each parameter's distribution."""
        return list(self._dists)

    @property
    def groups(self) -> list[str]:
        """Each parameter's SALib group (its own id unless it names a group)."""
        return [spec.group if isinstance(spec.group, str) else pid
                for pid, spec in self.parameters.items()]

    @property
    def use_groups(self) -> bool:
        """True if some parameters share a group."""
        return len(set(self.groups)) != len(self.groups)

    @property
    def scenario_path(self) -> str:
        """The base scenario's file."""
        return self.scenario.source

    @property
    def file(self) -> str | None:
        """The sweep file, if the sweep was read from one."""
        return self._file

    @property
    def raw(self) -> dict:
        """The sweep file's mapping as read."""
        return self._raw

    # -- derived -----------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        """Number of parameters ``P``."""
        return len(self.param_ids)

    def problem(self) -> dict:
        """Return the SALib problem on the unit hypercube (values are mapped by :meth:`transform`)."""
        prob = {"num_vars": self.n_params, "names": list(self.param_ids),
                "bounds": [[0.0, 1.0]] * self.n_params}
        if self.use_groups:
            prob["groups"] = list(self.groups)
        return prob

    def unit_sample(self) -> np.ndarray:
        """Return the sample matrix on the unit hypercube (seeded).

        Returns
        -------
        numpy.ndarray
            float64 ``[n_rows, P]``: ``samples * (G + 2)`` rows for Sobol (``(2G + 2)`` with
            second order) and ``samples * (G + 1)`` for Morris, ``G`` the number of groups (``P``
            without shared groups); ``samples`` rows for PSA.
        """
        prob = self.problem()
        if self.method == "sobol":
            from SALib.sample import sobol

            return sobol.sample(prob, self.samples, calc_second_order=self.second_order,
                                seed=self.seed)
        if self.method == "morris":
            from SALib.sample import morris

            return morris.sample(prob, self.samples, num_levels=self.levels, seed=self.seed)
        # Keyed per parameter id (imsim.core.streams): adding a parameter or samples changes
        # no other parameter's samples.
        from imsim.core.streams import uniforms

        cols = [uniforms(self.seed, "sweep_psa", pid, self.samples) for pid in self.parameters]
        return np.column_stack(cols) if cols else np.zeros((self.samples, 0))

    def transform(self, Q: np.ndarray) -> np.ndarray:
        """Map unit-cube values to parameter values through each distribution's quantiles.

        Morris visits the grid edges 0 and 1; for unbounded distributions (normal, lognormal)
        those are mapped to the 2.5% and 97.5% quantiles (the grid spans the 95% range).

        Parameters
        ----------
        Q : numpy.ndarray
            float64 ``[n_rows, P]`` in [0, 1].

        Returns
        -------
        numpy.ndarray
            float64 ``[n_rows, P]``: parameter values in their own units.
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
        """Return the sweep with every default filled in, its distributions and base scenario."""
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
        """Return the SHA-256 (hex) of :meth:`resolved`: equal hashes mean the same design."""
        text = json.dumps(self.resolved(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


#: The keys of a sweep file and of one parameter's distribution.
TOP_KEYS: tuple[str, ...] = tuple(Sweep.model_fields)
SPEC_KEYS: tuple[str, ...] = tuple(ParameterSpec.model_fields)


def _valid_range(p, lib) -> tuple[float, float]:
    """The values a parameter may take (for checking {low, high})."""
    if p.kind in ("coverage", "calibration"):
        return (0.0, 1.0)
    if p.kind == "collaborative":
        from imsim.collaborative.config import PARAMETERS

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

    Raises
    ------
    InputError
        If the file cannot be read or any key is invalid.
    """
    p = Path(path)
    data = read_yaml(p, what="sweep")
    return Sweep(data, file=str(p), base_dir=p.parent)
