"""Detectability: will a state's vital statistics show the decline a scenario brings?

Small numbers hide real effects. For each state x race group (with ``ALL`` totals) and pooling
window of ``k`` years, :func:`detect` reports

* ``p_observed_decline_scenario`` / ``p_observed_decline_baseline``: the probability that the
  *observed* infant mortality rate of the evaluation window (the last ``k`` years of the
  scenario's horizon, pooled) is at least ``decline_pct`` percent below the *observed* rate of the
  baseline period, under the scenario and under no strategy (the baseline arm: rates still move
  with the calibration's trend model, so a decline can be observed without any strategy);
* ``p_significant``: the probability that the exact conditional Poisson comparison of the two
  rates is significant (one-sided, a decline, alpha 0.05): given the total ``n`` of deaths in
  both periods, the evaluation window's deaths ``x ~ Binomial(n, p0)``, ``p0 = B_eval / (B_eval +
  B_base)`` under H0 (equal rates), and the p-value is ``P(X <= x)``: ``scipy.stats.binomtest(x,
  n, p0, alternative="less")``, computed for all draws at once as ``binom.cdf(x, n, p0)``;
* ``mde_pct``: the minimum detectable effect, the true decline of the evaluation window's rate
  below the baseline period's (percent) that this test detects with 80% power, solved on the
  expected counts (exact: Poisson total, binomial split; :func:`power`);
* ``min_window_mde`` / ``min_window_scenario``: the shortest of the windows asked for with 80%
  power for a ``decline_pct`` decline (``mde_pct <= decline_pct``), and the shortest in which the
  scenario's own decline is significant in at least 80% of draws (``p_significant >= 0.8``).

Observation noise comes from the microsimulation: every birth of every cell is simulated, in
``replicates`` draws that also sample the evidence and calibration (parameter uncertainty). The
baseline period is simulated the same way (not a Poisson draw): a second microsim run of the
scenario's states over the baseline years with no strategies, with the same seed and hence the same
parameter draw ``d`` as the scenario run's draw ``d``, so parameter uncertainty common to both
periods cancels as it would in reality and the births of each period have their own Monte Carlo
noise. By default the baseline period of a ``k``-year window is the ``k`` years just before the
horizon (for a 2026-2030 horizon and ``k = 3``: 2023-2025); ``baseline_years`` fixes one period for
every window instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS
from imsim.core.constants import ALL, RACES, STATES
from imsim.core.errors import InputError

DETECT_COLUMNS = ["state", "race", "window_years", "decline_pct", "p_observed_decline_scenario",
                  "p_observed_decline_baseline", "p_significant", "mde_pct"]
EXTRA_COLUMNS = ["p_significant_baseline", "min_window_mde", "min_window_scenario",
                 "eval_years", "baseline_years", "births_eval", "births_baseline_period",
                 "imr_baseline_period_expected", "expected_decline_pct_scenario",
                 "expected_decline_pct_no_strategy", "draws"]
ALPHA = 0.05
POWER = 0.8
FIRST_YEAR = 2013   # the first year with cells (births.csv)


def _births(c):
    """Live births of counts ``[..., N_OUT]`` (all GA bands)."""
    return c[..., OUT_BIRTHS:OUT_BIRTHS + N_BANDS].sum(axis=-1)


def _deaths(c):
    """Infant deaths of counts ``[..., N_OUT]`` (all causes and GA bands)."""
    return c[..., OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=-1)


def observed_decline(deaths_eval, births_eval, deaths_base, births_base, decline_pct):
    """Whether an observed rate is at least ``decline_pct`` percent below the baseline's.

    Parameters
    ----------
    deaths_eval, births_eval, deaths_base, births_base : array_like
        Counts (broadcast).
    decline_pct : float
        Percent (0-100).

    Returns
    -------
    numpy.ndarray of bool
        ``deaths_eval / births_eval <= (1 - decline_pct/100) * deaths_base / births_base``;
        False where the baseline rate is 0 (no decline can be seen from 0).
    """
    de, be = np.asarray(deaths_eval, float), np.asarray(births_eval, float)
    db, bb = np.asarray(deaths_base, float), np.asarray(births_base, float)
    # Cross-multiplied (no division): de / be <= f db / bb  <=>  de bb <= f db be.
    return (db > 0) & (bb > 0) & (be > 0) & (de * bb <= (1.0 - decline_pct / 100.0) * db * be)


def p_value_decline(deaths_eval, births_eval, deaths_base, births_base):
    """One-sided p-value of the exact conditional Poisson test for a lower evaluation rate.

    Parameters
    ----------
    deaths_eval, births_eval, deaths_base, births_base : array_like
        Counts (broadcast).

    Returns
    -------
    numpy.ndarray
        ``binom.cdf(x, x + y, B_e / (B_e + B_b))``, the p-value of
        ``scipy.stats.binomtest(x, x + y, p0, alternative="less")``; 1 where there are no deaths.
    """
    x = np.asarray(deaths_eval, float)
    n = x + np.asarray(deaths_base, float)
    be, bb = np.asarray(births_eval, float), np.asarray(births_base, float)
    p0 = be / (be + bb)
    return np.where(n > 0, stats.binom.cdf(np.round(x), np.round(n), p0), 1.0)


class _Power:
    """Exact power of the one-sided conditional test on Poisson counts, as a function of decline.

    With ``mu_b`` expected baseline-period deaths, ``r0 = mu_b / B_b`` and evaluation births
    ``B_e``, a true decline ``delta`` gives ``mu_e = B_e r0 (1 - delta)``. The total ``T`` of deaths
    is Poisson(``mu_e + mu_b``); given ``T`` the test rejects when ``x <= c_T``, the largest ``x``
    with ``binom.cdf(x, T, p0) < alpha``, which happens with probability ``binom.cdf(c_T, T, pi)``,
    ``pi = mu_e / (mu_e + mu_b)``. The sum runs over every ``T`` within 9 standard deviations of
    ``mu_e + mu_b`` (the Poisson mass outside is about 1e-15). The critical values depend on ``T``
    only: they are computed once per ``T`` (on first use) and kept.
    """

    SD = 8.0

    def __init__(self, mu_b: float, births_base: float, births_eval: float, alpha=ALPHA):
        self.mu_b = float(mu_b)
        self.mu_e0 = float(births_eval) * float(mu_b) / float(births_base)
        self.p0 = float(births_eval) / (float(births_eval) + float(births_base))
        self.alpha = alpha
        lo, _ = self._range(self.mu_b)
        _, hi = self._range(self.mu_b + self.mu_e0)
        self.lo = lo
        self.T = np.arange(lo, hi + 1, dtype=float)
        self.c = np.full(self.T.shape, np.nan)

    def _range(self, m):
        return (max(0, int(math.floor(m - self.SD * math.sqrt(m) - 10))),
                int(math.ceil(m + self.SD * math.sqrt(m) + 10)))

    def __call__(self, delta: float) -> float:
        mu_e = self.mu_e0 * (1.0 - delta)
        m = mu_e + self.mu_b
        if m <= 0:
            return 0.0
        a, b = self._range(m)
        i0, i1 = max(a - self.lo, 0), min(b - self.lo + 1, self.T.shape[0])
        T, c = self.T[i0:i1], self.c[i0:i1]            # views: critical values filled in place
        todo = np.isnan(c)
        if todo.any():
            # Largest x with cdf(x) < alpha: one below the smallest x with cdf(x) >= alpha.
            c[todo] = stats.binom.ppf(self.alpha, T[todo], self.p0) - 1.0
        # Poisson pmf and binomial cdf through scipy.special (the rv_discrete wrappers cost more
        # than the sums for small counts); binom.cdf(c, T, pi) is 0 for c < 0.
        pmf = np.exp(special.xlogy(T, m) - m - special.gammaln(T + 1.0))
        ok = c >= 0
        cdf = np.zeros_like(T)
        cdf[ok] = special.bdtr(c[ok].astype(np.int64), T[ok].astype(np.int64), mu_e / m)
        return float(np.sum(pmf * cdf))


def power(decline_pct, mu_b, births_base, births_eval, alpha=ALPHA) -> float:
    """Exact power of the conditional test to detect a true decline (see :class:`_Power`).

    Parameters
    ----------
    decline_pct : float
        True decline of the evaluation rate below the baseline period's, percent.
    mu_b : float
        Expected deaths in the baseline period.
    births_base, births_eval : float
        Births of the baseline period and of the evaluation window.
    alpha : float
        One-sided significance level.

    Returns
    -------
    float
        The probability that the test is significant.
    """
    return _Power(mu_b, births_base, births_eval, alpha)(decline_pct / 100.0)


def mde_pct(mu_b, births_base, births_eval, target=POWER, alpha=ALPHA) -> float:
    """The smallest true decline (percent) detected with power ``target``; NaN if none is.

    Parameters
    ----------
    mu_b : float
        Expected deaths in the baseline period.
    births_base, births_eval : float
        Births of the baseline period and of the evaluation window.
    target : float
        Power (default 0.8).
    alpha : float
        One-sided significance level.

    Returns
    -------
    float
        Percent in (0, 100), solved to 0.0001 percentage points; NaN when even a 99.99% decline
        is detected with less than ``target`` (too few expected deaths) or there are no births.
    """
    if not (mu_b > 0 and births_base > 0 and births_eval > 0):
        return float("nan")
    f = _Power(mu_b, births_base, births_eval, alpha)
    top = 0.9999
    # Bracket the root near the normal approximation on the log rate ratio, so that every
    # evaluation sums over nearly the same totals T (their critical values are reused).
    z = stats.norm.ppf(1.0 - alpha) + stats.norm.ppf(target)
    guess = 1.0 - math.exp(-z * math.sqrt(1.0 / f.mu_e0 + 1.0 / f.mu_b))
    lo, hi = min(0.8 * guess, top), min(1.25 * guess + 1e-3, top)
    while lo > 0.0 and f(lo) >= target:
        lo = lo / 2.0 if lo > 1e-3 else 0.0
    if lo == 0.0 and f(0.0) >= target:
        return 0.0
    while f(hi) < target:
        if hi >= top:
            return float("nan")
        hi = min(top, hi + 0.5 * (top - hi) + 0.01)
    return 100.0 * optimize.brentq(lambda d: f(d) - target, lo, hi, xtol=1e-6)


@dataclass
class Detection:
    """What :func:`detect` returns.

    Attributes
    ----------
    table : pandas.DataFrame
        :data:`DETECT_COLUMNS` then :data:`EXTRA_COLUMNS`, one row per state x race x window.
    result : imsim.analysis.runner.Result
        The scenario's microsim run (the evaluation windows).
    baseline_result : imsim.analysis.runner.Result
        The microsim run of the baseline period (no strategies).
    settings : dict
        Windows, decline, replicates, seed, baseline periods (JSON-ready).
    timings : dict
        Seconds: ``scenario_s``, ``baseline_period_s``, ``expected_s``, ``tables_s``.
    """

    table: pd.DataFrame
    result: object
    baseline_result: object
    settings: dict
    timings: dict = field(default_factory=dict)


def baseline_periods(years, windows, baseline_years=None) -> dict[int, tuple[int, int]]:
    """The baseline period of each window (see module docstring); InputError if impossible.

    Parameters
    ----------
    years : tuple of int
        The scenario's horizon (first, last).
    windows : list of int
        Pooling windows, years.
    baseline_years : tuple of int, optional
        One fixed period (first, last) for every window.

    Returns
    -------
    dict of int to tuple
        Window -> (first, last) baseline year.
    """
    first, last = years
    span = last - first + 1
    bad = [k for k in windows if k < 1 or k > span]
    if bad:
        raise InputError(f"--windows {bad[0]} is not possible: the scenario's horizon {first}-{last} "
                         f"has {span} year(s); allowed: 1 to {span}")
    if baseline_years is not None:
        a, b = baseline_years
        if a > b or a < FIRST_YEAR or b >= first:
            raise InputError(f"--baseline-years {a},{b} is not possible: allowed first <= last, "
                             f"from {FIRST_YEAR} and before the horizon's first year {first}")
        return {k: (a, b) for k in windows}
    out = {k: (first - k, first - 1) for k in windows}
    early = [k for k in windows if first - k < FIRST_YEAR]
    if early:
        k = max(early)
        raise InputError(f"the baseline period of a {k}-year window would be {first - k}-"
                         f"{first - 1}, before the first data year {FIRST_YEAR}; give "
                         f"--baseline-years FIRST,LAST or smaller --windows")
    return out


def _groups(cells, states):
    """Group keys and a [G, n] indicator: each state x race, state x ALL, ALL x race, ALL x ALL."""
    st = np.asarray(STATES)[cells.s_idx]
    rc = np.asarray(RACES)[cells.r_idx]
    keys, rows = [], []
    for s in list(states) + [ALL]:
        smask = (st == s) if s != ALL else np.ones(cells.n, bool)
        for r in list(RACES) + [ALL]:
            keys.append((s, r))
            rows.append(smask & ((rc == r) if r != ALL else True))
    return keys, np.array(rows, dtype=float)


def _window_sums(counts, cells, states, y0, y1):
    """Sum ``counts[D, n]`` over the cells of each group in years y0..y1 -> [D, G]."""
    keys, m = _groups(cells, states)
    inside = (cells.year >= y0) & (cells.year <= y1)
    return keys, counts @ (m * inside[None, :]).T


def detect(scenario, windows=(1, 3, 5), decline_pct: float = 10.0, replicates: int = 200,
           seed: int | None = None, baseline_years=None, calibration=None,
           progress: bool = False) -> Detection:
    """Probability of observing, and of detecting, a decline in each state x race group.

    Parameters
    ----------
    scenario : imsim.config.scenario.Scenario
        The scenario; its horizon's last ``k`` years are the evaluation window.
    windows : sequence of int
        Pooling windows (years), each at most the horizon's length.
    decline_pct : float
        The decline to observe, percent (0 < x < 100).
    replicates : int
        Microsim draws (>= 2; each samples the evidence and the calibration).
    seed : int, optional
        Default: the scenario's.
    baseline_years : tuple of int, optional
        A fixed baseline period for every window (default: the ``k`` years before the horizon).
    calibration : optional
        As :func:`imsim.analysis.runner.run`.
    progress : bool
        Progress bars over the draws (tqdm).

    Returns
    -------
    Detection
        The table and both runs.

    Raises
    ------
    InputError
        For impossible windows, declines, replicates or baseline periods (checked before any
        simulation).
    """
    import time

    from imsim.analysis.runner import run

    windows = sorted({int(k) for k in windows})
    if not windows:
        raise InputError("--windows is empty; give pooling windows in years, e.g. 1,3,5")
    decline_pct = float(decline_pct)
    if not (0.0 < decline_pct < 100.0) or decline_pct != decline_pct:
        raise InputError(f"--decline {decline_pct:g} is out of range; allowed: more than 0 and "
                         f"less than 100 (percent)")
    replicates = int(replicates)
    if not 2 <= replicates <= 10_000:
        raise InputError(f"--replicates {replicates} is out of range; allowed: 2 to 10000")
    seed = scenario.seed if seed is None else int(seed)
    first, last = scenario.years
    periods = baseline_periods((first, last), windows, baseline_years)
    b0 = min(p[0] for p in periods.values())
    b1 = max(p[1] for p in periods.values())
    states = scenario.state_list
    base_scn = scenario.model_copy(update={
        "name": f"{scenario.name}-baseline-period", "years": (b0, b1), "strategies": None,
        "by_state": None, "exposures": None, "collaborative": None})

    t = {}
    t0 = time.perf_counter()
    res = run(scenario, engine="microsim", seed=seed, replicates=replicates,
              progress=progress, calibration=calibration)
    t["scenario_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res_b = run(base_scn, engine="microsim", seed=seed, replicates=replicates,
                progress=progress, calibration=calibration)
    t["baseline_period_s"] = time.perf_counter() - t0
    # Expected counts (point): the MDE's baseline-period deaths and the scenario's true decline.
    t0 = time.perf_counter()
    exp_a = run(scenario, engine="expected", seed=seed, replicates=1, calibration=calibration)
    exp_b = run(base_scn, engine="expected", seed=seed, replicates=1, calibration=calibration)
    t["expected_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sl = slice(1, None)                       # draws 1..R: parameter draws + Monte Carlo noise
    da_s = _deaths(res.arms.scenario[sl])
    da_b = _deaths(res.arms.baseline[sl])
    ba = _births(res.arms.baseline[sl])
    db = _deaths(res_b.arms.baseline[sl])
    bb = _births(res_b.arms.baseline[sl])
    ea_s, ea_b = _deaths(exp_a.arms.scenario[:1]), _deaths(exp_a.arms.baseline[:1])
    eba = _births(exp_a.arms.baseline[:1])
    eb, ebb = _deaths(exp_b.arms.baseline[:1]), _births(exp_b.arms.baseline[:1])
    ca, cb = res.inputs.cells, res_b.inputs.cells
    rows = []
    for k in windows:
        y0, y1 = last - k + 1, last
        p0_, p1_ = periods[k]
        keys, e_s = _window_sums(da_s, ca, states, y0, y1)
        _, e_b = _window_sums(da_b, ca, states, y0, y1)
        _, e_n = _window_sums(ba, ca, states, y0, y1)
        _, b_d = _window_sums(db, cb, states, p0_, p1_)
        _, b_n = _window_sums(bb, cb, states, p0_, p1_)
        _, x_s = _window_sums(ea_s, exp_a.inputs.cells, states, y0, y1)
        _, x_b = _window_sums(ea_b, exp_a.inputs.cells, states, y0, y1)
        _, x_n = _window_sums(eba, exp_a.inputs.cells, states, y0, y1)
        _, xb_d = _window_sums(eb, exp_b.inputs.cells, states, p0_, p1_)
        _, xb_n = _window_sums(ebb, exp_b.inputs.cells, states, p0_, p1_)
        obs_s = observed_decline(e_s, e_n, b_d, b_n, decline_pct).mean(axis=0)
        obs_b = observed_decline(e_b, e_n, b_d, b_n, decline_pct).mean(axis=0)
        sig_s = (p_value_decline(e_s, e_n, b_d, b_n) < ALPHA).mean(axis=0)
        sig_b = (p_value_decline(e_b, e_n, b_d, b_n) < ALPHA).mean(axis=0)
        for g, (s, r) in enumerate(keys):
            mu_b, nb, ne = xb_d[0, g], xb_n[0, g], x_n[0, g]
            r0 = mu_b / nb if nb > 0 else np.nan
            with np.errstate(invalid="ignore", divide="ignore"):
                dec_s = 100.0 * (1.0 - (x_s[0, g] / ne) / r0)
                dec_b = 100.0 * (1.0 - (x_b[0, g] / ne) / r0)
            rows.append({
                "state": s, "race": r, "window_years": k, "decline_pct": decline_pct,
                "p_observed_decline_scenario": obs_s[g], "p_observed_decline_baseline": obs_b[g],
                "p_significant": sig_s[g], "mde_pct": mde_pct(mu_b, nb, ne),
                "p_significant_baseline": sig_b[g],
                "eval_years": f"{y0}-{y1}", "baseline_years": f"{p0_}-{p1_}",
                "births_eval": float(e_n[:, g].mean()), "births_baseline_period": float(nb),
                "imr_baseline_period_expected": 1000.0 * r0,
                "expected_decline_pct_scenario": dec_s,
                "expected_decline_pct_no_strategy": dec_b, "draws": int(e_s.shape[0])})
    df = pd.DataFrame(rows)
    for col, ok in (("min_window_mde", df.mde_pct <= decline_pct),
                    ("min_window_scenario", df.p_significant >= POWER)):
        shortest = df[ok].groupby(["state", "race"]).window_years.min()
        df[col] = [shortest.get((s, r), np.nan) for s, r in zip(df.state, df.race)]
    df = df[DETECT_COLUMNS + EXTRA_COLUMNS].sort_values(
        ["state", "race", "window_years"], key=_order).reset_index(drop=True)
    t["tables_s"] = time.perf_counter() - t0
    settings = {"windows": windows, "decline_pct": decline_pct, "replicates": replicates,
                "seed": seed, "alpha": ALPHA, "power": POWER,
                "evaluation_windows": {str(k): [last - k + 1, last] for k in windows},
                "baseline_periods": {str(k): list(v) for k, v in periods.items()},
                "baseline_period_choice": ("fixed (--baseline-years)" if baseline_years
                                           else "the k years before the horizon")}
    return Detection(df, res, res_b, settings, t)


def _order(col):
    """Sort key: states and races in the package's order, ALL last; numbers as they are."""
    if col.name == "state":
        return col.map({s: i for i, s in enumerate(list(STATES) + [ALL])})
    if col.name == "race":
        return col.map({r: i for i, r in enumerate(list(RACES) + [ALL])})
    return col
