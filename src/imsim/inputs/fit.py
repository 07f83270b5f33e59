"""Baseline fit: per-cell multipliers that make the expected engine reproduce observed rates.

This is the direct fit of the Engine issue: for every state x race cell with an observed
2013-2015 IMR, one death multiplier (applied to all causes) is solved so that the expected IMR
equals the observation; cells without an observation share one multiplier per race, solved so
that the national IMR of the race equals its published value. Gestational age follows the
national distribution shifted per race to the race's preterm rate.

With ``targets`` (a :class:`imsim.calibration.targets.CalibratedTargets`), every cell gets the calibrated
IMR (the point or posterior draw ``draw``), each race's deaths are split by cause as calibrated
(one multiplier per cause x race, raked jointly with the cell multipliers) and gestational age
takes the calibrated shift. The cut-point solve does not depend on the multipliers, so it runs
once; the multipliers are solved on a linear approximation of deaths in the multipliers and
corrected with a few exact engine evaluations.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from imsim.inputs.baseline import BASELINE_EFFECTS, N_R, N_S, R_INDEX, S_INDEX, Baseline
from imsim.inputs.data import load_table
from imsim.birth.engines import expected
from imsim.birth.kernels import N_BANDS, OUT_DEATHS, rake_multipliers
from imsim.birth.params import build_tables


#: Years the trend multipliers are tabulated for (earlier/later years take the ends).
TREND_YEARS = (2007, 2050)


@dataclass
class Fit:
    """Fitted baseline adjustments on the 51 x 5 (state x race) grid.

    Attributes
    ----------
    ga_shift : numpy.ndarray
        float64 ``[51, 5, 5]``: log-odds shift of each GA cut (28, 32, 34, 37, 39 weeks).
    m_cause : numpy.ndarray
        float64 ``[3, 51, 5]``: death-probability multipliers by cause (neonatal, SUID, other
        postneonatal).
    source : str
        ``"direct"`` or ``"calibration:<name>"``.
    draw : int or None
        Calibration posterior draw (None: the point).
    """

    ga_shift: np.ndarray        # [51, 5, 5] log-odds shift of each GA cut
    m_cause: np.ndarray         # [3, 51, 5] death multipliers (neonatal, SUID, other)
    source: str = "direct"      # "direct" (this module) or a calibration name
    draw: int | None = None     # calibration posterior draw (None: the point)
    # Year multipliers of every cause (the calibration's trend model): [Y, 51, 5] for years
    # year0 .. year0 + Y - 1 (earlier/later years take the first/last). None: rates do not
    # move with time (direct fit, or a calibration without a trend model).
    year_mult: np.ndarray | None = None
    year0: int = 0

    @property
    def content_key(self) -> str:
        """A hash of the fitted arrays (caches of parameters derived from a fit key on it)."""
        from imsim.core.digest import array_digest

        if self.year_mult is None:
            return array_digest(self.ga_shift, self.m_cause)
        # The year multipliers are set once by calibrated_fit and never changed (fits are
        # shared from the cache read-only): their digest is kept with them.
        ym = self.__dict__.get("_ym_digest")
        if ym is None or ym[0] is not self.year_mult:
            ym = (self.year_mult, array_digest(self.year_mult,
                                               np.array([self.year0], dtype=np.int64)))
            self.__dict__["_ym_digest"] = ym
        return array_digest(self.ga_shift, self.m_cause,
                            np.frombuffer(ym[1].encode(), dtype=np.uint8))

    def year_multiplier(self, year, s_idx, r_idx) -> np.ndarray | None:
        """Return the trend multiplier of cells (year, state, race), or None without a trend.

        Parameters
        ----------
        year, s_idx, r_idx : array_like of int
            Cell years and grid indices.

        Returns
        -------
        numpy.ndarray or None
            float ``[n]``.
        """
        if self.year_mult is None:
            return None
        yi = np.clip(np.asarray(year) - self.year0, 0, self.year_mult.shape[0] - 1)
        return self.year_mult[yi, np.asarray(s_idx), np.asarray(r_idx)]

    @classmethod
    def identity(cls) -> Fit:
        """Return the fit that changes nothing: zero GA shifts, multipliers 1."""
        return cls(np.zeros((N_S, N_R, 5)), np.ones((3, N_S, N_R)))


def imr_targets() -> tuple[np.ndarray, np.ndarray]:
    """Return the observed 2013-2015 IMR (per 1,000 live births) per cell and per race.

    Returns
    -------
    cell : numpy.ndarray
        float64 ``[51, 5]``: state x race IMR (NaN where not published).
    race : numpy.ndarray
        float64 ``[5]``: national IMR of each race (NaN where not published).
    """
    t = load_table("targets")
    t = t[(t["target"] == "imr") & (t["period"].astype(str) == "2013-2015")]
    cell = np.full((N_S, N_R), np.nan)
    race = np.full(N_R, np.nan)
    for row in t.itertuples():
        if pd.isna(row.value) or row.race not in R_INDEX:
            continue
        if row.state == "ALL":
            race[R_INDEX[row.race]] = row.value
        elif row.state in S_INDEX:
            cell[S_INDEX[row.state], R_INDEX[row.race]] = row.value
    return cell, race


def _deaths_by_cause(params) -> np.ndarray:
    counts = expected(build_tables(params))
    by_cause = counts[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].reshape(-1, 3, N_BANDS).sum(axis=2)
    return by_cause.T


def expected_deaths(baseline: Baseline, cells, effects, fit) -> np.ndarray:
    """Return the expected deaths by cause of ``cells`` under the baseline (expected engine).

    Parameters
    ----------
    baseline : Baseline
        The baseline.
    cells : Cells
        The ``n`` cells.
    effects : dict of str to float
        Effect values by id.
    fit : Fit or None
        The baseline fit (None: unfitted).

    Returns
    -------
    numpy.ndarray
        float64 ``[3, n]``: expected deaths (counts) by cause (neonatal, SUID, other
        postneonatal).
    """
    return _deaths_by_cause(baseline.params(cells, effects, fit))


def scaled(params, m):
    """Return a copy of ``params`` with reference death probabilities times multipliers ``m``.

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells (not modified).
    m : array_like of float
        Multipliers, ``[n]`` (every cause) or ``[3, n]`` (neonatal, SUID, other postneonatal).

    Returns
    -------
    CellParams
        The copy, with ``q_neo``, ``q_suid`` and ``q_oth`` scaled per cell.
    """
    m = np.broadcast_to(np.asarray(m, dtype=float), (3, params.n))
    p = params.copy()
    p.q_neo = params.q_neo * m[0][:, None]
    p.q_suid = params.q_suid * m[1][:, None]
    p.q_oth = params.q_oth * m[2][:, None]
    return p


def direct_fit(baseline: Baseline, effects: dict[str, float], targets=None, draw: int | None = None,
               *, iters: int = 40, tol: float = 1e-10) -> Fit:
    """Solve the per-cell death multipliers (see module docstring).

    Without ``targets``: observed cells hit their observed IMR, the others share one multiplier
    per race (kept within 1/3 to 3 times the median multiplier of the race's observed cells).
    With ``targets`` (:class:`imsim.calibration.targets.CalibratedTargets`):
    :func:`calibrated_fit` with posterior draw ``draw`` (``None``: the point).

    Parameters
    ----------
    baseline : Baseline
        The baseline.
    effects : dict of str to float
        Effect values by id (the :data:`~imsim.inputs.baseline.BASELINE_EFFECTS` matter).
    targets : CalibratedTargets, optional
        Calibrated targets to reproduce instead of the observed cells.
    draw : int or None
        Posterior draw of ``targets`` (None: the point).
    iters : int
        Maximum fixed-point iterations of the direct fit (not used with ``targets``).
    tol : float
        Stop when no multiplier changes by more than this relative amount (direct fit only).

    Returns
    -------
    Fit
        For the direct fit, ``m_cause`` is the same for the three causes and ``ga_shift`` is 0.
    """
    if targets is not None:
        return calibrated_fit(baseline, effects, targets, draw)
    cells = baseline.pooled_cells()
    s, r = cells.s_idx, cells.r_idx
    births = cells.births.astype(float)
    obs_cell, obs_race = imr_targets()
    observed = ~np.isnan(obs_cell[s, r]) & (births > 0)
    params0 = baseline.params(cells, effects, None)
    m = np.ones(cells.n)
    for _ in range(iters):
        deaths = _deaths_by_cause(scaled(params0, m)).sum(axis=0)
        imr = 1000.0 * deaths / np.maximum(births, 1.0)
        # Observed cells: scale to hit the observation.
        ratio = np.where(observed, obs_cell[s, r] / np.maximum(imr, 1e-12), 1.0)
        # Unobserved cells: one factor per race so the national race IMR matches.
        for ri in range(N_R):
            sel = r == ri
            unobs = sel & ~observed
            target = obs_race[ri] * births[sel].sum() / 1000.0
            d_unobs = deaths[unobs].sum()
            if np.isnan(target) or d_unobs <= 0:
                continue
            d_obs_next = (deaths * ratio)[sel & observed].sum()
            ratio[unobs] = max(target - d_obs_next, 0.0) / d_unobs
        m_new = m * ratio
        # Keep unobserved cells plausible when the race total cannot be met (estimated births):
        # within [1/3, 3] x the median multiplier of the race's observed cells.
        for ri in range(N_R):
            sel_obs = (r == ri) & observed
            if sel_obs.any():
                med = np.median(m_new[sel_obs])
                unobs = (r == ri) & ~observed
                m_new[unobs] = np.clip(m_new[unobs], med / 3.0, med * 3.0)
        ratio = m_new / m
        m = m_new
        if np.max(np.abs(ratio - 1.0)) < tol:
            break
    fit = Fit.identity()
    fit.m_cause[:, s, r] = m[None, :]
    return fit


def calibrated_fit(baseline: Baseline, effects: dict[str, float], targets, draw: int | None = None,
                   engine_iters: int = 3, rake_iters: int = 200, tol: float = 1e-9) -> Fit:
    """Return the multipliers that make the expected engine reproduce calibrated ``targets``.

    ``m_cause[c, s, r] = k[s, r] * f[c, r]``: the cell factor ``k`` hits the cell IMR
    (``targets.cell_imr(draw)``), the race x cause factor ``f`` the race's cause shares
    (``targets.cause_share``). Deaths are nearly linear in the multipliers (competing risks are
    rare), so ``k`` and ``f`` are raked on ``m * D`` with ``D`` the deaths per unit multiplier,
    and ``D`` is refreshed from the engine ``engine_iters`` times.

    Parameters
    ----------
    baseline : Baseline
        The baseline.
    effects : dict of str to float
        Effect values by id.
    targets : CalibratedTargets
        The calibration (cell IMR per 1,000, cause shares, GA shift).
    draw : int or None
        Posterior draw (None: the point).
    engine_iters : int
        Refreshes of ``D`` from the expected engine.
    rake_iters : int
        Maximum raking sweeps per refresh (:func:`imsim.birth.kernels.rake_multipliers`).
    tol : float
        Raking tolerance (relative change of ``f``).

    Returns
    -------
    Fit
        ``ga_shift`` from ``targets`` (the same on every cut), ``m_cause`` ``[3, 51, 5]``.
    """
    cells = baseline.pooled_cells()
    s, r = cells.s_idx, cells.r_idx
    births = cells.births.astype(float)
    ga_shift = targets.ga_shift_cuts()
    params0 = baseline.params(cells, effects, Fit(ga_shift, np.ones((3, N_S, N_R))))
    target = targets.cell_imr(draw)[s, r] * births / 1000.0           # deaths per cell
    onehot = np.zeros((N_R, cells.n))
    onehot[r, np.arange(cells.n)] = 1.0
    race_deaths = onehot @ target                                      # [R]
    race_cause = targets.cause_share.T * race_deaths[None, :]          # [3, R]
    m = np.ones((3, cells.n))
    D = _deaths_by_cause(params0)                                      # deaths at m = 1
    f = np.ones((3, N_R))
    k = np.ones(cells.n)
    r_idx = np.ascontiguousarray(r, dtype=np.int64)
    for it in range(engine_iters + 1):
        k = rake_multipliers(target, np.ascontiguousarray(D), r_idx, race_cause, f, rake_iters,
                             tol)
        m = k[None, :] * f[:, r]
        if it == engine_iters:
            break
        actual = _deaths_by_cause(scaled(params0, m))
        D = actual / m                                                 # effective per unit
    fit = Fit(ga_shift, np.ones((3, N_S, N_R)), source=f"calibration:{targets.name}", draw=draw)
    fit.m_cause[:, s, r] = m
    trend = getattr(targets, "trend", None)
    if trend is not None:
        years = np.arange(TREND_YEARS[0], TREND_YEARS[1] + 1)
        grid_births = baseline.births_stack(years)
        ref = births.reshape(N_S, N_R)
        fit.year_mult = trend.multipliers(years, grid_births, targets.cell_imr(draw), ref, draw)
        fit.year0 = int(years[0])
    return fit



class FitCache:
    """Baseline fits of one :class:`~imsim.inputs.baseline.Baseline`, keyed by content.

    The key is everything a fit depends on: the values of the effects that enter the baseline
    (:data:`~imsim.inputs.baseline.BASELINE_EFFECTS`), the calibration's content hash (or
    ``"direct"``) and the posterior draw. Nothing is keyed by object identity or by a path, so a
    recalibration or a new object can never be served an old fit. Least recently used entries
    are dropped beyond ``maxsize``.

    Parameters
    ----------
    baseline : Baseline
        The baseline the fits belong to.
    maxsize : int
        Most fits kept.
    """

    def __init__(self, baseline: Baseline, maxsize: int = 512):
        self.baseline = baseline
        self.maxsize = int(maxsize)
        self._fits: OrderedDict = OrderedDict()

    @staticmethod
    def key(effects, calibration, draw) -> tuple:
        """Return the cache key of a fit: baseline effect values, calibration hash, draw.

        Parameters
        ----------
        effects : mapping of str to float
            Effect values (only :data:`~imsim.inputs.baseline.BASELINE_EFFECTS` are read).
        calibration : CalibratedTargets or None
            The calibration (None: ``"direct"``).
        draw : int or None
            Posterior draw.

        Returns
        -------
        tuple
            ``(((id, value), ...), calibration hash or "direct", draw)``.
        """
        values = tuple((k, float(effects[k])) for k in BASELINE_EFFECTS if k in effects)
        cal = "direct" if calibration is None else calibration.content_hash
        return values, cal, None if draw is None else int(draw)

    def get(self, effects, calibration=None, draw: int | None = None) -> Fit:
        """Return the fit for ``effects``, ``calibration`` and posterior ``draw``, cached.

        Parameters
        ----------
        effects : mapping of str to float
            Effect values by id.
        calibration : CalibratedTargets, optional
            The calibration (None: the direct fit).
        draw : int or None
            Posterior draw, taken modulo the calibration's number of draws (None: the point).

        Returns
        -------
        Fit
            Shared with the cache: do not modify.
        """
        if calibration is not None and draw is not None:
            draw = int(draw) % int(calibration.imr_draws.shape[0])
        key = self.key(effects, calibration, draw)
        hit = self._fits.get(key)
        if hit is not None:
            self._fits.move_to_end(key)
            return hit
        fit = direct_fit(self.baseline, effects, targets=calibration, draw=draw)
        self._fits[key] = fit
        if len(self._fits) > self.maxsize:
            self._fits.popitem(last=False)
        return fit


def fit_for(baseline: Baseline, effects, calibration=None, draw: int | None = None) -> Fit:
    """Return the baseline fit for effect values and a calibration posterior draw (cached).

    Parameters
    ----------
    baseline : Baseline
        The baseline; it owns the cache (:class:`FitCache`).
    effects : mapping of str to float
        Effect values (only :data:`~imsim.inputs.baseline.BASELINE_EFFECTS` matter).
    calibration : CalibratedTargets or None
        The calibration to reproduce (None: the direct fit to observed cells).
    draw : int or None
        Posterior draw of the calibration (None: its point estimate).

    Returns
    -------
    Fit
        Shared with the cache: do not modify.
    """
    if getattr(baseline, "fits", None) is None:
        baseline.fits = FitCache(baseline)
    return baseline.fits.get(effects, calibration, draw)
