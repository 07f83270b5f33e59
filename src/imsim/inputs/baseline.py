"""The baseline: packaged data turned into model parameters for any set of cells.

``Baseline`` holds, per state x race, everything that does not depend on a scenario: births by
year, exposure prevalences and their correlation, the national gestational-age and cause-of-death
structure, and the fitted cell multipliers (:mod:`imsim.inputs.fit`). :meth:`Baseline.params` builds
:class:`imsim.birth.params.CellParams` for a list of years and states, given effect values from the
evidence library.

Births are data through the latest data year (2023) and projected after it by a per-state log-linear trend
(``births_trend.csv``); all rates stay at the 2013-2015 fit.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections import OrderedDict
from functools import lru_cache

import numpy as np
import pandas as pd

from imsim.core.constants import CAUSES, DATA_YEARS, GA_BANDS, RACES, STATES
from imsim.inputs.data import load_table
from imsim.birth.params import (
    COND_EXPOSURES,
    CellParams,
    apply_or,
    conditional_on_income,
    logit,
    unsafe_sleep_conditional,
)
from imsim.birth.strategies import SHORT_CERVIX_OR, CellAttributes, eligible_log_or

N_S = len(STATES)
N_R = len(RACES)
S_INDEX = {s: i for i, s in enumerate(STATES)}
R_INDEX = {r: i for i, r in enumerate(RACES)}
#: Effect ids that enter the baseline (and hence the fit); strategy efficacies do not.
BASELINE_EFFECTS = (
    "smoking_ga_lt32_or", "smoking_ga_lt34_or", "smoking_ga_lt37_or", "prior_preterm_ptb_or",
    "short_ipi_ptb_or", "low_income_ptb_or", "nonlevel3_neonatal_or", "unsafe_sleep_suid_or",
    "smoking_suid_rr", "unsafe_sleep_smoking_interaction", "low_income_postneonatal_rr",
    "elective_early_term_death_rr", "smoking_term_neonatal_rr",
) + SHORT_CERVIX_OR
#: Gestational age (weeks) of each cut-point: the upper edge of bands <28, <32, <34, <37, <39.
CUT_WEEKS = (28, 32, 34, 37, 39)


def cell_uid(year, s_idx, r_idx) -> np.ndarray:
    """Return the stable id of a cell: the same (year, state, race) always gets the same id.

    The id is ``year * 10000 + state index * 10 + race index``.

    Parameters
    ----------
    year : array_like of int
        Calendar years.
    s_idx : array_like of int
        State indices into :data:`imsim.core.constants.STATES` (0..50).
    r_idx : array_like of int
        Race indices into :data:`imsim.core.constants.RACES` (0..4).

    Returns
    -------
    numpy.ndarray
        uint64, the broadcast shape of the inputs.
    """
    return (np.asarray(year, dtype=np.uint64) * np.uint64(10000)
            + np.asarray(s_idx, dtype=np.uint64) * np.uint64(10)
            + np.asarray(r_idx, dtype=np.uint64))


@dataclass
class Cells:
    """An ordered list of ``n`` cells (year, state, race) with their births.

    Attributes
    ----------
    year : numpy.ndarray
        int64 ``[n]``: calendar year.
    s_idx : numpy.ndarray
        int64 ``[n]``: index into :data:`imsim.core.constants.STATES`.
    r_idx : numpy.ndarray
        int64 ``[n]``: index into :data:`imsim.core.constants.RACES`.
    births : numpy.ndarray
        int64 ``[n]``: live births.
    projected : numpy.ndarray or None
        bool ``[n]``: births projected (year after the latest data year), set by
        :meth:`Baseline.cells`; None where unknown.
    pooled : bool
        The cells are the 2013-2015 pooled period (:meth:`Baseline.pooled_cells`): they take
        the calibration's level, with no trend multiplier for their nominal year.
    """

    year: np.ndarray
    s_idx: np.ndarray
    r_idx: np.ndarray
    births: np.ndarray
    projected: np.ndarray | None = None
    pooled: bool = False

    @property
    def n(self) -> int:
        """Number of cells."""
        return int(self.year.shape[0])

    def frame(self) -> pd.DataFrame:
        """Return the cells as a table with columns ``year, state, race, births`` (codes)."""
        return pd.DataFrame({
            "year": self.year,
            "state": np.asarray(STATES)[self.s_idx],
            "race": np.asarray(RACES)[self.r_idx],
            "births": self.births,
        })


class Baseline:
    """Scenario-independent inputs on the 51 x 5 (state x race) grid (see module docstring).

    Reads the packaged tables once, on construction; use :func:`get_baseline` for the shared
    instance.

    Attributes
    ----------
    births : dict of int to numpy.ndarray
        Data year -> int64 ``[51, 5]`` live births.
    prevalence : dict of str to numpy.ndarray
        Exposure -> float64 ``[51, 5]`` marginal prevalence (probability); ``prior_preterm``
        includes short cervix (progesterone-eligible births).
    short_cervix_share : numpy.ndarray
        float64 ``[51, 5]``: share of progesterone-eligible births eligible through a short
        cervix.
    p_l3 : numpy.ndarray
        float64 ``[51, 5]``: P(level III+ delivery | GA < 32 weeks).
    ga_cum_target : numpy.ndarray
        float64 ``[5 races, 5 cuts]``: target P(GA < cut) per race.
    q_race : numpy.ndarray
        float64 ``[3 causes, 5 races, 6 GA bands]``: death probabilities by cause and band.
    associations : dict of (str, str) to float
        Odds ratios between exposures (``associations.csv``).
    fits : FitCache or None
        Baseline fits of this object (set by :func:`imsim.inputs.fit.fit_for`).
    """

    def __init__(self):
        self.births = _births_grid()                      # {year: int64[51, 5]}
        self.births_slope, self.births_slope_se = _births_trend()  # float[51] each: log births / year
        self.prevalence = _prevalence_grid()              # {exposure: float[51, 5]}
        # Progesterone-eligible = prior spontaneous preterm birth or short cervix (overlap
        # ignored); the short-cervix share decides who vaginal progesterone can reach.
        sc = self.prevalence.pop("short_cervix")
        pp = self.prevalence["prior_preterm"]
        self.prevalence["prior_preterm"] = np.clip(pp + sc, 0.0, 1.0)
        self.short_cervix_share = np.where(pp + sc > 0, sc / np.maximum(pp + sc, 1e-12), 0.0)
        self.p_l3 = self.prevalence.pop("level3_vlbw")  # float[51, 5]
        self.ga_cum_target = _ga_targets()                # float[5 races, 5 cuts]
        self.ga_cum_national = _ga_national()             # float[5 cuts], all races
        self.q_race = _death_rates_by_race(self.ga_cum_target)  # [3 causes, 5 races, 6 bands]
        self.associations = _associations()
        # First calendar year in which each state's ACA Medicaid expansion was in force
        # (NOT_EXPANDED where not adopted as of states.csv's source date).
        self.expansion_year = _expansion_years()          # int64[51]
        self._grid_cache: OrderedDict = OrderedDict()   # grid parameters by content
        self.fits = None          # FitCache of this baseline (made by imsim.inputs.fit.fit_for)

    # -- births -----------------------------------------------------------------------------
    def births_projection(self, year, s_idx, z: float = 0.0) -> np.ndarray:
        """Return projected births (float) of ``year`` after the latest data year, per race.

        births(s, r, y) = births(s, r, 2023) x exp((slope_s + z se_s)(y - 2023)), slope_s the OLS
        slope of log state births 2014-2023 (``births_trend.csv``).

        Parameters
        ----------
        year : int
            Calendar year (years up to 2023 return the 2023 births).
        s_idx : array_like of int
            State indices into :data:`imsim.core.constants.STATES`.
        z : float, optional
            Slope shift in standard errors (``+-1.96``: the 95% band of the trend slope).

        Returns
        -------
        numpy.ndarray
            float64 ``[len(s_idx), 5]``.
        """
        latest = max(DATA_YEARS)
        s_idx = np.asarray(s_idx)
        h = max(int(year) - latest, 0)
        f = np.exp((self.births_slope[s_idx] + z * self.births_slope_se[s_idx]) * h)
        return self.births[latest][s_idx] * f[:, None]

    def births_factor(self, cells: Cells, seed: int, draw: int | None) -> np.ndarray:
        """Return the uncertainty factor of each cell's projected births for draw ``draw``.

        Projected births carry the standard error of their state's trend slope
        (``births_trend.csv``): in uncertainty draw ``d >= 1`` the births of a projected cell
        are ``births x exp(z_s se_s h)``, ``h`` years after the latest data year, ``z_s`` a
        standard normal per state (stream ``births_projection``, index ``d``). Draw 0 (the point)
        and every observed year give 1. Expected counts are proportional to births, so the
        engines' counts are scaled by this factor.

        Parameters
        ----------
        cells : Cells
            The cells (their ``projected`` flag decides; None: nothing projected).
        seed : int
            The run's seed.
        draw : int or None
            Uncertainty draw (0 or None: the point).

        Returns
        -------
        numpy.ndarray
            float ``[n]``.
        """
        ones = np.ones(cells.n)
        if not draw or cells.projected is None or not np.any(cells.projected):
            return ones
        from imsim.core.streams import generator

        z = generator(int(seed), "births_projection", int(draw)).standard_normal(N_S)
        h = np.maximum(cells.year - max(DATA_YEARS), 0)
        se = self.births_slope_se[cells.s_idx]
        return np.where(cells.projected, np.exp(z[cells.s_idx] * se * h), 1.0)

    def births_stack(self, years) -> np.ndarray:
        """Births of every state x race in each of ``years`` (float ``[Y, 51, 5]``; cached)."""
        key = tuple(int(y) for y in years)
        memo = self.__dict__.setdefault("_births_stack", {})
        if key not in memo:
            memo[key] = np.stack([self.births_grid(y) for y in key])
        return memo[key]

    def births_grid(self, year: int) -> np.ndarray:
        """Return the births of every state x race in ``year`` (float ``[51, 5]``): the data
        year's, the first data year's before it, the projection (:meth:`births_projection`)
        after the latest."""
        latest, first = max(DATA_YEARS), min(DATA_YEARS)
        if int(year) > latest:
            return self.births_projection(int(year), np.arange(N_S))
        return self.births[max(int(year), first)].astype(float)

    def cells(self, years, states=None, project: bool = True) -> Cells:
        """Return the cells of the given years and states, every race, in year-state-race order.

        Years through the latest data year (2023) take that year's births (``births.csv``);
        later years the projection of :meth:`births_projection` rounded per cell (``project``),
        or the latest data year's births held (``project=False``, used with a scenario's
        ``births_change_per_year``, which :func:`imsim.analysis.runner.resolve_inputs` applies).

        Parameters
        ----------
        years : iterable of int
            Calendar years, each at least the first data year (2013).
        states : iterable of str, optional
            USPS codes (default: all 51 jurisdictions, in ``STATES`` order).

        Returns
        -------
        Cells
            ``len(years) * len(states) * 5`` cells.
        """
        s_list = [S_INDEX[s] for s in (states or STATES)]
        latest = max(DATA_YEARS)
        ys, ss, rs, bs, ps = [], [], [], [], []
        for y in years:
            ahead = project and int(y) > latest
            grid = (np.round(self.births_projection(int(y), np.arange(N_S))).astype(np.int64) if ahead
                    else self.births[min(int(y), latest)])
            for s in s_list:
                for r in range(N_R):
                    ys.append(int(y))
                    ss.append(s)
                    rs.append(r)
                    bs.append(int(grid[s, r]))
                    ps.append(ahead)
        return Cells(np.array(ys, dtype=np.int64), np.array(ss, dtype=np.int64),
                     np.array(rs, dtype=np.int64), np.array(bs, dtype=np.int64),
                     np.array(ps, dtype=bool))

    def pooled_cells(self, years=(2013, 2014, 2015)) -> Cells:
        """Return one cell per state x race with births summed over ``years`` (for fitting).

        Parameters
        ----------
        years : sequence of int
            Data years to pool; the cells carry the first as their year.

        Returns
        -------
        Cells
            255 cells in state-major order (cell ``s * 5 + r``).
        """
        total = sum(self.births[int(y)] for y in years)
        s_idx, r_idx = np.meshgrid(np.arange(N_S), np.arange(N_R), indexing="ij")
        s_idx = s_idx.ravel()
        r_idx = r_idx.ravel()
        return Cells(np.full(s_idx.shape, int(years[0])), s_idx, r_idx,
                     total.ravel().astype(np.int64), pooled=True)

    # -- eligibility attributes -------------------------------------------------------------
    def medicaid_expanded(self, year, s_idx) -> np.ndarray:
        """Whether the state had already expanded Medicaid in ``year`` (bool, broadcast shape).

        Rule: a state counts as expanded in every calendar year from the year its expansion
        coverage took effect (``states.csv`` ``expansion_effective_date``), including that year
        even when the date is mid-year (e.g. LA, 2016-07-01: expanded from 2016). The model's
        cells are whole years, and a year in which expansion was already in force, even for
        part of it, is not one in which a scenario can still choose it.

        Parameters
        ----------
        year : array_like of int
            Calendar years.
        s_idx : array_like of int
            State indices into :data:`imsim.core.constants.STATES`.

        Returns
        -------
        numpy.ndarray
            bool, the broadcast shape of ``year`` and ``s_idx``.
        """
        return self.expansion_year[np.asarray(s_idx)] <= np.asarray(year)

    def cell_attributes(self, cells: Cells) -> CellAttributes:
        """Eligibility attributes of ``cells`` for the strategies (the one builder of them).

        Parameters
        ----------
        cells : Cells
            ``n`` cells (year, state, race).

        Returns
        -------
        CellAttributes
            Short-cervix share of progesterone-eligible births (by state x race), whether the
            state had already expanded Medicaid in the cell's year (:meth:`medicaid_expanded`)
            and the race index.
        """
        return CellAttributes(
            short_cervix_share=self.short_cervix_share[cells.s_idx, cells.r_idx],
            medicaid_expanded=self.medicaid_expanded(cells.year, cells.s_idx),
            race=np.asarray(cells.r_idx, dtype=np.int64).copy())

    # -- parameters -------------------------------------------------------------------------
    def params(self, cells: Cells, effects: dict[str, float], fit) -> CellParams:
        """Return the baseline :class:`CellParams` of ``cells`` for given effect values and fit.

        Parameters depend on the cell only through its state and race, so they are computed
        once on the 51 x 5 grid (and cached for the same baseline effects and fit) and indexed;
        births and uids come from ``cells``.

        Parameters
        ----------
        cells : Cells
            The ``n`` cells.
        effects : dict of str to float
            Effect values by id; every id of :data:`BASELINE_EFFECTS` must be present (ratios).
        fit : Fit or None
            Supplies ``ga_shift[51, 5, 5]`` (log-odds cut-point shifts) and
            ``m_cause[3, 51, 5]`` (death multipliers); see :mod:`imsim.inputs.fit`. None: no
            shift and multipliers 1 (the unfitted model).

        Returns
        -------
        CellParams
            Parameters of the ``n`` cells (no strategy applied: ``p_prog = p_sd = 0``).
        """
        timed = fit is not None and not cells.pooled and getattr(fit, "year_mult", None) is not None
        if not timed:
            grid = self._grid_params(effects, fit)
            p = grid.take(cells.s_idx * N_R + cells.r_idx)
        else:
            # Exposure prevalences follow their published trends (exposure_trends.csv): one grid
            # per distinct exposure year, stacked, and each cell indexed into its year's grid.
            ey = exposure_year(cells.year)
            years = np.unique(ey)
            grids = [self._grid_params(effects, fit, int(y)) for y in years]
            pos = np.searchsorted(years, ey)
            p = _stack(grids).take(pos * (N_S * N_R) + cells.s_idx * N_R + cells.r_idx)
        p.births = cells.births.astype(np.int64)
        p.uid = cell_uid(cells.year, cells.s_idx, cells.r_idx)
        if timed:
            # Rates that move with time: the calibration's trend multiplier of each cell-year
            # scales every cause alike (imsim.calibration.trend), divided by the change of the
            # cell's IMR that its year's exposures already make (so the total follows the trend
            # and the structure -- e.g. fewer smoking-attributable deaths -- follows the
            # exposures).
            ym = fit.year_multiplier(cells.year, cells.s_idx, cells.r_idx)
            rho = np.concatenate([self._exposure_rate_ratio(effects, fit, int(y)) for y in years])
            ym = ym / rho[pos * (N_S * N_R) + cells.s_idx * N_R + cells.r_idx]
            p.q_neo = p.q_neo * ym[:, None]
            p.q_suid = p.q_suid * ym[:, None]
            p.q_oth = p.q_oth * ym[:, None]
        return p

    def exposure_factors(self, year: int | None) -> dict[str, np.ndarray]:
        """Multipliers of exposure prevalence in ``year`` relative to the baseline period.

        From ``exposure_trends.csv`` (published values by race in two years): the race's
        annual log-linear change between them, applied from :data:`EXPOSURE_BASE_YEAR` (the
        baseline prevalence year) through the last published year and held after it (the
        latest value). Exposures without a published trend keep their baseline prevalence.

        Parameters
        ----------
        year : int or None
            Calendar year (None: the baseline period, no change).

        Returns
        -------
        dict of str to numpy.ndarray
            Exposure -> float ``[51, 5]`` multiplier (only exposures with a trend).
        """
        out = {}
        if year is None:
            return out
        for name, (y0, y1, g) in _exposure_trends().items():
            h = min(max(int(year), EXPOSURE_BASE_YEAR), y1) - EXPOSURE_BASE_YEAR
            out[name] = np.broadcast_to(g[None, :] ** h, (N_S, N_R)).copy()
        return out

    def _exposure_rate_ratio(self, effects, fit, year: int) -> np.ndarray:
        """Expected IMR of each grid cell with ``year``'s exposures over the baseline's (float
        ``[255]``), cached with the grid."""
        key = ("rho", tuple(float(effects[k]) for k in BASELINE_EFFECTS), fit.content_key,
               int(year))
        hit = self._grid_cache.get(key)
        if hit is not None:
            return hit
        from imsim.birth.engines import expected
        from imsim.birth.kernels import N_BANDS, OUT_DEATHS
        from imsim.birth.params import build_tables

        def imr(grid):
            g = grid.take(np.arange(N_S * N_R))
            g.births = np.full(N_S * N_R, 1_000_000, dtype=np.int64)
            c = expected(build_tables(g))
            return c[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=1)

        bkey = ("imr", key[1], key[2])
        base = self._grid_cache.get(bkey)
        if base is None:
            base = self._grid_cache[bkey] = imr(self._grid_params(effects, fit))
        rho = imr(self._grid_params(effects, fit, int(year))) / np.maximum(base, 1e-300)
        self._grid_cache[key] = rho
        return rho

    def _grid_params(self, effects, fit, year: int | None = None) -> CellParams:
        """Parameters on the 51 x 5 grid, cached on this object by content (effects, fit and
        the exposure year; None: the baseline period's exposures)."""
        fit_key = None if fit is None else fit.content_key
        factors = self.exposure_factors(year)
        if factors and all(np.all(f == 1.0) for f in factors.values()):
            factors, year = {}, None
        key = (tuple(float(effects[k]) for k in BASELINE_EFFECTS), fit_key, year)
        cache = self._grid_cache
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
            return hit
        if factors:
            # Another year's exposures: the baseline period's grid with the exposure
            # probabilities of that year. The cut-points stay those solved for the baseline
            # period, so the GA distribution follows the exposures (less smoking, fewer
            # preterm births) as the death probabilities do.
            params = self._grid_params(effects, fit).copy()
            s_idx, r_idx = np.divmod(np.arange(N_S * N_R), N_R)
            p_exp, p_us = self._conditionals(factors)
            params.p_exp = p_exp[s_idx, r_idx].copy()
            params.p_us = p_us[s_idx, r_idx].copy()
        else:
            params = self._compute_params(self.pooled_cells(), effects, fit)
        cache[key] = params
        if len(cache) > 256:
            cache.popitem(last=False)
        return params

    def _conditionals(self, factors=None):
        """P(exposure | low income) [51, 5, 4, 2] and P(unsafe sleep | li, smoking) [51, 5, 2, 2].

        They depend only on prevalences and the association odds ratios, so are solved once per
        set of exposure ``factors`` (multipliers of the baseline prevalences; None: none).
        """
        factors = factors or {}
        key = tuple(sorted((k, np.asarray(v).tobytes()) for k, v in factors.items()))
        memo = self.__dict__.setdefault("_cond_memo", {})
        if key not in memo:
            prev = {k: (np.clip(v * factors[k], 0.0, 1.0) if k in factors else v)
                    for k, v in self.prevalence.items()}
            a = self.associations
            cells = self.pooled_cells()
            s, r = cells.s_idx, cells.r_idx
            p_li = prev["low_income"][s, r]
            p_exp = np.empty((cells.n, 4, 2))
            for k, name in enumerate(COND_EXPOSURES):
                p_exp[:, k, :] = conditional_on_income(prev[name][s, r], p_li,
                                                       a.get(("low_income", name), 1.0))
            p_us = unsafe_sleep_conditional(prev["unsafe_sleep"][s, r], p_li,
                                            p_exp[:, 0, :], a.get(("low_income", "unsafe_sleep"), 1.0),
                                            a.get(("smoking", "unsafe_sleep"), 1.0))
            memo[key] = (p_exp.reshape(N_S, N_R, 4, 2), p_us.reshape(N_S, N_R, 2, 2))
        return memo[key]

    def _compute_params(self, cells: Cells, effects: dict[str, float], fit) -> CellParams:
        n = cells.n
        s, r = cells.s_idx, cells.r_idx
        e = effects
        p_li = self.prevalence["low_income"][s, r]
        p_exp, p_us = self._conditionals()
        p_exp, p_us = p_exp[s, r], p_us[s, r]

        def cuts(values):
            return np.tile(np.log(np.asarray(values, dtype=float)), (n, 1))

        beta_smk = cuts([e["smoking_ga_lt32_or"], e["smoking_ga_lt32_or"],
                         e["smoking_ga_lt34_or"], e["smoking_ga_lt37_or"], 1.0])
        # Progesterone-eligible = prior spontaneous preterm birth or short cervix: the two groups'
        # odds ratios mixed by their prevalence at the national cumulative GA (eligible_log_or).
        beta_pp = eligible_log_or(e, self.short_cervix_share[s, r], self.ga_cum_national)
        beta_ipi = cuts([e["short_ipi_ptb_or"]] * 4 + [1.0])
        beta_li = cuts([e["low_income_ptb_or"]] * 4 + [1.0])
        zeros5 = np.zeros((n, 5))
        ones = np.ones(n)
        params = CellParams(
            births=cells.births.astype(np.int64),
            uid=cell_uid(cells.year, s, r),
            p_li=p_li, p_exp=p_exp, p_us=p_us,
            p_prog=np.zeros(n), p_sd=np.zeros(n), p_l3=self.p_l3[s, r].copy(),
            theta=np.zeros((n, 5)),
            beta_smk=beta_smk, beta_pp=beta_pp, beta_ipi=beta_ipi, beta_li=beta_li,
            beta_prog=zeros5.copy(), beta_sd=zeros5.copy(),
            q_neo=np.zeros((n, 6)), q_suid=np.zeros((n, 6)), q_oth=np.zeros((n, 6)),
            or_nonl3=ones * e["nonlevel3_neonatal_or"],
            or_us_suid=ones * e["unsafe_sleep_suid_or"],
            rr_smk_suid=ones * e["smoking_suid_rr"],
            or_us_smk=ones * e["unsafe_sleep_smoking_interaction"],
            rr_li_pn=ones * e["low_income_postneonatal_rr"],
            rr_sd_death=ones.copy(),
            # An elective early-term birth dies with the 39+ band's probabilities times this.
            rr_eet_death=ones * e["elective_early_term_death_rr"],
            rr_smk_neo=ones * e["smoking_term_neonatal_rr"],
        )
        # Cut-points: the race's own GA distribution shifted by the fitted cell shift, solved so
        # that the cell's *marginal* GA distribution hits its target given its exposures.
        target = self.ga_cum_target[r] if fit is None else _shift_cum(
            self.ga_cum_target[r], fit.ga_shift[s, r])
        params.theta = solve_cutpoints(params, target)
        # Reference death probabilities (unexposed, level III) times fitted multipliers.
        m = np.ones((3, n)) if fit is None else fit.m_cause[:, s, r]
        q = self.q_race[:, r, :]                                   # [3, n, 6]
        params.q_neo = reference_neonatal(q[0], self.p_l3[s, r], params.or_nonl3) * m[0][:, None]
        params.q_suid = q[1] * m[1][:, None]
        params.q_oth = q[2] * m[2][:, None]
        return params


#: The year of the packaged baseline prevalences (exposures.csv: 2014 values); published exposure
#: trends apply from here.
EXPOSURE_BASE_YEAR = 2014


def exposure_year(year):
    """The year whose exposures a cell of ``year`` takes: clipped to the span of the published
    trends (:func:`_exposure_trends`), so years that share exposures share a grid."""
    trends = _exposure_trends()
    last = max((y1 for _, y1, _ in trends.values()), default=EXPOSURE_BASE_YEAR)
    return np.clip(np.asarray(year), EXPOSURE_BASE_YEAR, last)


@lru_cache(maxsize=1)
def _exposure_trends() -> dict:
    """Exposure -> (first year, last year, float[5] annual factor by race) (exposure_trends.csv)."""
    df = load_table("exposure_trends")
    out = {}
    for name, g in df.groupby("exposure"):
        y0, y1 = int(g["year"].min()), int(g["year"].max())
        f = np.ones(N_R)
        for ri, race in enumerate(RACES):
            gr = g[g["race"] == race].set_index("year")["percent"]
            if y0 in gr.index and y1 in gr.index and y1 > y0:
                f[ri] = (float(gr[y1]) / float(gr[y0])) ** (1.0 / (y1 - y0))
        out[name] = (y0, y1, f)
    return out


def _stack(grids):
    """Concatenate parameter sets (same fields) along cells."""
    from dataclasses import fields as _fields

    if len(grids) == 1:
        return grids[0]
    return type(grids[0])(**{f.name: np.concatenate([getattr(g, f.name) for g in grids])
                             for f in _fields(grids[0])})


def _shift_cum(cum, shift):
    return 1.0 / (1.0 + np.exp(-(logit(cum) + shift)))


def reference_neonatal(q_avg, p_l3, or_nonl3):
    """Return the neonatal risk at level III+ such that the level mix reproduces ``q_avg``.

    Solved by bisection for the two bands under 32 weeks, where delivery below level III
    multiplies the odds by ``or_nonl3``; other bands are returned as given.

    Parameters
    ----------
    q_avg : array_like of float
        ``[n, 6]`` average neonatal death probability per GA band over the level mix.
    p_l3 : array_like of float
        ``[n]`` P(level III+ delivery | GA < 32 weeks).
    or_nonl3 : float or array_like of float
        Odds ratio of neonatal death below level III, scalar or ``[n]``.

    Returns
    -------
    numpy.ndarray
        float64 ``[n, 6]`` (a copy), probabilities.
    """
    q_avg = np.array(q_avg, dtype=float)
    p_l3 = np.asarray(p_l3, dtype=float)
    for band in range(2):
        target = q_avg[:, band]
        lo = np.zeros_like(target)
        hi = np.ones_like(target) * 0.999999
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            val = p_l3 * mid + (1 - p_l3) * apply_or(mid, or_nonl3)
            above = val > target
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
        q_avg[:, band] = 0.5 * (lo + hi)
    return q_avg


def solve_cutpoints(params: CellParams, target_cum) -> np.ndarray:
    """Return cut-points ``theta`` so that each cell's marginal P(GA < cut_k) is ``target_cum``.

    The marginal is over the cell's joint exposure distribution (without treatments); at the
    last cut (39 weeks) elective early-term delivery moves 39+ births below the cut, so the
    natural cumulative there is solved to leave room for it.

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells (exposure probabilities and ``beta_*`` are read).
    target_cum : array_like of float
        ``[n, 5]`` target P(GA < 28, 32, 34, 37, 39 weeks), each in (0, 1).

    Returns
    -------
    numpy.ndarray
        float64 ``[n, 5]``: cut-points (log odds).
    """
    from imsim.birth.params import GA_BITS

    n = params.n
    bits = GA_BITS[:16]  # smk, pp, ipi, li; no treatments in the baseline
    li = bits[:, 3]
    w = np.ones((n, 16))
    for k, col in ((0, 0), (1, 1), (2, 2)):
        p = params.p_exp[:, k, :][:, li]                      # [n, 16] P(x=1 | li)
        w *= np.where(bits[None, :, col] == 1, p, 1 - p)
    w *= np.where(li[None, :] == 1, params.p_li[:, None], 1 - params.p_li[:, None])
    eet = params.p_exp[:, 3, :][:, li]                          # [n, 16]
    # Offsets of every combination at every cut [n, 16, 5]; one bisection for all cuts at once.
    off = (bits[None, :, 0, None] * params.beta_smk[:, None, :]
           + bits[None, :, 1, None] * params.beta_pp[:, None, :]
           + bits[None, :, 2, None] * params.beta_ipi[:, None, :]
           + bits[None, :, 3, None] * params.beta_li[:, None, :])
    from imsim.birth.kernels import solve_cutpoints_kernel

    theta = np.empty((n, 5))
    target_cum = np.ascontiguousarray(target_cum, dtype=float)
    solve_cutpoints_kernel(np.ascontiguousarray(w), np.ascontiguousarray(off),
                           np.ascontiguousarray(eet), target_cum, 1e-13, theta)
    _refine_where_clamped(w, off, eet, target_cum, theta, 1e-13)
    return theta


def _refine_where_clamped(w, off, eet, target, theta, tol):
    """Re-solve, in place, the cuts of cells where the non-decreasing clamp of the GA table binds.

    The tables (:func:`imsim.birth.params.ga_cumulative`) make each combination's P(GA < cut_k)
    non-decreasing in k. Exposure odds ratios differ by cut (none at 39 weeks), so in a race
    whose distribution is steep between two cuts a heavily exposed combination can cross; its
    probability is then held at the previous cut's. The kernel solve ignores that, so where it
    binds the marginal is solved again here with the clamp (bisection: the clamped marginal is
    still non-decreasing in the cut-point).
    """
    prev = np.zeros_like(w)                                      # clamped P(GA < previous cut)

    def marginal(x, k, idx):
        p = np.maximum(1.0 / (1.0 + np.exp(-(x[:, None] + off[idx, :, k]))), prev[idx])
        if k == 4:
            p = p + (1.0 - p) * eet[idx]
        return np.sum(w[idx] * p, axis=1)

    every = np.arange(w.shape[0])
    for k in range(5):
        bad = np.flatnonzero(np.abs(marginal(theta[:, k], k, every) - target[:, k]) > tol)
        if bad.size:
            lo, hi = np.full(bad.size, -40.0), np.full(bad.size, 40.0)
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                above = marginal(mid, k, bad) > target[bad, k]
                hi = np.where(above, mid, hi)
                lo = np.where(above, lo, mid)
                if np.max(hi - lo) < 1e-15:
                    break
            theta[bad, k] = 0.5 * (lo + hi)
        prev = np.maximum(1.0 / (1.0 + np.exp(-(theta[:, k, None] + off[:, :, k]))), prev)


# ---------------------------------------------------------------------------------------------
# Reading the packaged tables
# ---------------------------------------------------------------------------------------------

def _births_grid() -> dict[int, np.ndarray]:
    df = load_table("births")
    out = {}
    for y in DATA_YEARS:
        grid = np.zeros((N_S, N_R), dtype=np.int64)
        sub = df[df["year"] == y]
        grid[sub["state"].map(S_INDEX).to_numpy(), sub["race"].map(R_INDEX).to_numpy()] = \
            sub["births"].to_numpy(dtype=np.int64)
        out[y] = grid
    return out


def _births_trend() -> tuple[np.ndarray, np.ndarray]:
    df = load_table("births_trend").set_index("state").reindex(list(STATES))
    if df["slope"].isna().any() or (df["base_year"] != max(DATA_YEARS)).any():
        raise ValueError("births_trend.csv: needs a slope per state with base_year "
                         f"{max(DATA_YEARS)} (the latest data year)")
    return df["slope"].to_numpy(float), df["slope_se"].to_numpy(float)


def _prevalence_grid() -> dict[str, np.ndarray]:
    """Exposure prevalence per state x race: national race value, scaled to a state value."""
    df = load_table("exposures")
    births = _births_grid()
    w = sum(births[y] for y in (2013, 2014, 2015)).astype(float)
    out = {}
    names = list(COND_EXPOSURES) + ["unsafe_sleep", "low_income", "level3_vlbw", "short_cervix"]
    for name in names:
        sub = df[df["exposure"] == name]
        nat = sub[sub["state"] == "ALL"]
        all_race = nat[nat["race"] == "ALL"]["prevalence"]
        default = float(all_race.iloc[0]) if len(all_race) else np.nan
        grid = np.full((N_S, N_R), default)
        for row in nat[nat["race"] != "ALL"].itertuples():
            if row.race in R_INDEX:
                grid[:, R_INDEX[row.race]] = row.prevalence
        if np.isnan(grid).any():
            raise ValueError(f"exposures.csv: no national value for {name}")
        for row in sub[(sub["state"] != "ALL")].itertuples():
            if row.state not in S_INDEX:
                continue
            s = S_INDEX[row.state]
            if row.race == "ALL":
                cur = np.sum(grid[s] * w[s]) / max(np.sum(w[s]), 1.0)
                if cur > 0:
                    grid[s] = np.clip(grid[s] * row.prevalence / cur, 0.0, 1.0)
            elif row.race in R_INDEX:
                grid[s, R_INDEX[row.race]] = row.prevalence
        out[name] = grid
    return out


#: ``Baseline.expansion_year`` of a state that had not expanded Medicaid (never <= a year).
NOT_EXPANDED = np.iinfo(np.int64).max


def _expansion_years() -> np.ndarray:
    """First calendar year of ACA Medicaid expansion per state (``states.csv``), int64[51]."""
    df = load_table("states").set_index("state")
    missing = set(STATES) - set(df.index)
    if missing:
        raise ValueError(f"states.csv: no row for {', '.join(sorted(missing))}")
    out = np.full(N_S, NOT_EXPANDED, dtype=np.int64)
    for s, i in S_INDEX.items():
        row = df.loc[s]
        if str(row["medicaid_expansion"]) == "True":
            out[i] = int(str(row["expansion_effective_date"])[:4])
    return out


def _associations() -> dict[tuple[str, str], float]:
    df = load_table("associations")
    return {(r.from_exposure, r.to_exposure): float(r.odds_ratio) for r in df.itertuples()}


def _ga_national() -> np.ndarray:
    """National cumulative GA distribution P(GA < cut) at the five cuts (ga_structure, race ALL)."""
    ga = load_table("ga_structure")
    nat = ga[ga["race"] == "ALL"].set_index("ga_band").loc[list(GA_BANDS)]
    shares = nat["births_share"].to_numpy(dtype=float)
    shares = shares / shares.sum()
    return np.cumsum(shares)[:5]


def _ga_targets() -> np.ndarray:
    """Target cumulative GA distribution per race [5 races, 5 cuts].

    Each race's own births distribution by GA band (``ga_structure.csv``, obstetric estimate):
    P(GA < 28, 32, 34, 37, 39 weeks). Every cut is the race's (not one shift of the national
    distribution): the deep cuts from births by gestational age and race, P(GA < 37) the race's
    published preterm rate (see ``scripts/build_data.py`` ``ga_race_cumulative``).
    """
    ga = load_table("ga_structure")
    out = np.empty((N_R, 5))
    for r_name, r in R_INDEX.items():
        sub = ga[ga["race"] == r_name].set_index("ga_band")
        if set(GA_BANDS) - set(sub.index) or sub["births_share"].isna().any():
            raise ValueError(f"ga_structure.csv: no births share by GA band for race {r_name}")
        shares = sub.loc[list(GA_BANDS), "births_share"].to_numpy(dtype=float)
        out[r] = np.cumsum(shares / shares.sum())[:5]
    return out


def _death_rates_by_race(ga_cum_target) -> np.ndarray:
    """Death probability per cause x race x GA band [3, 5, 6].

    Race-specific deaths by band and cause (pooled linked cohorts) over race births by band
    (race births x the race's own GA distribution); deaths and births are both by the
    obstetric estimate of gestational age (``births_ga_measure`` / ``deaths_ga_measure``).
    """
    ga = load_table("ga_structure")
    nat = ga[ga["race"] == "ALL"].set_index("ga_band").loc[list(GA_BANDS)]
    rates_all = np.stack([nat[f"imr_{c}"].to_numpy(float) for c in
                          CAUSES]) / 1000.0  # [3, 6]
    shares_all = nat["births_share"].to_numpy(float)
    shares_all = shares_all / shares_all.sum()
    deaths_all = np.stack([nat[f"deaths_{c}"].to_numpy(float) for c in
                           CAUSES])          # [3, 6]
    out = np.empty((3, N_R, 6))
    for r_name, r in R_INDEX.items():
        sub = ga[ga["race"] == r_name]
        cum = np.concatenate([ga_cum_target[r], [1.0]])
        shares_r = np.diff(np.concatenate([[0.0], cum]))
        if len(sub) == 6:
            sub = sub.set_index("ga_band").loc[list(GA_BANDS)]
            d_r = np.stack([sub[f"deaths_{c}"].to_numpy(float) for c in
                            CAUSES])
            # Relative risk of race r vs all within a band: (deaths_r / births_r) / (deaths / births),
            # births_r = the race's share of births x its own share in the band.
            frac_r = d_r.sum() / deaths_all.sum()
            births_frac = _race_birth_fraction(r)
            rel = np.where(deaths_all > 0, (d_r / np.maximum(deaths_all, 1e-12))
                           / (births_frac * shares_r / shares_all)[None, :], 1.0)
            rel = np.where(d_r >= 5, rel, frac_r / births_frac)  # tiny counts: race-wide ratio
            out[:, r, :] = rates_all * rel
        else:
            out[:, r, :] = rates_all
    # The rates above are deaths / births (unconditional). The death model is competing: SUID
    # strikes neonatal survivors, other postneonatal deaths survivors of both (kernels.death_table),
    # so convert to those conditional probabilities; otherwise postneonatal deaths of very preterm
    # births (up to ~40% neonatal deaths) would be understated and moved to later bands.
    out = np.clip(out, 1e-7, 0.95)
    neo, suid, oth = out
    out[1] = suid / (1.0 - neo)
    out[2] = oth / np.maximum(1.0 - neo - suid, 1e-3)
    return np.clip(out, 1e-7, 0.95)


@lru_cache(maxsize=None)
def _race_birth_fraction(r: int) -> float:
    b = _births_grid()
    total = sum(b[y] for y in (2010 + 3, 2014, 2015))
    return float(total[:, r].sum() / total.sum())


@lru_cache(maxsize=1)
def get_baseline() -> Baseline:
    """Return the process-wide :class:`Baseline` (packaged data read once, then shared)."""
    return Baseline()
