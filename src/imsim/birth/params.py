"""The model of one birth, as named quantities per cell, and its translation into kernel tables.

A *cell* is one state x race/Hispanic origin x year. Everything a strategy can change is a named
array over cells in :class:`CellParams` (an exposure prevalence, a coverage, an effect size); the
kernels never see names, only the tables :func:`build_tables` makes from them. Strategies edit
``CellParams`` (see :mod:`imsim.birth.strategies`), never the kernels.

The birth (see DESIGN.md):

1. Exposures. ``low_income`` is drawn first; ``smoking``, ``prior_preterm`` (eligible for
   progesterone: prior spontaneous preterm birth or short cervix), ``short_ipi`` and
   ``elective_early_term`` are drawn given low income, and ``unsafe_sleep`` given low income and
   smoking. Conditional probabilities are logistic in the parents with the odds ratios of
   ``associations.csv``, solved so that each exposure keeps its marginal prevalence, so exposures
   cluster within a birth as they do in the population.
2. Treatments reached by a strategy: progesterone for eligible births (``p_prog``), a
   social-determinants intervention for low-income births (``p_sd``).
3. Gestational age from a cumulative-logit model with cut-points 28, 32, 34, 37 and 39 weeks:
   ``logit P(GA < cut_k) = theta_k + sum_x beta_xk x``; the exposure effects may differ by cut
   (e.g. smoking: very, moderate, late preterm odds ratios). An elective early-term delivery turns
   a 39+ week birth into a 37-38 week birth: it is counted in the 37-38 band, but its death
   probabilities are the 39+ band's times ``rr_eet_death`` (a would-be 39+ birth delivered one
   to two weeks early without medical indication, not a medically indicated early-term birth).
4. Delivery at a level III+ hospital for births under 32 weeks (``p_l3``).
5. Death, competing causes: neonatal (by GA band; the odds multiplied by ``or_nonl3`` below
   level III), then, for neonatal survivors, SUID (by band; the odds multiplied for unsafe
   sleep and its interaction with smoking, the risk for smoking) and other postneonatal causes
   (by band). Low income multiplies the postneonatal risks (SUID and other); the
   social-determinants intervention multiplies the risk of every cause for the births it
   reaches.

Odds ratios (``or_*``) act on the odds of the outcome (``odds' = odds x OR``), which converts
them to risk ratios with the baseline risk as the evidence guidance asks; risk ratios (``rr_*``)
multiply the probability (capped below 1). Odds ratios apply first.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from imsim.core.digest import array_digest
from imsim.birth.kernels import EET_ROW, N_BANDS, N_CUTS, N_DEATH_ROWS, TERM_BAND

#: Exposures drawn given low income, in kernel order (axis 1 of ``p_exp``).
COND_EXPOSURES = ("smoking", "prior_preterm", "short_ipi", "elective_early_term")


@dataclass
class CellParams:
    """Named model quantities for ``n`` cells (all arrays have ``n`` as first axis).

    Prevalences are probabilities; ``beta_*`` are log odds ratios per GA cut ([n, 5]); ``or_*``
    odds ratios; ``rr_*`` risk ratios; ``q_*`` reference death probabilities per GA band
    ([n, 6]) for an unexposed birth delivered at level III+. Every float array is float64.

    Attributes
    ----------
    births : numpy.ndarray
        int64 ``[n]``: live births of each cell.
    uid : numpy.ndarray
        uint64 ``[n]``: stable cell id (:func:`imsim.inputs.baseline.cell_uid`), the key of the
        cell's random numbers.
    p_li : numpy.ndarray
        ``[n]``: P(low income).
    p_exp : numpy.ndarray
        ``[n, 4, 2]``: P(exposure | low income 0/1) for :data:`COND_EXPOSURES`.
    p_us : numpy.ndarray
        ``[n, 2, 2]``: P(unsafe sleep | low income, smoking).
    p_prog : numpy.ndarray
        ``[n]``: P(progesterone | eligible) (0 in the baseline).
    p_sd : numpy.ndarray
        ``[n]``: P(reached by the social-determinants intervention | low income).
    p_l3 : numpy.ndarray
        ``[n]``: P(delivery at a level III+ hospital | GA < 32 weeks).
    theta : numpy.ndarray
        ``[n, 5]``: cut-points, log odds of GA below 28, 32, 34, 37, 39 weeks when unexposed.
    beta_smk, beta_pp, beta_ipi, beta_li, beta_prog, beta_sd : numpy.ndarray
        ``[n, 5]``: log odds ratios of each cut for smoking, prior preterm, short IPI, low
        income, progesterone and social-determinants reach.
    q_neo, q_suid, q_oth : numpy.ndarray
        ``[n, 6]``: reference death probabilities by GA band (neonatal, SUID, other
        postneonatal).
    or_nonl3 : numpy.ndarray
        ``[n]``: odds ratio of neonatal death below level III (GA < 32 weeks).
    or_us_suid : numpy.ndarray
        ``[n]``: odds ratio of SUID for unsafe sleep.
    rr_smk_suid : numpy.ndarray
        ``[n]``: risk ratio of SUID for smoking (direct).
    or_us_smk : numpy.ndarray
        ``[n]``: odds ratio of the unsafe sleep x smoking interaction on SUID.
    rr_li_pn : numpy.ndarray
        ``[n]``: risk ratio of postneonatal death (SUID and other) for low income (direct).
    rr_sd_death : numpy.ndarray
        ``[n]``: risk ratio of death (every cause) for births reached by the
        social-determinants intervention.
    rr_eet_death : numpy.ndarray
        ``[n]``: risk ratio of death (every cause) of an elective early-term birth relative to
        the same birth at 39+ weeks (the 39+ band's probabilities are multiplied by it).
    rr_smk_neo : numpy.ndarray
        ``[n]``: risk ratio of neonatal death of a term birth (37+ weeks, elective early-term
        included) whose mother smoked, direct (not through gestational age).
    """

    births: np.ndarray            # int64[n]
    uid: np.ndarray               # uint64[n]
    p_li: np.ndarray              # P(low income)
    p_exp: np.ndarray             # [n, 4, 2] P(exposure | low income), COND_EXPOSURES order
    p_us: np.ndarray              # [n, 2, 2] P(unsafe sleep | low income, smoking)
    p_prog: np.ndarray            # P(progesterone | eligible)
    p_sd: np.ndarray              # P(reached by social-determinants intervention | low income)
    p_l3: np.ndarray              # P(level III+ delivery | GA < 32 weeks)
    theta: np.ndarray             # [n, 5] cut-points (log odds)
    beta_smk: np.ndarray          # [n, 5]
    beta_pp: np.ndarray           # [n, 5]
    beta_ipi: np.ndarray          # [n, 5]
    beta_li: np.ndarray           # [n, 5]
    beta_prog: np.ndarray         # [n, 5]
    beta_sd: np.ndarray           # [n, 5]
    q_neo: np.ndarray             # [n, 6]
    q_suid: np.ndarray            # [n, 6]
    q_oth: np.ndarray             # [n, 6]
    or_nonl3: np.ndarray          # neonatal death odds ratio below level III (GA < 32)
    or_us_suid: np.ndarray        # unsafe sleep -> SUID (odds ratio)
    rr_smk_suid: np.ndarray       # smoking -> SUID, direct (risk ratio)
    or_us_smk: np.ndarray         # unsafe sleep x smoking interaction on SUID (odds ratio)
    rr_li_pn: np.ndarray          # low income -> postneonatal death, direct (risk ratio)
    rr_sd_death: np.ndarray       # social-determinants intervention -> death risk (risk ratio)
    rr_eet_death: np.ndarray      # elective early-term birth vs 39+ -> death risk (risk ratio)
    rr_smk_neo: np.ndarray        # smoking -> neonatal death of term births, direct (risk ratio)

    @property
    def n(self) -> int:
        """Number of cells."""
        return int(self.births.shape[0])

    def copy(self) -> CellParams:
        """Return a deep copy (strategies edit copies, never the baseline)."""
        return replace(self, **{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def take(self, idx) -> CellParams:
        """Return the parameters of the cells ``idx``.

        Parameters
        ----------
        idx : array_like of int or bool
            Cell indices (may repeat) or a boolean mask ``[n]``.

        Returns
        -------
        CellParams
            The selected cells, in ``idx`` order (NumPy indexing: copies for integer indices).
        """
        return replace(self, **{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def put(self, idx, sub: CellParams) -> None:
        """Write the parameters of ``sub`` back into the cells ``idx``, in place.

        Read-only arrays (shared baseline arrays) are copied before being written.

        Parameters
        ----------
        idx : array_like of int
            ``[m]`` indices of the cells to overwrite.
        sub : CellParams
            Parameters of ``m`` cells, in ``idx`` order.
        """
        for f in fields(self):
            arr = getattr(self, f.name)
            if not arr.flags.writeable:
                arr = arr.copy()
                setattr(self, f.name, arr)
            arr[idx] = getattr(sub, f.name)


@dataclass
class Tables:
    """Kernel inputs for ``n`` cells (see :mod:`imsim.birth.kernels`), contiguous arrays.

    Attributes
    ----------
    births : numpy.ndarray
        int64 ``[n]``: live births per cell.
    uid : numpy.ndarray
        uint64 ``[n]``: stable cell ids (the key of the cell's random numbers).
    p_li, p_prog, p_sd, p_l3 : numpy.ndarray
        float64 ``[n]``: as in :class:`CellParams`.
    p_exp : numpy.ndarray
        float64 ``[n, 4, 2]``: P(exposure | low income).
    p_us : numpy.ndarray
        float64 ``[n, 2, 2]``: P(unsafe sleep | low income, smoking).
    ga_cum : numpy.ndarray
        float64 ``[n, 64, 5]``: P(GA < cut_k | exposure/treatment combination).
    death_cum : numpy.ndarray
        float64 ``[n, 7, 2, 16, 3]``: cumulative death thresholds by death row (GA bands, then
        the elective early-term row).
    """

    births: np.ndarray
    uid: np.ndarray
    p_li: np.ndarray
    p_exp: np.ndarray
    p_us: np.ndarray
    p_prog: np.ndarray
    p_sd: np.ndarray
    p_l3: np.ndarray
    ga_cum: np.ndarray
    death_cum: np.ndarray

    def take(self, idx) -> Tables:
        """Return the tables of the cells ``idx`` (contiguous copies).

        Parameters
        ----------
        idx : array_like of int or bool
            Cell indices or a boolean mask ``[n]``.

        Returns
        -------
        Tables
            The selected cells.
        """
        return Tables(**{f.name: np.ascontiguousarray(getattr(self, f.name)[idx])
                         for f in fields(self)})


def cells_differ(a: Tables, b: Tables) -> np.ndarray:
    """Return which cells have different tables in two arms.

    A cell with identical tables has identical outcomes in both arms (common random numbers by
    construction), so the microsim need not simulate it twice.

    Parameters
    ----------
    a, b : Tables
        Tables of the same ``n`` cells (e.g. baseline and scenario arm).

    Returns
    -------
    numpy.ndarray
        bool ``[n]``: True where any field differs.
    """
    n = a.births.shape[0]
    diff = np.zeros(n, dtype=bool)
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        diff |= (x != y).reshape(n, -1).any(axis=1)
    return diff


def expit(x):
    """Return the logistic function ``1 / (1 + exp(-x))`` of log odds ``x`` (a probability)."""
    return 1.0 / (1.0 + np.exp(-x))


def logit(p):
    """Return the log odds ``log(p / (1 - p))`` of probabilities ``p`` (float64, any shape)."""
    p = np.asarray(p, dtype=float)
    return np.log(p) - np.log1p(-p)


def apply_or(p, odds_ratio):
    """Return the probability whose odds are ``odds_ratio`` times the odds of ``p``.

    Parameters
    ----------
    p : array_like of float
        Probabilities in [0, 1].
    odds_ratio : array_like of float
        Odds ratios (> 0), broadcast against ``p``.

    Returns
    -------
    numpy.ndarray
        float64, the broadcast shape: ``OR p / (1 - p + OR p)``.
    """
    p = np.asarray(p, dtype=float)
    odds_ratio = np.asarray(odds_ratio, dtype=float)
    return odds_ratio * p / (1.0 - p + odds_ratio * p)


#: A risk ratio never pushes a death probability above this.
RISK_CAP = 0.999


def apply_rr(p, risk_ratio, cap: float = RISK_CAP):
    """Return ``p`` times a risk ratio, capped at ``cap`` (a probability never reaches 1).

    Parameters
    ----------
    p : array_like of float
        Probabilities in [0, 1].
    risk_ratio : array_like of float
        Risk ratios (>= 0), broadcast against ``p``.
    cap : float
        Largest probability returned.

    Returns
    -------
    numpy.ndarray
        float64, the broadcast shape: ``min(p * RR, cap)``.
    """
    return np.minimum(np.asarray(p, dtype=float) * np.asarray(risk_ratio, dtype=float), cap)


def _combo_bits(n_bits: int) -> np.ndarray:
    """[2**n_bits, n_bits] array of the bits of each combination index (bit 0 first)."""
    idx = np.arange(2**n_bits)
    return (idx[:, None] >> np.arange(n_bits)[None, :]) & 1


GA_BITS = _combo_bits(6)      # smk, pp, ipi, li, prog, sd
DEATH_BITS = _combo_bits(4)   # smk, us, li, sd


def ga_linear_predictor(params: CellParams) -> np.ndarray:
    """Return the log odds of GA below each cut for every exposure/treatment combination.

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells.

    Returns
    -------
    numpy.ndarray
        float64 ``[n, 64, 5]``: ``theta_k + sum_x beta_xk x`` for combination
        ``smk + 2 pp + 4 ipi + 8 li + 16 prog + 32 sd`` and cuts 28, 32, 34, 37, 39 weeks
        (before the non-decreasing correction of :func:`ga_cumulative`).
    """
    b = GA_BITS.astype(float)
    eta = (
        params.theta[:, None, :]
        + b[None, :, 0, None] * params.beta_smk[:, None, :]
        + b[None, :, 1, None] * params.beta_pp[:, None, :]
        + b[None, :, 2, None] * params.beta_ipi[:, None, :]
        + b[None, :, 3, None] * params.beta_li[:, None, :]
        + b[None, :, 4, None] * params.beta_prog[:, None, :]
        + b[None, :, 5, None] * params.beta_sd[:, None, :]
    )
    return eta


#: CellParams fields the gestational-age table reads.
GA_FIELDS = ("theta", "beta_smk", "beta_pp", "beta_ipi", "beta_li", "beta_prog", "beta_sd")
_GA_CACHE: dict[str, np.ndarray] = {}


def ga_cumulative(params: CellParams) -> np.ndarray:
    """Return P(GA < cut_k | combination) for every cell, made non-decreasing in k.

    Memoised on the content of the GA parameters (:data:`GA_FIELDS`): fitting and sweeps
    rebuild tables many times with only the death probabilities changing.

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells.

    Returns
    -------
    numpy.ndarray
        float64 ``[n, 64, 5]``, read-only (shared by the cache): probabilities, combination
        index ``smk + 2 pp + 4 ipi + 8 li + 16 prog + 32 sd``, cuts 28, 32, 34, 37, 39 weeks.
    """
    key = array_digest(*(getattr(params, name) for name in GA_FIELDS))
    hit = _GA_CACHE.get(key)
    if hit is not None:
        return hit
    from imsim.birth import kernels as K

    f = np.ascontiguousarray
    cum = np.empty((params.n, 64, N_CUTS))
    K.ga_table(f(params.theta, dtype=float), f(params.beta_smk, dtype=float),
               f(params.beta_pp, dtype=float), f(params.beta_ipi, dtype=float),
               f(params.beta_li, dtype=float), f(params.beta_prog, dtype=float),
               f(params.beta_sd, dtype=float), cum)
    cum.setflags(write=False)
    if len(_GA_CACHE) >= 64:
        _GA_CACHE.clear()
    _GA_CACHE[key] = cum
    return cum


def death_probabilities(params: CellParams):
    """Return the per-cause death probabilities of every cell, band and combination (NumPy).

    The reference formulas of :func:`imsim.birth.kernels.death_table`. Each cause's
    probability is conditional on surviving the causes before it (neonatal, then SUID, then
    other postneonatal). Row 6 is an elective early-term birth: the 39+ band's reference
    probabilities, every cause's risk times ``rr_eet_death``.

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells.

    Returns
    -------
    p_neo, p_suid, p_oth : numpy.ndarray
        float64 ``[n, 7, 2, 16]`` each (read-only broadcast views), probabilities. Axes: cell,
        death row (GA bands 0-5, elective early-term row 6), delivery below level III (1) or
        not (0; only meaningful for bands < 32 weeks), combination ``smk + 2 us + 4 li + 8 sd``.
    """
    n = params.n
    bits = DEATH_BITS
    smk, us, li, sd = (bits[:, k].astype(float) for k in range(4))
    nonl3 = np.array([0.0, 1.0])
    # Death rows: the six GA bands, then the elective row (the 39+ band's references).
    band_of_row = np.append(np.arange(N_BANDS), N_BANDS - 1)
    lt32 = (band_of_row < 2).astype(float)
    eet = (np.arange(N_DEATH_ROWS) == EET_ROW).astype(float)

    def pw(base, exponent):
        return np.power(base[:, None, None, None], exponent)

    term = (band_of_row >= TERM_BAND).astype(float)
    or_neo = pw(params.or_nonl3, lt32[None, :, None, None] * nonl3[None, None, :, None])
    rr_sd = (pw(params.rr_sd_death, sd[None, None, None, :])
             * pw(params.rr_eet_death, eet[None, :, None, None]))
    q_neo = params.q_neo[:, band_of_row]
    rr_neo = rr_sd * pw(params.rr_smk_neo, term[None, :, None, None] * smk[None, None, None, :])
    p_neo = apply_rr(apply_or(q_neo[:, :, None, None], or_neo), rr_neo)
    or_suid = (
        pw(params.or_us_suid, us[None, None, None, :])
        * pw(params.or_us_smk, (us * smk)[None, None, None, :])
    )
    rr_suid = (
        pw(params.rr_smk_suid, smk[None, None, None, :])
        * pw(params.rr_li_pn, li[None, None, None, :])
        * rr_sd
    )
    p_suid = apply_rr(apply_or(params.q_suid[:, band_of_row, None, None], or_suid), rr_suid)
    rr_oth = pw(params.rr_li_pn, li[None, None, None, :]) * rr_sd
    p_oth = apply_rr(params.q_oth[:, band_of_row, None, None], rr_oth)
    shape = (n, N_DEATH_ROWS, 2, 16)
    return (np.broadcast_to(p_neo, shape), np.broadcast_to(p_suid, shape),
            np.broadcast_to(p_oth, shape))


def death_cumulative(params: CellParams) -> np.ndarray:
    """Return the cumulative death thresholds of every cell (Numba).

    Same formulas as :func:`death_probabilities`, which documents them in NumPy.

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells; the ``or_*``/``rr_*`` fields may be scalars or ``[n]``.

    Returns
    -------
    numpy.ndarray
        float64 ``[n, 7, 2, 16, 3]``: axes cell, death row (GA bands 0-5, elective early-term
        row 6), delivery below level III, combination ``smk + 2 us + 4 li + 8 sd``, and the
        cumulative thresholds ``t0 <= t1 <= t2`` (neonatal, + SUID, + other postneonatal) of a
        uniform ``u``.
    """
    from imsim.birth import kernels as K

    f = np.ascontiguousarray
    out = np.empty((params.n, N_DEATH_ROWS, 2, 16, 3))
    K.death_table(f(params.q_neo, dtype=float), f(params.q_suid, dtype=float),
                  f(params.q_oth, dtype=float), *(f(np.broadcast_to(getattr(params, k), (params.n,)),
                                                    dtype=float) for k in
                                                  ("or_nonl3", "or_us_suid", "rr_smk_suid",
                                                   "or_us_smk", "rr_li_pn", "rr_sd_death",
                                                   "rr_eet_death", "rr_smk_neo")),
                  RISK_CAP, out)
    return out


def _tables(params: CellParams, ga_cum, death_cum) -> Tables:
    c = np.ascontiguousarray
    return Tables(
        births=c(params.births, dtype=np.int64), uid=c(params.uid, dtype=np.uint64),
        p_li=c(params.p_li, dtype=float), p_exp=c(params.p_exp, dtype=float),
        p_us=c(params.p_us, dtype=float), p_prog=c(params.p_prog, dtype=float),
        p_sd=c(params.p_sd, dtype=float), p_l3=c(params.p_l3, dtype=float),
        ga_cum=ga_cum, death_cum=death_cum,
    )


def build_tables(params: CellParams) -> Tables:
    """Translate named cell parameters into the tables both engines read.

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells.

    Returns
    -------
    Tables
        Contiguous kernel tables of the ``n`` cells.
    """
    return _tables(params, ga_cumulative(params), death_cumulative(params))


def tables_sharing(params: CellParams, ga_cum: np.ndarray, death_cum: np.ndarray) -> Tables:
    """Return the tables of ``params`` holding the given GA and death tables as they are.

    For :func:`imsim.birth.engines.expected_rows`, where each cell reads one row of tables
    shared by many cells (the arrays are referenced, not copied).

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells (every table but the GA and death tables is built from them).
    ga_cum : numpy.ndarray
        float64 ``[m, 64, 5]``: GA tables, any number ``m`` of rows.
    death_cum : numpy.ndarray
        float64 ``[m, 7, 2, 16, 3]``: death tables with the same ``m`` rows.

    Returns
    -------
    Tables
        Tables whose ``ga_cum``/``death_cum`` have ``m`` rows, the others ``n``.
    """
    return _tables(params, np.ascontiguousarray(ga_cum, dtype=float),
                   np.ascontiguousarray(death_cum, dtype=float))


def build_tables_reusing(params: CellParams, ga_cum, death_cum, changed) -> Tables:
    """Return the tables of ``params``, reusing GA and death tables built for the same cells.

    Only the rows in ``changed`` are rebuilt; the inputs are not modified.

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells.
    ga_cum : array_like
        float64 ``[n, 64, 5]``: GA table built for a previous version of ``params``.
    death_cum : array_like
        float64 ``[n, 7, 2, 16, 3]``: death table built for a previous version of ``params``.
    changed : array_like of bool
        ``[n]``: cells whose GA or death parameters differ from that version.

    Returns
    -------
    Tables
        The same tables :func:`build_tables` would make.
    """
    ga_cum = np.array(ga_cum, dtype=float)
    death_cum = np.array(death_cum, dtype=float)
    if np.any(changed):
        idx = np.flatnonzero(changed)
        sub = params.take(idx)
        ga_cum[idx] = ga_cumulative(sub)
        death_cum[idx] = death_cumulative(sub)
    return _tables(params, np.ascontiguousarray(ga_cum), np.ascontiguousarray(death_cum))


# ---------------------------------------------------------------------------------------------
# Correlated exposures: conditional probabilities that keep the marginal prevalence.
# ---------------------------------------------------------------------------------------------

def _solve_intercept(target, weights, offsets, iters: int = 60):
    """Solve ``a`` so that ``sum_j weights[..., j] * expit(a + offsets[..., j]) = target``.

    Vectorised bisection on the log-odds scale; ``target`` in [0, 1].
    """
    target = np.asarray(target, dtype=float)
    lo = np.full(target.shape, -40.0)
    hi = np.full(target.shape, 40.0)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        val = np.sum(weights * expit(mid[..., None] + offsets), axis=-1)
        above = val > target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    a = 0.5 * (lo + hi)
    a = np.where(target <= 0.0, -np.inf, a)
    a = np.where(target >= 1.0, np.inf, a)
    return a


def conditional_on_income(marginal, p_li, odds_ratio):
    """Return P(x | low income = 0, 1) that keeps a marginal prevalence and an odds ratio.

    Parameters
    ----------
    marginal : array_like of float
        ``[n]``: marginal prevalence of the exposure (probability).
    p_li : array_like of float
        ``[n]``: P(low income).
    odds_ratio : float or array_like of float
        Odds ratio of the exposure for low income (> 0), scalar or ``[n]``.

    Returns
    -------
    numpy.ndarray
        float64 ``[n, 2]``: P(x | not low income), P(x | low income); exactly 0 or 1 where the
        marginal is.
    """
    marginal = np.asarray(marginal, dtype=float)
    log_or = np.log(np.broadcast_to(np.asarray(odds_ratio, dtype=float), marginal.shape))
    w = np.stack([1.0 - p_li, p_li], axis=-1)
    off = np.stack([np.zeros_like(log_or), log_or], axis=-1)
    a = _solve_intercept(marginal, w, off)
    with np.errstate(invalid="ignore"):
        out = expit(a[:, None] + off)
    out = np.where(marginal[:, None] <= 0.0, 0.0, out)
    return np.where(marginal[:, None] >= 1.0, 1.0, out)


def unsafe_sleep_conditional(marginal, p_li, p_smk_given_li, or_li, or_smk):
    """Return P(unsafe sleep | low income, smoking) that keeps a marginal prevalence.

    Logistic in low income and smoking (no interaction term), with the intercept solved so the
    prevalence over the cell's joint (low income, smoking) distribution is ``marginal``.

    Parameters
    ----------
    marginal : array_like of float
        ``[n]``: marginal prevalence of unsafe sleep (probability).
    p_li : array_like of float
        ``[n]``: P(low income).
    p_smk_given_li : numpy.ndarray
        float64 ``[n, 2]``: P(smoking | low income 0/1).
    or_li, or_smk : float or array_like of float
        Odds ratios of unsafe sleep for low income and for smoking (> 0), scalar or ``[n]``.

    Returns
    -------
    numpy.ndarray
        float64 ``[n, 2, 2]``, indexed ``[cell, low income, smoking]``.
    """
    marginal = np.asarray(marginal, dtype=float)
    n = marginal.shape[0]
    li = np.array([0, 0, 1, 1], dtype=float)
    smk = np.array([0, 1, 0, 1], dtype=float)
    p_li_ = np.asarray(p_li, dtype=float)
    w = np.empty((n, 4))
    w[:, 0] = (1 - p_li_) * (1 - p_smk_given_li[:, 0])
    w[:, 1] = (1 - p_li_) * p_smk_given_li[:, 0]
    w[:, 2] = p_li_ * (1 - p_smk_given_li[:, 1])
    w[:, 3] = p_li_ * p_smk_given_li[:, 1]
    off = (li[None, :] * np.log(np.broadcast_to(or_li, (n,)))[:, None]
           + smk[None, :] * np.log(np.broadcast_to(or_smk, (n,)))[:, None])
    a = _solve_intercept(marginal, w, off)
    with np.errstate(invalid="ignore"):
        p = expit(a[:, None] + off)
    p = np.where(marginal[:, None] <= 0.0, 0.0, p)
    p = np.where(marginal[:, None] >= 1.0, 1.0, p)
    return p.reshape(n, 2, 2)


def exposure_marginals(params: CellParams) -> dict[str, np.ndarray]:
    """Return the marginal prevalence of each exposure per cell, implied by the conditionals.

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells.

    Returns
    -------
    dict of str to numpy.ndarray
        ``low_income``, the :data:`COND_EXPOSURES` and ``unsafe_sleep``, each float64 ``[n]``
        (probabilities).
    """
    p_li = params.p_li
    out = {"low_income": p_li.copy()}
    for k, name in enumerate(COND_EXPOSURES):
        out[name] = (1 - p_li) * params.p_exp[:, k, 0] + p_li * params.p_exp[:, k, 1]
    ps = params.p_exp[:, 0, :]
    out["unsafe_sleep"] = (
        (1 - p_li) * ((1 - ps[:, 0]) * params.p_us[:, 0, 0] + ps[:, 0] * params.p_us[:, 0, 1])
        + p_li * ((1 - ps[:, 1]) * params.p_us[:, 1, 0] + ps[:, 1] * params.p_us[:, 1, 1])
    )
    return out
