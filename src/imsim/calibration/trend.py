"""The IMR trend model: rates that move with time, with projection uncertainty.

The calibration (:mod:`imsim.calibration.ratemodel`) fixes the *level* of every state x race cell
for 2013-2015 (centre year :data:`REF_YEAR`). This module moves it through time::

    lambda[s, r, t] = kappa_t * lambda0[s, r] * exp((b_s + d_r) (t - REF_YEAR))

* **National level** ``N(t)`` -- a local-level (random-walk) model of log national IMR, fitted by
  maximum likelihood (Kalman filter, Rauch-Tung-Striebel smoother) to the annual national series
  2007 to the latest year the data hold (:data:`NATIONAL_FILE`): observation variance ``1/deaths``
  (Poisson) plus a per-year extra for provisional or part-year data; level innovation variance
  ``q`` estimated. Inside the data a year takes its smoothed level (the data's fit); beyond it the
  last filtered level, with variance ``P_T + h q`` that widens with the horizon ``h``. A
  random walk carries no drift: in the back-test a fitted linear drift (-2.6%/year through 2012,
  -1.8%/year through 2015) overshot the flattening that followed at both origins and lost to
  carry-forward, so the model does not extrapolate the national slope.
* **State trends** ``b_s`` -- the slope of each state's log IMR *relative to the national level*,
  from a linear mixed model with partially pooled levels *and* slopes
  (``y[s, t] = mu + tau t + a_s + b_s t + e``, ``a_s ~ N(0, sigma_a^2)``,
  ``b_s ~ N(0, sigma_b^2)``, ``e ~ N(0, 1/deaths + sigma_e^2)``; variances by REML) fitted to the
  single-year state series (:mod:`imsim.calibration.series`: WONDER exports 2007-2012, targets
  2013-2017, and any single-year state rows a user's targets add) over the last :data:`WINDOW`
  years. State deaths in a year are in the tens to thousands, so the log-normal approximation of the
  Poisson count is adequate at this level (no state-year has fewer than about 30 deaths).
* **Race trends** ``d_r`` -- the slope of each race's log IMR relative to all races, from national
  blocks (:data:`RACE_FILE`: 2018-2019, 2020-2022, January-June 2023; the bridged-race
  2011-2017 block is kept for reference), partially pooled across races (normal-normal, uniform
  prior on the between-race sd, integrated on a grid). The mortality files give the *infant's*
  race (of the decedent); births are by the *mother's* race. The bridge: the ratio of the two is
  scaled by a race factor, which cancels in the slope (it is assumed constant over time), so
  only the relative *change* between blocks is used; the level of each race comes from the
  calibration (linked file, mother's race). From 2018 race is single race and multiracial infants
  are a separate group (dropped), which shifts NH API and NH AIAN by definition; the slopes of those
  two groups carry that shift and are flagged.
* ``kappa_t`` rescales the cells of year ``t`` so the national IMR of the year equals
  ``L0 * N(t) / Nbar``, ``L0`` the calibration's national 2013-2015 IMR and ``Nbar`` the mean
  national level of 2013-2015: births of the year
  (observed, or projected) give the weights, so composition changes are not counted twice.

Posterior draws: draw ``k`` of a calibration also draws the trend (stream ``trend``, index ``k``):
the national path (smoothed years independently within their smoothed variance; future years a
random walk from the last filtered level), every state slope and every race slope. The point
(``draw=None``) uses the means.

The GA, cause and exposure structure follows the rate: a cell-year's multiplier scales all three
causes alike; exposure prevalences are held at their packaged (latest) values.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from imsim.core.constants import ALL, RACES, STATES
from imsim.core.streams import generator

#: Centre year of the calibration's 2013-2015 level.
REF_YEAR = 2014
#: Years of the state series the state trends are fitted to (ASSUMPTION: the last 10 years the data
#: hold; 8-12 give the same back-test verdict, 6 loses to carry-forward at 2015).
WINDOW = 10
#: Packaged annual national series (``year, deaths, births, extra_sd, source``).
NATIONAL_FILE = "national_imr_series.csv"
#: Packaged national race blocks (``period, year_mid, race, deaths, births, all_deaths,
#: all_births, source``).
RACE_FILE = "race_imr_blocks.csv"
#: ASSUMPTION: share of a year's births in January-June (range 0.48-0.50; U.S. births peak in
#: July-September), used for the January-June 2023 provisional deaths.
H1_BIRTH_SHARE = 0.5
#: ASSUMPTION: extra sd (log scale) of a provisional or part-year national rate (range 0.01-0.03).
PROVISIONAL_SD = 0.02
Z95 = 1.959963984540054
N_S, N_R = len(STATES), len(RACES)


# =============================================================================================
# The national local-level model
# =============================================================================================

@dataclass
class LocalLevel:
    """A local-level model of log national IMR (per 1,000) on consecutive years.

    Attributes
    ----------
    years : numpy.ndarray
        int ``[T]`` consecutive years.
    y, v : numpy.ndarray
        float ``[T]``: observed log IMR and its observation variance.
    q : float
        Variance of the yearly level innovation.
    mean, var : numpy.ndarray
        float ``[T]``: smoothed level and its variance.
    last_mean, last_var : float
        Filtered level of the last year and its variance (the forecast origin).
    """

    years: np.ndarray
    y: np.ndarray
    v: np.ndarray
    q: float
    mean: np.ndarray
    var: np.ndarray
    last_mean: float
    last_var: float

    @property
    def last_year(self) -> int:
        """The last year with data."""
        return int(self.years[-1])

    def level(self, year) -> tuple[np.ndarray, np.ndarray]:
        """Return the level (log IMR) of ``year`` and its variance (smoothed inside the data;
        forecast ``last_mean``, ``last_var + h q`` beyond it; the first year's before it).

        Parameters
        ----------
        year : array_like of int

        Returns
        -------
        tuple of numpy.ndarray
            Mean and variance, the shape of ``year``.
        """
        year = np.asarray(year)
        idx = np.clip(year - self.years[0], 0, len(self.years) - 1)
        h = np.maximum(year - self.last_year, 0)
        mean = np.where(h > 0, self.last_mean, self.mean[idx])
        var = np.where(h > 0, self.last_var + h * self.q, self.var[idx])
        return mean.astype(float), var.astype(float)


def _kalman(y, v, q):
    """Filter and smooth a local-level model; return (smoothed mean, var, loglik, filt m, P)."""
    n = len(y)
    a = np.zeros(n)
    p = np.zeros(n)
    ll = 0.0
    m_prev, p_prev = y[0], 1e4                     # diffuse start
    for t in range(n):
        pp = p_prev + (q if t > 0 else 0.0)
        f = pp + v[t]
        if t > 0:
            ll += -0.5 * (np.log(2 * np.pi * f) + (y[t] - m_prev) ** 2 / f)
        k = pp / f
        a[t] = m_prev + k * (y[t] - m_prev)
        p[t] = (1 - k) * pp
        m_prev, p_prev = a[t], p[t]
    ms, ps = a.copy(), p.copy()
    for t in range(n - 2, -1, -1):                 # Rauch-Tung-Striebel smoother
        pp = p[t] + q
        j = p[t] / pp
        ms[t] = a[t] + j * (ms[t + 1] - a[t])
        ps[t] = p[t] + j * j * (ps[t + 1] - pp)
    return ms, ps, ll, a, p


def fit_local_level(years, deaths, births, extra_sd=None) -> LocalLevel:
    """Fit the local-level model to an annual series (maximum likelihood for ``q``).

    Parameters
    ----------
    years : array_like of int
        Consecutive years.
    deaths, births : array_like of float
        Deaths and live births of each year.
    extra_sd : array_like of float, optional
        Extra observation sd on the log scale (provisional or part-year data).

    Returns
    -------
    LocalLevel
    """
    from scipy.optimize import minimize_scalar

    years = np.asarray(years, dtype=int)
    if len(years) < 3 or np.any(np.diff(years) != 1):
        raise ValueError(f"the national series needs 3 or more consecutive years, got {list(years)}")
    deaths = np.asarray(deaths, float)
    births = np.asarray(births, float)
    y = np.log(1000.0 * deaths / births)
    v = 1.0 / deaths + (0.0 if extra_sd is None else np.asarray(extra_sd, float) ** 2)
    res = minimize_scalar(lambda lq: -_kalman(y, v, np.exp(lq))[2],
                          bounds=(np.log(1e-8), np.log(0.05)), method="bounded",
                          options={"xatol": 1e-6})
    q = float(np.exp(res.x))
    ms, ps, _, a, p = _kalman(y, v, q)
    return LocalLevel(years, y, v, q, ms, ps, float(a[-1]), float(p[-1]))


# =============================================================================================
# State trends relative to the national level
# =============================================================================================

@dataclass
class StateTrends:
    """Partially pooled state levels and slopes of log IMR relative to the national level.

    Attributes
    ----------
    states : list of str
        States fitted (the order of the arrays).
    level, slope : numpy.ndarray
        float ``[S]``: posterior mean of ``mu + a_s`` and ``tau + b_s`` (log scale, per year).
    cov : numpy.ndarray
        float ``[S, 2, 2]``: posterior covariance of (level, slope).
    centre : int
        The year the level refers to (``t = year - centre``).
    years : tuple of int
        First and last year fitted.
    sigma : dict
        REML estimates ``sigma_a``, ``sigma_b``, ``sigma_e`` and fixed effects ``mu``, ``tau``.
    """

    states: list
    level: np.ndarray
    slope: np.ndarray
    cov: np.ndarray
    centre: int
    years: tuple
    sigma: dict = field(default_factory=dict)

    def slope_array(self) -> tuple[np.ndarray, np.ndarray]:
        """Return slope mean and sd on the ``STATES`` order (0 and the pooled sd if absent)."""
        mean = np.zeros(N_S)
        sd = np.full(N_S, float(self.sigma.get("sigma_b", 0.0)))
        pos = {s: i for i, s in enumerate(self.states)}
        for si, s in enumerate(STATES):
            if s in pos:
                mean[si] = self.slope[pos[s]]
                sd[si] = np.sqrt(self.cov[pos[s], 1, 1])
        return mean, sd


def _reml(Y, X, V):
    """REML fit of the random intercept-and-slope model; returns (beta, sigmas, posteriors)."""
    from scipy.optimize import minimize

    Z = [np.column_stack([np.ones_like(x), x]) for x in X]

    def parts(th):
        sa, sb, se = np.exp(th)
        G = np.diag([sa * sa, sb * sb])
        A = np.zeros((2, 2))
        b = np.zeros(2)
        inv, logdet = [], 0.0
        for y, z, v in zip(Y, Z, V):
            S = np.diag(v + se * se) + z @ G @ z.T
            c = np.linalg.cholesky(S)
            Si = np.linalg.inv(c).T @ np.linalg.inv(c)
            inv.append(Si)
            logdet += 2 * np.log(np.diag(c)).sum()
            A += z.T @ Si @ z
            b += z.T @ Si @ y
        beta = np.linalg.solve(A, b)
        return G, A, beta, inv, logdet

    def negll(th):
        G, A, beta, inv, logdet = parts(th)
        q = sum(float((y - z @ beta) @ Si @ (y - z @ beta)) for y, z, Si in zip(Y, Z, inv))
        return 0.5 * (logdet + q + np.linalg.slogdet(A)[1])

    res = minimize(negll, np.log([0.15, 0.01, 0.03]), method="Nelder-Mead",
                   options={"xatol": 1e-4, "fatol": 1e-8, "maxiter": 4000})
    G, A, beta, inv, _ = parts(res.x)
    Ainv = np.linalg.inv(A)
    means, covs = [], []
    for y, z, Si in zip(Y, Z, inv):
        u = G @ z.T @ Si @ (y - z @ beta)
        # Var(beta + u - truth): conditional variance of the random effects plus that of beta.
        C = G - G @ z.T @ Si @ z @ G
        M = np.eye(2) - G @ z.T @ Si @ z
        covs.append(C + M @ Ainv @ M.T)
        means.append(beta + u)
    sa, sb, se = np.exp(res.x)
    return beta, {"sigma_a": float(sa), "sigma_b": float(sb), "sigma_e": float(se),
                  "mu": float(beta[0]), "tau": float(beta[1])}, np.array(means), np.array(covs)


def fit_state_trends(series: pd.DataFrame, national: dict, last_year: int | None = None,
                     window: int = WINDOW, centre: int | None = None) -> StateTrends:
    """Fit :class:`StateTrends` to a state series relative to a national log level.

    Parameters
    ----------
    series : pandas.DataFrame
        ``state, year, deaths, births`` (single years).
    national : dict of int to float
        Year -> national log IMR (per 1,000) the states are measured against.
    last_year : int, optional
        The last year used (default: the series' last); the window ends there.
    window : int
        Years used (``last_year - window + 1`` .. ``last_year``).
    centre : int, optional
        Year the levels refer to (default ``last_year``).

    Returns
    -------
    StateTrends
    """
    last_year = int(series["year"].max()) if last_year is None else int(last_year)
    centre = last_year if centre is None else int(centre)
    d = series[(series["year"] <= last_year) & (series["deaths"] > 0) & (series["births"] > 0)]
    d = d[d["year"].isin(list(national))]
    # Each state's own last `window` years (a user may have given one state later years).
    d = d[d["year"] > d.groupby("state")["year"].transform("max") - window]
    Y, X, V, states = [], [], [], []
    for s, g in d.groupby("state", sort=True):
        if len(g) < 2:
            continue
        g = g.sort_values("year")
        nat = np.array([national[int(y)] for y in g["year"]])
        Y.append(np.log(1000.0 * g["deaths"].to_numpy(float) / g["births"].to_numpy(float)) - nat)
        X.append(g["year"].to_numpy(float) - centre)
        V.append(1.0 / g["deaths"].to_numpy(float))
        states.append(s)
    if len(states) < 5:
        raise ValueError(f"state trends need 5 or more states with 2+ years, got {len(states)}")
    _, sig, means, covs = _reml(Y, X, V)
    return StateTrends(states, means[:, 0], means[:, 1], covs, centre,
                       (int(d["year"].min()), int(d["year"].max())), sig)


# =============================================================================================
# Race trends relative to all races (national blocks)
# =============================================================================================

@dataclass
class RaceTrends:
    """Slopes of each race's log IMR relative to all races (per year), partially pooled.

    Attributes
    ----------
    slope, sd : numpy.ndarray
        float ``[R]``: posterior mean and sd (``RACES`` order).
    raw, raw_sd : numpy.ndarray
        float ``[R]``: the unpooled weighted least-squares slopes and their sd.
    sigma_d : float
        Between-race sd of the slopes (posterior root mean square).
    blocks : list of str
        The periods used.
    """

    slope: np.ndarray
    sd: np.ndarray
    raw: np.ndarray
    raw_sd: np.ndarray
    sigma_d: float
    blocks: list


#: First block year of the race slopes: from 2018 deaths and births are both coded in single race;
#: the 2011-2017 block is bridged race, and the change of coding (multiracial infants a separate,
#: dropped group) is a step, not a trend (NH white relative to all races: -1.4%/year with it,
#: -0.7%/year without).
RACE_SLOPE_FROM = 2018


def fit_race_trends(blocks: pd.DataFrame, first_year: float = RACE_SLOPE_FROM) -> RaceTrends:
    """Fit :class:`RaceTrends` to national race blocks (those from ``first_year``).

    Parameters
    ----------
    blocks : pandas.DataFrame
        ``period, year_mid, race, deaths, births, all_deaths, all_births, extra_sd``.
    first_year : float
        Blocks with ``year_mid`` below it are not used (:data:`RACE_SLOPE_FROM`).

    Returns
    -------
    RaceTrends
    """
    blocks = blocks[blocks["year_mid"] >= first_year]
    raw = np.zeros(N_R)
    raw_var = np.full(N_R, np.inf)
    for ri, r in enumerate(RACES):
        g = blocks[blocks["race"] == r]
        if len(g) < 2:
            continue
        x = g["year_mid"].to_numpy(float)
        y = (np.log(g["deaths"] / g["births"]) - np.log(g["all_deaths"] / g["all_births"])).to_numpy(float)
        v = (1 / g["deaths"] + 1 / g["all_deaths"] + g["extra_sd"] ** 2).to_numpy(float)
        w = 1 / v
        xm = np.sum(w * x) / w.sum()
        sxx = np.sum(w * (x - xm) ** 2)
        raw[ri] = np.sum(w * (x - xm) * y) / sxx
        # Inflate by the residual dispersion when it exceeds the Poisson variance.
        resid = y - (np.sum(w * y) / w.sum() + raw[ri] * (x - xm))
        phi = max(1.0, float(np.sum(w * resid**2) / max(len(g) - 2, 1)))
        raw_var[ri] = phi / sxx
    ok = np.isfinite(raw_var)
    # Normal-normal hierarchical model around 0 (the all-race trend), d_r ~ N(0, sigma_d^2),
    # with a uniform prior on sigma_d over [0, 0.05]/year (Gelman 2006 for few groups), integrated
    # on a grid: with five races an empirical-Bayes sigma_d of 0 would claim certainty.
    grid = np.linspace(0.0, 0.05, 501)
    s2g = grid[:, None] ** 2
    v = np.where(ok, raw_var, 1.0)[None, :]
    r = np.where(ok, raw, 0.0)[None, :]
    loglik = np.where(ok[None, :], -0.5 * (np.log(v + s2g) + r**2 / (v + s2g)), 0.0).sum(axis=1)
    w = np.exp(loglik - loglik.max())
    w /= w.sum()
    shrink = s2g / (s2g + v)                                   # [G, R]
    m1 = (w[:, None] * shrink * r).sum(axis=0)
    m2 = (w[:, None] * (shrink * v + (shrink * r) ** 2)).sum(axis=0)
    slope = np.where(ok, m1, 0.0)
    sd = np.where(ok, np.sqrt(np.maximum(m2 - m1**2, 0.0)),
                  float(np.sqrt((w * grid**2).sum())))
    s2 = float((w * grid**2).sum())
    return RaceTrends(slope, sd, raw, np.sqrt(raw_var), float(np.sqrt(s2)),
                      sorted(blocks["period"].unique().tolist()))


# =============================================================================================
# The model and its use
# =============================================================================================

@dataclass
class TrendModel:
    """National level, state trends and race trends (module docstring).

    Attributes
    ----------
    national : LocalLevel
    states : StateTrends
    races : RaceTrends
    ref_year : int
        The calibration's centre year (multipliers are 1 there before ``kappa``).
    seed : int
        Seed of the trend draws (stream ``trend``).
    data : pandas.DataFrame
        Every single-year row considered: ``source, state, year, status, reason``.
    """

    national: LocalLevel
    states: StateTrends
    races: RaceTrends
    ref_year: int = REF_YEAR
    seed: int = 20240601
    data: pd.DataFrame | None = None

    # -- draws ---------------------------------------------------------------------------
    def _components(self, years, draw):
        years = np.asarray(years, dtype=int)
        n_mean, n_var = self.national.level(years)
        # The calibration's level is the 2013-2015 period (centre ref_year): the national
        # reference is the mean rate of the period's years, not the centre year's.
        ref_years = np.arange(self.ref_year - 1, self.ref_year + 2)
        r_mean, r_var = self.national.level(ref_years)
        b_mean, b_sd = self.states.slope_array()
        d_mean, d_sd = self.races.slope, self.races.sd
        if draw is None:
            return n_mean - np.log(np.mean(np.exp(r_mean))), b_mean, d_mean
        rng = generator(self.seed, "trend", int(draw))
        z_ref = rng.standard_normal(len(ref_years))
        z_year = rng.standard_normal(len(years))
        z_last = rng.standard_normal()
        last = self.national.last_year
        horizon = int(max(0, years.max() - last))
        walk = np.concatenate([[0.0], np.cumsum(rng.standard_normal(max(horizon, 1)))])
        h = np.maximum(years - last, 0)
        # Inside the data: each year within its smoothed variance. Beyond: one draw of the last
        # filtered level (the common start) plus a random walk of the yearly innovations.
        future = (self.national.last_mean + np.sqrt(self.national.last_var) * z_last
                  + np.sqrt(self.national.q) * walk[np.minimum(h, horizon)])
        path = np.where(h > 0, future, n_mean + np.sqrt(n_var) * z_year)
        ref = np.log(np.mean(np.exp(r_mean + np.sqrt(r_var) * z_ref)))
        b = b_mean + b_sd * rng.standard_normal(N_S)
        d = d_mean + d_sd * rng.standard_normal(N_R)
        return path - ref, b, d

    def log_multiplier(self, years, draw: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the national log change since 2013-2015 ``[Y]`` and the relative log
        multipliers ``(b_s + d_r)(t - ref_year)`` ``[Y, S, R]`` of ``years`` (draw or point)."""
        years = np.asarray(years, dtype=int)
        nat, b, d = self._components(years, draw)
        t = (years - self.ref_year).astype(float)[:, None, None]
        return nat, t * (b[None, :, None] + d[None, None, :])

    def multipliers(self, years, births, lam0, births_ref, draw: int | None = None) -> np.ndarray:
        """Return the cell multipliers ``[Y, S, R]`` of ``lambda0`` for ``years``.

        Parameters
        ----------
        years : array_like of int
        births : numpy.ndarray
            float ``[Y, S, R]``: births of each year (all states; observed or projected).
        lam0 : numpy.ndarray
            float ``[S, R]``: the calibrated 2013-2015 IMR of the draw (or point).
        births_ref : numpy.ndarray
            float ``[S, R]``: the births the calibration pooled (2013-2015).
        draw : int or None

        Returns
        -------
        numpy.ndarray
            ``kappa_t exp((b_s + d_r)(t - ref))``: the national IMR of year ``t`` equals
            ``L0 N(t) / Nbar`` with ``L0`` the 2013-2015 national IMR of ``lam0`` and ``Nbar``
            the mean national level of 2013-2015.
        """
        nat, rel = self.log_multiplier(years, draw)
        births = np.asarray(births, float)
        w0 = np.asarray(births_ref, float)
        l0 = float(np.sum(w0 * lam0) / w0.sum())
        f = np.exp(rel)
        modelled = np.sum(births * lam0[None] * f, axis=(1, 2)) / births.sum(axis=(1, 2))
        kappa = l0 * np.exp(nat) / modelled
        return kappa[:, None, None] * f

    @property
    def digest(self) -> str:
        """A hash of the model's content (for the calibration's content hash); computed once
        per object (the model is not changed after fitting or loading)."""
        d = self.__dict__.get("_digest")
        if d is None:
            import hashlib
            import json

            blob = json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")
            d = self.__dict__["_digest"] = hashlib.blake2b(blob, digest_size=16).hexdigest()
        return d

    # -- storage -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict (read back by :meth:`from_dict`)."""
        n, s, r = self.national, self.states, self.races
        return {
            "ref_year": self.ref_year, "seed": self.seed,
            "national": {"years": n.years.tolist(), "y": n.y.tolist(), "v": n.v.tolist(),
                         "q": n.q, "mean": n.mean.tolist(), "var": n.var.tolist(),
                         "last_mean": n.last_mean, "last_var": n.last_var},
            "states": {"states": list(s.states), "level": s.level.tolist(),
                       "slope": s.slope.tolist(), "cov": s.cov.tolist(), "centre": s.centre,
                       "years": list(s.years), "sigma": s.sigma},
            "races": {"slope": r.slope.tolist(), "sd": r.sd.tolist(), "raw": r.raw.tolist(),
                      "raw_sd": [float(x) if np.isfinite(x) else None for x in r.raw_sd],
                      "sigma_d": r.sigma_d, "blocks": r.blocks},
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrendModel:
        """Rebuild a model written by :meth:`to_dict`."""
        n, s, r = d["national"], d["states"], d["races"]
        a = np.asarray
        nat = LocalLevel(a(n["years"], dtype=int), a(n["y"]), a(n["v"]), float(n["q"]),
                         a(n["mean"]), a(n["var"]), float(n["last_mean"]), float(n["last_var"]))
        st = StateTrends(list(s["states"]), a(s["level"]), a(s["slope"]), a(s["cov"]),
                         int(s["centre"]), tuple(s["years"]), dict(s["sigma"]))
        rt = RaceTrends(a(r["slope"]), a(r["sd"]), a(r["raw"]),
                        a([np.inf if x is None else x for x in r["raw_sd"]], dtype=float),
                        float(r["sigma_d"]), list(r["blocks"]))
        return cls(nat, st, rt, int(d.get("ref_year", REF_YEAR)), int(d.get("seed", 0)))

    def summary(self) -> dict:
        """Headline figures of the fit (for ``calibration.json`` and the console)."""
        b, bsd = self.states.slope_array()
        return {
            "national_years": f"{self.national.years[0]}-{self.national.last_year}",
            "national_level_sd_per_year": round(float(np.sqrt(self.national.q)), 5),
            "national_imr_last": round(float(np.exp(self.national.last_mean)), 4),
            "state_years": f"{self.states.years[0]}-{self.states.years[1]}",
            "state_slope_sd": round(float(self.states.sigma.get("sigma_b", 0.0)), 5),
            "race_slopes": {r: round(float(x), 5) for r, x in zip(RACES, self.races.slope)},
        }


# =============================================================================================
# Data: packaged national series and race blocks (derived from ../shared by maintainers)
# =============================================================================================

def _read_packaged(name: str) -> pd.DataFrame:
    f = resources.files("imsim.inputs.data").joinpath(name)
    with f.open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def national_series() -> pd.DataFrame:
    """The packaged annual national series (:data:`NATIONAL_FILE`)."""
    return _read_packaged(NATIONAL_FILE)


def race_blocks() -> pd.DataFrame:
    """The packaged national race blocks (:data:`RACE_FILE`)."""
    return _read_packaged(RACE_FILE)


def national_with(user: pd.DataFrame | None) -> pd.DataFrame:
    """The packaged national series with a user's national single years replacing or adding
    years (``user``: ``year, deaths, births``; None or empty: the packaged series)."""
    n = national_series()
    if user is None or not len(user):
        return n
    u = user[["year", "deaths", "births"]].copy()
    u["year"] = u["year"].astype(int)
    u["extra_sd"] = 0.0
    u["source"] = "user targets"
    n = pd.concat([n[~n["year"].isin(u["year"])], u], ignore_index=True).sort_values("year")
    years = n["year"].to_numpy(int)
    if np.any(np.diff(years) != 1):
        missing = sorted(set(range(years[0], years[-1] + 1)) - set(years))
        raise ValueError(f"the national series would have gaps in {missing}: give the national "
                         "rows of those years too")
    return n.reset_index(drop=True)


def fit_trend_model(series: pd.DataFrame, national: pd.DataFrame | None = None,
                    blocks: pd.DataFrame | None = None, seed: int = 20240601,
                    window: int = WINDOW) -> TrendModel:
    """Fit the trend model: national level, state trends (last ``window`` years of ``series``)
    and race trends.

    Parameters
    ----------
    series : pandas.DataFrame
        The single-year state series (``state, year, deaths, births``).
    national : pandas.DataFrame, optional
        ``year, deaths, births, extra_sd`` (default: :func:`national_series`).
    blocks : pandas.DataFrame, optional
        Race blocks (default: :func:`race_blocks`).
    seed : int
        Seed of the trend draws.
    window : int
        State-series years used.

    Returns
    -------
    TrendModel
    """
    national = national_series() if national is None else national
    blocks = race_blocks() if blocks is None else blocks
    national = national.sort_values("year")
    nat = fit_local_level(national["year"], national["deaths"], national["births"],
                          national.get("extra_sd"))
    # States are measured against the national series (a user's later state years need its
    # year); a constant difference of sources (mortality vs linked file) is the fixed effect
    # ``mu``, a common slope ``tau``: both are absorbed by kappa_t in runs.
    nat_log = {int(y): float(m) for y, m in zip(nat.years, nat.y)}
    st = fit_state_trends(series, nat_log, window=window, centre=REF_YEAR)
    rt = fit_race_trends(blocks)
    return TrendModel(nat, st, rt, REF_YEAR, int(seed))


def forecast_states(series: pd.DataFrame, origin: int, years, window: int = WINDOW) -> pd.DataFrame:
    """Forecast every state's all-race IMR in ``years`` from the series up to ``origin``.

    The model refitted at the origin: a local-level national model on the summed states through
    ``origin`` and state trends over the ``window`` years ending there. The 95% interval combines
    the national level's forecast variance, the state level and slope posterior, the state-year
    noise ``sigma_e`` and the Poisson noise of the year's deaths (normal approximation).

    Returns
    -------
    pandas.DataFrame
        ``state, year, predicted, predicted_lo, predicted_hi`` (plus ``ALL`` rows).
    """
    past = series[series["year"] <= origin]
    g = past.groupby("year")[["deaths", "births"]].sum()
    nat = fit_local_level(g.index.to_numpy(int), g["deaths"], g["births"])
    nat_log = {int(y): float(np.log(1000.0 * r.deaths / r.births)) for y, r in g.iterrows()}
    st = fit_state_trends(past, nat_log, last_year=origin, window=window, centre=origin)
    births = series.set_index(["state", "year"])["births"]
    rows = []
    for y in years:
        h = int(y) - origin
        n_mean, n_var = nat.level(np.array([int(y)]))
        tot_d, tot_b = 0.0, 0.0
        for i, s in enumerate(st.states):
            zv = np.array([1.0, float(h)])
            mean = n_mean[0] + st.level[i] + st.slope[i] * h
            var_log = n_var[0] + float(zv @ st.cov[i] @ zv) + st.sigma["sigma_e"] ** 2
            rate = float(np.exp(mean + var_log / 2))
            b = float(births.get((s, int(y)), np.nan))
            var_rate = rate**2 * (np.exp(var_log) - 1) + (1000.0 * rate / b if b == b else 0.0)
            sd = np.sqrt(var_rate)
            rows.append({"state": s, "year": int(y), "predicted": rate,
                         "predicted_lo": max(rate - Z95 * sd, 0.0),
                         "predicted_hi": rate + Z95 * sd})
            if b == b:
                tot_d += rate * b / 1000.0
                tot_b += b
        if tot_b > 0:
            rate = 1000.0 * tot_d / tot_b
            var_log = n_var[0]
            sd = np.sqrt(rate**2 * (np.exp(var_log) - 1) + 1000.0 * rate / tot_b)
            rows.append({"state": ALL, "year": int(y), "predicted": rate,
                         "predicted_lo": rate - Z95 * sd, "predicted_hi": rate + Z95 * sd})
    return pd.DataFrame(rows)


def derive_tables(shared_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Derive :data:`NATIONAL_FILE`, :data:`RACE_FILE` and :data:`REGION_FILE` from the shared
    WONDER exports.

    National deaths: the Multiple Cause of Death files (``mchtrends__infant_mortality_yearly_00_17``
    for 2007-2017, ``..._18_22`` for 2018-2022, ``..._race_first_half_23`` for January-June 2023,
    all by year of death); births: the packaged births (``births.csv``: 2013-2023) and, for
    2007-2012, the births of the packaged state series (WONDER linked-file exports). Race blocks:
    deaths by the infant's race and Hispanic origin (``mchtrends__infant_mortality_race_*``) over
    births by the mother's race (``mchtrends__natality_race_11_15`` + ``births.csv``).
    """
    from imsim.inputs.data import load_table
    from imsim.inputs.wonder import parse_wonder

    ext = Path(shared_dir, "external")
    src = "CDC WONDER export, shared external/{} (GitHub mchtrends)"
    b = load_table("births")
    births_year = b.groupby("year")["births"].sum()
    births_race = b.groupby(["year", "race"])["births"].sum()
    from imsim.calibration.series import packaged_series

    old = packaged_series().groupby("year")["births"].sum()
    rows = []
    for fname in ("mchtrends__infant_mortality_yearly_00_17.txt",
                  "mchtrends__infant_mortality_yearly_18_22.txt"):
        t = parse_wonder(ext / fname)
        for r in t.data.itertuples():
            y = int(str(r.Year)[:4])
            if y < 2007:
                continue
            bb = births_year.get(y, old.get(y, np.nan))
            prov = "provisional" in str(r.Year)
            rows.append({"year": y, "deaths": float(r.Deaths), "births": float(bb),
                         "extra_sd": PROVISIONAL_SD if prov else 0.0,
                         "source": src.format(fname) + (" (provisional)" if prov else "")})
    fname = "mchtrends__infant_mortality_race_first_half_23.txt"
    t = parse_wonder(ext / fname)
    d23 = float(t.data["Deaths"].sum())
    rows.append({"year": 2023, "deaths": d23, "births": H1_BIRTH_SHARE * float(births_year[2023]),
                 "extra_sd": PROVISIONAL_SD,
                 "source": src.format(fname) + " (January-June, provisional; births = "
                 f"{H1_BIRTH_SHARE} x 2023 births, ASSUMPTION)"})
    national = pd.DataFrame(rows).sort_values("year").reset_index(drop=True)

    def race_of(race_label, hisp_label):
        h = str(hisp_label).lower()
        if "not stated" in h or "unknown" in h:
            return None
        if h.startswith("hispanic"):
            return "hispanic"
        s = str(race_label).lower()
        for k, r in (("white", "nh_white"), ("black", "nh_black"), ("indian", "nh_aian"),
                     ("asian", "nh_api"), ("pacific", "nh_api")):
            if k in s:
                return r
        return None                                           # more than one race

    nb = parse_wonder(ext / "mchtrends__natality_race_11_15.txt").data
    nat_b = {}
    for r in nb.to_dict("records"):
        k = race_of(r["Mother's Bridged Race"], r["Mother's Hispanic Origin"])
        if k:
            nat_b[k] = nat_b.get(k, 0.0) + float(r["Births"])
    blocks = [("2011-2017", 2014.0, "mchtrends__infant_mortality_race_11_17.txt", None),
              ("2018-2019", 2018.5, "mchtrends__infant_mortality_race_18_19.txt", (2018, 2019)),
              ("2020-2022", 2021.0, "mchtrends__infant_mortality_race_20_22.txt", (2020, 2022)),
              ("2023H1", 2023.25, "mchtrends__infant_mortality_race_first_half_23.txt", (2023, 2023))]
    out = []
    for period, mid, fname, yrs in blocks:
        t = parse_wonder(ext / fname)
        race_col = next(c for c in t.group_by if "Race" in c)
        deaths = {}
        total = 0.0
        for r in t.data.to_dict("records"):
            total += float(r["Deaths"])
            k = race_of(r[race_col], r["Hispanic Origin"])
            if k:
                deaths[k] = deaths.get(k, 0.0) + float(r["Deaths"])
        if yrs is None:
            bsum = {k: nat_b[k] + sum(births_race.get((y, k), 0.0) for y in (2016, 2017))
                    for k in RACES}
            ball = sum(bsum.values())
            share = 1.0
        else:
            share = H1_BIRTH_SHARE if period.endswith("H1") else 1.0
            bsum = {k: share * sum(births_race.get((y, k), 0.0) for y in range(yrs[0], yrs[1] + 1))
                    for k in RACES}
            ball = share * sum(births_year[y] for y in range(yrs[0], yrs[1] + 1))
        for k in RACES:
            out.append({"period": period, "year_mid": mid, "race": k, "deaths": deaths.get(k, 0.0),
                        "births": bsum[k], "all_deaths": total, "all_births": ball,
                        "extra_sd": PROVISIONAL_SD if period in ("2020-2022", "2023H1") else 0.0,
                        "source": src.format(fname) + "; deaths by infant's race, births by "
                        "mother's race (births.csv"
                        + (" and natality_race_11_15" if yrs is None else "") + ")"})
    regions = []
    for period, fname, yrs in (("2011-2017", "mchtrends__infant_mortality_census_11_17.txt", (2011, 2017)),
                               ("2018-2019", "mchtrends__infant_mortality_census_18_19.txt", (2018, 2019)),
                               ("2020-2022", "mchtrends__infant_mortality_census_20_22.txt", (2020, 2022))):
        t = parse_wonder(ext / fname)
        col = next(c for c in t.group_by if "Census Region" in c)
        for r in t.data.to_dict("records"):
            region = str(r[col]).split(":")[-1].strip()
            states = [s_ for s_, g in CENSUS_REGIONS.items() if g == region]
            births_r = 0.0
            for y in range(yrs[0], yrs[1] + 1):
                if y in births_year.index:
                    births_r += float(b[(b["year"] == y) & b["state"].isin(states)]["births"].sum())
                else:                                  # 2011-2012: the state series' births
                    old_y = packaged_series()
                    births_r += float(old_y[(old_y["year"] == y)
                                            & old_y["state"].isin(states)]["births"].sum())
            regions.append({"period": period, "year_first": yrs[0], "year_last": yrs[1],
                            "region": region, "deaths": float(r["Deaths"]), "births": births_r,
                            "source": src.format(fname) + "; deaths by census region of "
                            "residence, births by state (births.csv, state_imr_series.csv)"})
    return national, pd.DataFrame(out), pd.DataFrame(regions)


#: U.S. Census Bureau regions (the grouping of the CDC WONDER census-region exports).
CENSUS_REGIONS = {
    **{s: "Northeast" for s in ("CT", "ME", "MA", "NH", "RI", "VT", "NJ", "NY", "PA")},
    **{s: "Midwest" for s in ("IL", "IN", "MI", "OH", "WI", "IA", "KS", "MN", "MO", "NE", "ND",
                              "SD")},
    **{s: "South" for s in ("DE", "DC", "FL", "GA", "MD", "NC", "SC", "VA", "WV", "AL", "KY", "MS",
                            "TN", "AR", "LA", "OK", "TX")},
    **{s: "West" for s in ("AZ", "CO", "ID", "MT", "NV", "NM", "UT", "WY", "AK", "CA", "HI", "OR",
                           "WA")},
}
#: Packaged census-region blocks (``period, year_first, year_last, region, deaths, births,
#: source``): the out-of-sample check of the state trends after 2017.
REGION_FILE = "region_imr_blocks.csv"


def region_check(model: TrendModel, births: pd.DataFrame, blocks: pd.DataFrame | None = None) -> dict:
    """Check the state trends after their data end: census regions 2018-2019 and 2020-2022.

    The state series end in 2017; the regions' infant deaths (CDC WONDER, by residence) run
    through 2022. Each region's IMR *relative to the nation* in a block is compared with (a) the
    trend model's -- births-weighted state levels and slopes of the region over those of all
    states, the national level cancelling -- and (b) carry-forward of the region's 2011-2017
    ratio. Errors are in percent of the ratio.

    Parameters
    ----------
    model : TrendModel
    births : pandas.DataFrame
        ``state, year, births`` (the packaged births.csv rows).
    blocks : pandas.DataFrame, optional
        Default: the packaged :data:`REGION_FILE`.

    Returns
    -------
    dict
        ``blocks`` -> period -> region -> observed, model, carry_forward ratios and errors; and
        ``mae_model_pct``, ``mae_carry_pct``, ``n``.
    """
    blocks = _read_packaged(REGION_FILE) if blocks is None else blocks
    st = model.states
    pos = {s: i for i, s in enumerate(st.states)}
    b = births.groupby(["state", "year"])["births"].sum()
    base = blocks[blocks["period"] == "2011-2017"].set_index("region")
    base_ratio = (base["deaths"] / base["births"]) / (base["deaths"].sum() / base["births"].sum())
    out, e_m, e_c = {}, [], []
    for period, g in blocks[blocks["period"] != "2011-2017"].groupby("period"):
        g = g.set_index("region")
        obs = (g["deaths"] / g["births"]) / (g["deaths"].sum() / g["births"].sum())
        y0, y1 = int(g["year_first"].iloc[0]), int(g["year_last"].iloc[0])
        num = {r: 0.0 for r in g.index}
        den = {r: 0.0 for r in g.index}
        tot_num = tot_den = 0.0
        for s, region in CENSUS_REGIONS.items():
            if s not in pos:
                continue
            i = pos[s]
            for y in range(y0, y1 + 1):
                bb = float(b.get((s, y), 0.0))
                rate = np.exp(st.level[i] + st.slope[i] * (y - st.centre))
                num[region] += bb * rate
                den[region] += bb
                tot_num += bb * rate
                tot_den += bb
        rows = {}
        for region in g.index:
            model_ratio = (num[region] / den[region]) / (tot_num / tot_den)
            em = 100 * (model_ratio / obs[region] - 1)
            ec = 100 * (base_ratio[region] / obs[region] - 1)
            e_m.append(abs(em))
            e_c.append(abs(ec))
            rows[region] = {"observed": round(float(obs[region]), 4),
                            "model": round(float(model_ratio), 4),
                            "carry_forward": round(float(base_ratio[region]), 4),
                            "model_error_pct": round(float(em), 2),
                            "carry_forward_error_pct": round(float(ec), 2)}
        out[period] = rows
    return {"what": "census-region IMR relative to the nation after the state series end "
                    "(2018-2022): the trend model's state levels and slopes vs carrying the "
                    "2011-2017 ratio forward",
            "blocks": out, "n": len(e_m), "mae_model_pct": round(float(np.mean(e_m)), 2),
            "mae_carry_pct": round(float(np.mean(e_c)), 2)}


def main(argv=None) -> int:
    """Write the packaged tables: ``python -m imsim.calibration.trend [SHARED_DATA_DIR]``."""
    from imsim.core.folders import atomic_file

    argv = sys.argv[1:] if argv is None else argv
    shared = Path(argv[0]) if argv else Path(__file__).parents[4] / "shared" / "data"
    national, blocks, regions = derive_tables(shared)
    for df, name in ((national, NATIONAL_FILE), (blocks, RACE_FILE), (regions, REGION_FILE)):
        dst = Path(__file__).parents[1] / "inputs" / "data" / name
        with atomic_file(dst) as tmp:
            df.to_csv(tmp, index=False, float_format="%.8g")
        print(f"wrote {dst} ({len(df)} rows)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
