"""``imsim check``: the model against published figures that were not used to fit it.

Each row of the packaged ``validation.csv`` (built by ``scripts/build_data.py``, every row citing
its source) is one published figure with its interval. :func:`run_check` computes the model's value
of the same quantity, with an interval over the uncertainty draws of
:mod:`imsim.analysis.draws`, and says whether the two intervals overlap. Modelled values are always
computed from the model as it stands, never stored: when the birth model changes, so do they.

How each quantity is modelled (the ``compute`` of :data:`QUANTITIES`):

* **Baseline figures** (deaths and IMR by gestational-age band, births by band and race, neonatal
  share, postneonatal and SUID rates): the national 2013-2015 baseline (all states, no strategy)
  through :func:`imsim.analysis.runner.run` with the expected engine; draw 0 is the point, draws
  1..R the interval.
* **Level III odds ratio**: for the same draws, the baseline parameters of the 2013-2015 cells with
  every birth under 32 weeks delivered at a level III+ hospital, and with none; the odds ratio of
  neonatal death among births under 32 weeks between the two (the model applies
  ``nonlevel3_neonatal_or`` within each GA band and exposure combination, so the pooled ratio can
  differ from it).
* **Medicaid expansion** difference-in-differences: the model's ``social_determinants:
  {policy: medicaid_expansion}`` strategy in the states of the study's expansion group
  (``states.csv``: effective dates from KFF) against the same states without it. The model has no
  time trend and its non-expansion states are untouched, so its DiD is the scenario-minus-baseline
  IMR in the expansion states (per 1,000, or a percent change where the paper reports one). It is
  evaluated in 2013, the last year before any of these expansions, because from a state's
  expansion year on the model treats expansion as already in place (no effect); with rates held
  at the 2013-2015 fit, the year changes only the birth mix. ASSUMPTION: coverage 1.0 of the
  low-income (Medicaid-paid) births of those states -- the reading under which the evidence
  effect is derived (population DiD / Medicaid share of births) -- with range 0.5-1.0 (not every
  Medicaid-paid birth gained coverage before pregnancy); the modelled interval spans the draws at
  both ends.
* **CoIIN** (Hirai et al. 2018): the learning-collaborative model with its default parameters
  (those of ``scenarios/collaborative_coiin.yaml``, whose only non-default, AL's capacity 0.7, is
  left out), supported 2013-2014 (the Region IV/VI CoIIN ran from late 2012; the model starts in
  2013) in the 13 states of HHS Regions IV and VI, each on its strategies of the illustrative
  ``coiin_2013_2017`` assignment (which states chose which is not published); the relative change
  in 2014 of preterm births and of elective early-term deliveries in those states, scenario vs
  baseline. The model's other regions have no collaborative, so this is its difference between
  regions.

``within`` is True when the published interval ``[published_lo, published_hi]`` and the modelled
interval ``[modelled_lo, modelled_hi]`` overlap (a missing bound is replaced by the point). It is a
statement about two intervals, not a test: a row can be within because both intervals are wide.
A row that is not within gets a ``reason`` when the model is known to measure the quantity
differently (``Quantity.differs``); the model is never adjusted to make a row pass.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS, OUT_EET
from imsim.core.constants import ALL, RACES, STATES
from imsim.core.errors import InputError

__all__ = [
    "CHECK_COLUMNS", "CheckResult", "MEDICAID_COVERAGE", "QUANTITIES", "Quantity", "REGION_IV_VI",
    "compare", "load_validation", "run_check", "within",
]

#: Columns of the check table (check.csv), in order.
CHECK_COLUMNS = ["quantity", "published", "published_lo", "published_hi", "modelled", "modelled_lo",
                 "modelled_hi", "within", "source", "population", "period", "reason"]
#: Columns of the packaged validation table.
VALIDATION_COLUMNS = ["quantity", "population", "period", "published", "published_lo", "published_hi",
                      "unit", "source", "note"]
#: ASSUMPTION: coverage of the low-income births of the expansion states (point, other end).
MEDICAID_COVERAGE = (1.0, 0.5)
#: HHS Regions IV and VI (the 13 states of the first CoIIN, 2012-2014; HHS regional map, listed by
#: AHA News 2018-04-20, https://www.aha.org/news/headline/2018-04-20-hrsa-reports-improved-birth-outcomes-southern-states).
REGION_IV_VI = ("AL", "FL", "GA", "KY", "MS", "NC", "SC", "TN", "AR", "LA", "NM", "OK", "TX")
#: Year in which the Medicaid-expansion strategy is evaluated (before every expansion compared).
MEDICAID_YEAR = 2013

# GA band indices (GA_BANDS = <28, 28-31, 32-33, 34-36, 37-38, 39+)
_BANDS = {"lt28": [0], "28_31": [1], "32_36": [2, 3], "34_36": [3], "37_38": [4], "39plus": [5],
          "37plus": [4, 5], "lt32": [0, 1], "32_38": [2, 3, 4], "lt37": [0, 1, 2, 3]}


@dataclass(frozen=True)
class Quantity:
    """How the model computes one kind of published figure.

    Attributes
    ----------
    group : str
        Panel of the figure and section of check.md.
    label : str
        Readable name.
    compute : callable
        ``compute(ctx, population) -> float [V, D]``: the value for each assumption variant ``V``
        (variant 0 is the point; usually ``V = 1``) and draw ``D`` (draw 0 is the point).
    differs : str
        Known difference between what the model and the source measure; the ``reason`` of a row
        that is not within.
    differs_by_period : tuple of (str, str)
        ``(period, reason)`` pairs for figures of one source that differ in another way.
    """

    group: str
    label: str
    compute: Callable
    differs: str
    differs_by_period: tuple = ()

    def reason(self, period: str) -> str:
        """The known difference for a figure of ``period`` (``differs_by_period`` overrides)."""
        return dict(self.differs_by_period).get(str(period), self.differs)


@dataclass
class CheckResult:
    """The outcome of :func:`run_check`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per published figure, columns :data:`CHECK_COLUMNS`.
    validation : pandas.DataFrame
        The published figures compared (validation.csv), with their units and notes.
    seed, replicates : int
        The uncertainty draws used.
    timings : dict of str to float
        Seconds.
    """

    table: pd.DataFrame
    validation: pd.DataFrame
    seed: int
    replicates: int
    timings: dict = field(default_factory=dict)

    @property
    def n_within(self) -> int:
        """Number of rows whose intervals overlap."""
        return int(self.table["within"].sum())

    def summary(self) -> str:
        """One line: ``k of n published figures within their interval``."""
        return f"{self.n_within} of {len(self.table)} published figures within their interval"


def load_validation(table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return the published figures (the packaged ``validation.csv``, or ``table``), checked.

    Raises
    ------
    InputError
        When a column is missing or a quantity is not one of :data:`QUANTITIES`.
    """
    if table is None:
        from imsim.inputs.data import load_table

        table = load_table("validation")
    missing = [c for c in VALIDATION_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"validation table lacks columns {', '.join(missing)}")
    unknown = sorted(set(table["quantity"]) - set(QUANTITIES))
    if unknown:
        raise InputError(f"unknown quantity {unknown[0]!r} in the validation table; allowed: "
                         f"{', '.join(sorted(QUANTITIES))}")
    out = table.copy()
    out["population"] = out["population"].astype(str)
    out["period"] = out["period"].astype(str)
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# The model runs a check needs (each done once, on the same seed and draws)
# ---------------------------------------------------------------------------------------------

class _Context:
    """Runs the model lazily for the quantities asked for; every run uses the same draws."""

    def __init__(self, seed: int, replicates: int, calibration=None):
        self.seed, self.replicates, self.calibration = int(seed), int(replicates), calibration
        self._cache: dict = {}

    def _run(self, spec: dict):
        from imsim.analysis.runner import run
        from imsim.config.scenario import parse_scenario

        key = repr(sorted(spec.items()))
        if key not in self._cache:
            scenario = parse_scenario({"seed": self.seed, **spec}, file="imsim check")
            self._cache[key] = run(scenario, engine="expected", seed=self.seed,
                                   replicates=self.replicates, calibration=self.calibration)
        return self._cache[key]

    # -- the national 2013-2015 baseline ----------------------------------------------------------
    def baseline(self):
        return self._run({"name": "check-baseline", "years": [2013, 2015], "states": "all"})

    def counts(self, population: str, arm: str = "baseline", result=None):
        """Births ``[D, 6]`` and deaths ``[D, 3, 6]`` summed over the population's cells."""
        result = result or self.baseline()
        arr = getattr(result.arms, arm)
        cells = result.inputs.cells
        mask = np.ones(cells.n, bool) if population == ALL else cells.r_idx == _race(population)
        tot = arr[:, mask, :].sum(axis=1)
        births = tot[:, OUT_BIRTHS:OUT_BIRTHS + N_BANDS]
        deaths = tot[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].reshape(-1, 3, N_BANDS)
        return births, deaths, tot

    # -- level III odds ratio -------------------------------------------------------------------------
    def level3_or(self) -> np.ndarray:
        if "level3" not in self._cache:
            from imsim.birth.engines import expected
            from imsim.birth.params import build_tables
            from imsim.inputs.fit import fit_for

            res = self.baseline()
            base = res.inputs.baseline
            cells = base.pooled_cells()
            out = []
            for dr in res.draws:
                fit = fit_for(base, dr.effects, res.inputs.calibration, dr.calibration_draw)
                params = base.params(cells, dr.effects, fit)
                risk = []
                for share in (1.0, 0.0):                  # all at level III+, none
                    p = params.copy()
                    p.p_l3 = np.full_like(p.p_l3, share)
                    c = expected(build_tables(p)).sum(axis=0)
                    risk.append(c[OUT_DEATHS:OUT_DEATHS + 2].sum() / c[OUT_BIRTHS:OUT_BIRTHS + 2].sum())
                odds = [r / (1.0 - r) for r in risk]
                out.append(odds[1] / odds[0])
            self._cache["level3"] = np.array(out)[None, :]
        return self._cache["level3"]

    # -- Medicaid expansion ---------------------------------------------------------------------------
    def medicaid(self, states: tuple[str, ...], coverage: float):
        return self._run({"name": "check-medicaid", "years": [MEDICAID_YEAR, MEDICAID_YEAR],
                          "states": list(states),
                          "strategies": {"social_determinants": {"coverage": coverage,
                                                                 "policy": "medicaid_expansion"}}})

    # -- CoIIN ---------------------------------------------------------------------------------------------
    def coiin(self):
        from imsim.collaborative.teams import coiin_2013_2017_teams

        teams = coiin_2013_2017_teams(self.seed)
        return self._run({"name": "check-coiin", "years": [2014, 2014], "states": list(REGION_IV_VI),
                          "collaborative": {"start": 2013, "support_ends": 2014,
                                            "teams": {s: list(teams[s]) for s in REGION_IV_VI}}})


def _race(population: str) -> int:
    if population not in RACES:
        raise InputError(f"unknown population {population!r}; allowed: ALL, {', '.join(RACES)}")
    return RACES.index(population)


def _expansion_states(until: str, since: str = "2000-01-01") -> tuple[str, ...]:
    """States whose ACA Medicaid expansion took effect between ``since`` and ``until`` (states.csv)."""
    from imsim.inputs.data import load_table

    st = load_table("states")
    date = st["expansion_effective_date"].fillna("").astype(str)
    sel = st["medicaid_expansion"].astype(str).str.lower().isin(["true", "1"]) & (date >= since) & (date <= until) \
        & (date != "")
    return tuple(s for s in STATES if s in set(st.loc[sel, "state"]))


# ---------------------------------------------------------------------------------------------
# Quantities
# ---------------------------------------------------------------------------------------------

def _baseline_q(fn):
    """A quantity of the national baseline: ``fn(births [D, 6], deaths [D, 3, 6]) -> [D]``."""
    def compute(ctx: _Context, population: str) -> np.ndarray:
        b, d, _ = ctx.counts(population)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(fn(b, d), float)[None, :]
    return compute


def _death_share(bands):
    return _baseline_q(lambda b, d: d[:, :, bands].sum(axis=(1, 2)) / d.sum(axis=(1, 2)))


def _imr_ga(bands):
    return _baseline_q(lambda b, d: 1000.0 * d[:, :, bands].sum(axis=(1, 2)) / b[:, bands].sum(axis=1))


def _very_preterm_ratio(ctx: _Context, population: str) -> np.ndarray:
    b, _, _ = ctx.counts(population)
    w, _, _ = ctx.counts("nh_white")
    lt32 = _BANDS["lt32"]
    return ((b[:, lt32].sum(axis=1) / b.sum(axis=1)) / (w[:, lt32].sum(axis=1) / w.sum(axis=1)))[None, :]


def _medicaid_did(until: str, since: str = "2000-01-01", percent: bool = False):
    def compute(ctx: _Context, population: str) -> np.ndarray:
        states = _expansion_states(until, since)
        if not states:
            raise InputError(f"states.csv lists no state whose Medicaid expansion took effect from {since} "
                             f"to {until}")
        out = []
        for cov in MEDICAID_COVERAGE:
            res = ctx.medicaid(states, cov)
            b, d0, _ = ctx.counts(population, "baseline", res)
            _, d1, _ = ctx.counts(population, "scenario", res)
            dead0, dead1, births = d0.sum(axis=(1, 2)), d1.sum(axis=(1, 2)), b.sum(axis=1)
            out.append(100.0 * (dead1 / dead0 - 1.0) if percent else 1000.0 * (dead1 - dead0) / births)
        return np.stack(out)
    return compute


def _coiin_change(column: str):
    def compute(ctx: _Context, population: str) -> np.ndarray:
        res = ctx.coiin()
        _, _, t0 = ctx.counts(population, "baseline", res)
        _, _, t1 = ctx.counts(population, "scenario", res)
        if column == "preterm":
            x0 = t0[:, OUT_BIRTHS:OUT_BIRTHS + 4].sum(axis=1)
            x1 = t1[:, OUT_BIRTHS:OUT_BIRTHS + 4].sum(axis=1)
        else:
            x0, x1 = t0[:, OUT_EET], t1[:, OUT_EET]
        return (100.0 * (x1 / x0 - 1.0))[None, :]
    return compute


_GA_DEATHS = ("the model's gestational-age structure (ga_structure.csv: deaths by band from the NCHS "
              "cohort-linked files, births by band from natality data) comes from other years, files and "
              "gestational-age measures than this figure")
_TABLE_GA = ("the source table's GA measure differs from the obstetric estimate (its <28 wk band holds 1.2% of "
             "births, about 0.7% by the obstetric estimate); its deaths overlap the ones the model's GA "
             "structure is built from")
_LMP = ("published GA is LMP-based (2006 natality); the model's is the obstetric estimate")
_NO_TREND = "model has no time trend: rates are held at the 2013-2015 fit"
_MEDICAID = ("model effect is constant in time (no build-up over the years after expansion) and splits "
             "by race through each group's low-income share and death risk")

QUANTITIES: dict[str, Quantity] = {
    # share of infant deaths by GA band
    **{f"death_share_ga_{k}": Quantity("Share of infant deaths by gestational age", f"deaths {lab}",
                                       _death_share(_BANDS[k]), _GA_DEATHS, (("2011-2013", _TABLE_GA),))
       for k, lab in (("lt28", "<28 wk"), ("28_31", "28-31 wk"), ("32_36", "32-36 wk"), ("32_38", "32-38 wk"),
                      ("37plus", "37+ wk"), ("39plus", "39+ wk"), ("lt32", "<32 wk"))},
    # IMR by GA band
    **{f"imr_ga_{k}": Quantity("Infant mortality by gestational age", f"IMR {lab}",
                               _imr_ga(_BANDS[k]), _GA_DEATHS, (("2011-2013", _TABLE_GA),
                                                                ("2017", _NO_TREND + " (2017 figure); " + _GA_DEATHS)))
       for k, lab in (("lt28", "<28 wk"), ("28_31", "28-31 wk"), ("32_36", "32-36 wk"), ("34_36", "34-36 wk"),
                      ("37_38", "37-38 wk"), ("39plus", "39+ wk"), ("37plus", "37+ wk"), ("lt32", "<32 wk"))},
    "imr_ratio_37_38_vs_39plus": Quantity(
        "Infant mortality by gestational age", "IMR ratio 37-38 / 39+ wk",
        _baseline_q(lambda b, d: (d[:, :, 4].sum(axis=1) / b[:, 4]) / (d[:, :, 5].sum(axis=1) / b[:, 5])),
        _GA_DEATHS + "; published full term is 39-40 wk, the model's band 39+"),
    # GA distribution of births by race
    "very_preterm_share_of_preterm": Quantity(
        "Gestational age of births by race", "births <32 / <37 wk",
        _baseline_q(lambda b, d: b[:, :2].sum(axis=1) / b[:, :4].sum(axis=1)), _LMP),
    "very_preterm_ratio_vs_nh_white": Quantity(
        "Gestational age of births by race", "very preterm rate vs NH white", _very_preterm_ratio, _LMP),
    "preterm_rate": Quantity(
        "Gestational age of births by race", "preterm rate",
        _baseline_q(lambda b, d: 100.0 * b[:, :4].sum(axis=1) / b.sum(axis=1)),
        "the calibration gives the races without a published preterm rate one common value "
        "(calibration/structure.py); the figure is for another period"),
    # causes by race
    "neonatal_share": Quantity(
        "Neonatal share and SUID by race", "neonatal share of deaths",
        _baseline_q(lambda b, d: d[:, 0].sum(axis=1) / d.sum(axis=(1, 2))),
        "the model's cause split by race follows the 2010-2013 cohort structure with one national odds "
        "shift (calibration/structure.py); 2016 figure"),
    "pnmr": Quantity(
        "Neonatal share and SUID by race", "postneonatal mortality",
        _baseline_q(lambda b, d: 1000.0 * d[:, 1:].sum(axis=(1, 2)) / b.sum(axis=1)),
        _NO_TREND + " (2016 figure); the cause split by race follows the 2010-2013 cohort structure"),
    "suid_rate": Quantity(
        "Neonatal share and SUID by race", "SUID rate",
        _baseline_q(lambda b, d: 1000.0 * d[:, 1].sum(axis=1) / b.sum(axis=1)),
        _NO_TREND + " (2009 figure; the fit interpolates the 2011 and 2017 SUID rates to 2014)"),
    "suid_share": Quantity(
        "Neonatal share and SUID by race", "SUID share of deaths",
        _baseline_q(lambda b, d: d[:, 1].sum(axis=1) / d.sum(axis=(1, 2))),
        "the model's SUID is fitted to the 2015 rate; the published share is for 2013"),
    # risk-appropriate care
    "nonlevel3_neonatal_or": Quantity(
        "Level III odds ratio (births <32 wk)", "OR of neonatal death, not level III+",
        lambda ctx, pop: ctx.level3_or(),
        "the model applies the odds ratio within each GA band (<28, 28-31 wk) and exposure combination; "
        "pooled over them the odds ratio is smaller (non-collapsibility)"),
    "nonlevel3_neonatal_or_vlbw": Quantity(
        "Level III odds ratio (births <32 wk)", "OR of neonatal death, not level III+ (vs the VLBW OR)",
        lambda ctx, pop: ctx.level3_or(),
        "the model has no birthweight: its odds ratio is for births <32 wk, pooled over GA bands"),
    # Medicaid expansion
    "medicaid_did_imr_2014_expanders": Quantity(
        "Medicaid expansion: difference-in-differences", "DiD IMR, 2014 expanders",
        _medicaid_did("2014-12-31", "2014-01-01"), _MEDICAID),
    "medicaid_did_imr_2014_expanders_year2": Quantity(
        "Medicaid expansion: difference-in-differences", "DiD IMR, 2014 expanders, year 2",
        _medicaid_did("2014-12-31", "2014-01-01"), _MEDICAID),
    "medicaid_did_imr_2016_expanders": Quantity(
        "Medicaid expansion: difference-in-differences", "DiD IMR, expanders by 2016",
        _medicaid_did("2016-12-31"), _MEDICAID + "; the source compares unweighted state means"),
    "medicaid_did_imr_2017_expanders": Quantity(
        "Medicaid expansion: difference-in-differences", "DiD IMR, expanders by 2017",
        _medicaid_did("2017-12-31"), _MEDICAID),
    "medicaid_pct_change_diff_2016_expanders": Quantity(
        "Medicaid expansion: difference-in-differences", "% IMR change, expanders by 2016",
        _medicaid_did("2016-12-31", percent=True), _MEDICAID + "; the source compares unweighted state means"),
    # CoIIN
    "coiin_preterm_change_diff": Quantity(
        "CoIIN Regions IV/VI vs other regions (2011-2014)", "% change in preterm births",
        _coiin_change("preterm"),
        "the published pre-post change includes secular trends and other activity; the model's collaborative "
        "coverage (all ASSUMPTIONS) moves few births across 37 weeks (the hard stop moves 37-38 wk births "
        "to 39+)"),
    "coiin_eed_change_diff": Quantity(
        "CoIIN Regions IV/VI vs other regions (2011-2014)", "% change in elective early-term deliveries",
        _coiin_change("eed"),
        "the model's collaborative coverage (all ASSUMPTIONS, illustrative team assignment) and hard-stop "
        "efficacy give the change; the published change includes secular trends"),
}


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------

def within(pub_lo, pub_hi, mod_lo, mod_hi) -> np.ndarray:
    """True where the intervals ``[pub_lo, pub_hi]`` and ``[mod_lo, mod_hi]`` overlap.

    Bounds are numbers or arrays; a NaN bound makes the row False (use the point for a missing
    bound before calling).
    """
    pub_lo, pub_hi, mod_lo, mod_hi = (np.asarray(x, float) for x in (pub_lo, pub_hi, mod_lo, mod_hi))
    with np.errstate(invalid="ignore"):
        return (np.maximum(pub_lo, mod_lo) <= np.minimum(pub_hi, mod_hi)) & ~np.isnan(
            pub_lo + pub_hi + mod_lo + mod_hi)


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    """Point, lo, hi of ``[V, D]`` values: variant 0 draw 0; 2.5th-97.5th percentiles of draws
    1..D-1 (or the points when D = 1), enveloped over the variants."""
    values = np.atleast_2d(np.asarray(values, float))
    point = float(values[0, 0])
    if values.shape[1] > 1:
        draws = values[:, 1:]
        lo = float(np.min(np.percentile(draws, 2.5, axis=1)))
        hi = float(np.max(np.percentile(draws, 97.5, axis=1)))
    else:
        lo, hi = float(np.min(values[:, 0])), float(np.max(values[:, 0]))
    return point, min(lo, point), max(hi, point)


def compare(rows: pd.DataFrame) -> pd.DataFrame:
    """Fill ``within`` and ``reason`` of a table with published and modelled columns.

    Parameters
    ----------
    rows : pandas.DataFrame
        Columns ``quantity, published, published_lo, published_hi, modelled, modelled_lo,
        modelled_hi`` (and optionally ``source, population, period, reason``: an existing reason,
        e.g. why the value could not be computed, is kept).

    Returns
    -------
    pandas.DataFrame
        A copy with columns :data:`CHECK_COLUMNS`; ``within`` as defined in the module docstring;
        ``reason`` empty for rows within, else the quantity's known difference (or a note that
        there is none).
    """
    df = rows.copy()
    for c in CHECK_COLUMNS:
        if c not in df.columns:
            df[c] = "" if c in ("source", "population", "period", "reason") else np.nan
    pub = df["published"].astype(float)
    mod = df["modelled"].astype(float)
    plo = df["published_lo"].astype(float).fillna(pub)
    phi = df["published_hi"].astype(float).fillna(pub)
    mlo = df["modelled_lo"].astype(float).fillna(mod)
    mhi = df["modelled_hi"].astype(float).fillna(mod)
    df["within"] = within(plo, phi, mlo, mhi)
    reasons = []
    for r, ok in zip(df.itertuples(index=False), df["within"]):
        given = str(r.reason) if isinstance(r.reason, str) else ""
        if ok:
            reasons.append("")
        elif given:
            reasons.append(given)
        else:
            q = QUANTITIES.get(r.quantity)
            reasons.append(q.reason(r.period) if q is not None else "no known difference in what is measured")
    df["reason"] = reasons
    df["within"] = df["within"].astype(bool)
    return df[CHECK_COLUMNS].reset_index(drop=True)


def run_check(replicates: int = 200, seed: int = 0, calibration=None,
              validation: pd.DataFrame | None = None) -> CheckResult:
    """Compute every published figure's modelled value with its interval and compare.

    Parameters
    ----------
    replicates : int
        Uncertainty draws (1: the point only, whose interval is then just the assumption range).
    seed : int
        Seed of the draws (and of the collaborative model), ``0 <= seed < 2**63``.
    calibration : str or path, optional
        Calibration to fit the baseline to (default: the packaged fit).
    validation : pandas.DataFrame, optional
        Published figures (default: the packaged ``validation.csv``).

    Returns
    -------
    CheckResult
        ``table`` with columns :data:`CHECK_COLUMNS`, one row per published figure, grouped as
        :data:`QUANTITIES` lists them (``validation`` in the same order).

    Raises
    ------
    InputError
        For replicates < 1, a seed out of range or a malformed validation table.
    """
    if int(replicates) < 1:
        raise InputError(f"replicates must be at least 1, got {replicates}")
    if not 0 <= int(seed) < 2**63:
        raise InputError(f"seed {seed} is out of range; allowed 0 to 2**63 - 1")
    t0 = time.perf_counter()
    val = load_validation(validation)
    ctx = _Context(seed, replicates, calibration)
    rows = []
    for r in val.itertuples(index=False):
        try:
            point, lo, hi = _interval(QUANTITIES[r.quantity].compute(ctx, r.population))
            reason = "" if np.isfinite(point) else "the model gives no value (no births or deaths in the group)"
        except InputError as exc:
            point = lo = hi = np.nan
            reason = f"not computed: {exc}"
        rows.append({"quantity": r.quantity, "published": r.published, "published_lo": r.published_lo,
                     "published_hi": r.published_hi, "modelled": point, "modelled_lo": lo,
                     "modelled_hi": hi, "source": r.source, "population": r.population,
                     "period": r.period, "reason": reason})
    groups = list(dict.fromkeys(q.group for q in QUANTITIES.values()))
    order = sorted(range(len(rows)), key=lambda i: (groups.index(QUANTITIES[rows[i]["quantity"]].group), i))
    val = val.iloc[order].reset_index(drop=True)
    table = compare(pd.DataFrame([rows[i] for i in order]))
    return CheckResult(table=table, validation=val, seed=int(seed), replicates=int(replicates),
                       timings={"check_s": time.perf_counter() - t0})
