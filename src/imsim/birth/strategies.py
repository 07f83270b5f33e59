"""The six strategies: modifiers on named quantities of the cell parameters, composed by one ``apply``.

Each strategy is a function with one signature,

``strategy(params, coverage, effects, options, cells) -> None``

that edits named quantities of :class:`imsim.birth.params.CellParams` in place (the idea of
vivarium's value modifiers). It never touches the kernels, and no caller ever branches on a
strategy id: :func:`apply` composes a portfolio, and every caller -- a run, attribution, sweeps,
portfolio search -- goes through it, so they cannot disagree.

* ``coverage`` -- float ``[n]``: share of the strategy's *eligible* population reached in each
  cell (after per-race reach).
* ``effects`` -- a mapping of evidence id to a scalar or a float ``[n]`` (one value per cell, so
  many uncertainty draws or sweep rows can be stacked as extra cells and evaluated at once).
* ``options`` -- the strategy's options (program, components, policy...).
* ``cells`` -- :class:`CellAttributes` of the same cells: who is eligible (e.g. the short-cervix
  share of progesterone-eligible births, whether the state had already expanded Medicaid that
  year) and the cell's race (for race-specific effects).

Overlapping strategies combine through the model (a smoker reached by cessation and by safe
sleep changes two exposures of one birth), never by adding effects.

=====================  ====================================================================
strategy               named quantities (evidence ids)
=====================  ====================================================================
safe_sleep             unsafe-sleep prevalence x (1 - c * safe_sleep_unsafe_reduction)
smoking_cessation      smokers who quit early: c * cessation_control_quit * (RR_program - 1)
                       of smokers become non-smokers (early quit ~ non-smoker, EVIDENCE.md)
preterm_prevention     hard_stop: elective early-term prevalence x (1 - c * hard_stop_eed_reduction);
                       vaginal_progesterone / ohpc: eligible births treated with probability c
                       (share of eligible in the component's subgroup); RISK ratios on the
                       treated subgroup's own P(GA < cut), cuts 28, 32, 34, 37 wk:
                       VAGINAL_PROGESTERONE_RR on short-cervix births (risk: SHORT_CERVIX_OR),
                       ohpc_ptb_rr (base: 1.0, no effect) or ohpc_meis_ptb_rr on prior-preterm
                       births
preconception_care     prevalence of IPI < 6 months (short_ipi, among all births) x
                       (1 - c * larc_short_ipi_reduction)
risk_appropriate_care  level III+ share of births < 32 wk: p + c * (1 - p)
social_determinants    low-income births reached with probability c; medicaid_expansion:
                       death risk x medicaid_expansion_death_rr (_hispanic, _nh_black by race),
                       no effect where the state had already expanded (cells.medicaid_expanded);
                       income_support: preterm odds x income_support_ptb_or (both ranges
                       include no effect)
=====================  ====================================================================
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from imsim.birth.kernels import (
    eligible_mixture,
    hash_rows,
    progesterone_shifts,
)
from imsim.birth.params import COND_EXPOSURES, CellParams, exposure_marginals
from imsim.core.constants import (
    PRETERM_DEFAULT_COMPONENTS,
    RACES,
    SD_POLICIES,
    SMOKING_PROGRAMS,
    STRATEGIES,
)

#: Evidence id of the relative quit rate of each smoking-cessation program.
SMOKING_PROGRAM_EFFECT = {
    "counselling": "cessation_counselling_rr",
    "incentives": "cessation_incentives_rr",
    "feedback": "cessation_feedback_rr",
    "education": "cessation_education_rr",
}

#: Race-specific evidence ids of the Medicaid-expansion effect (other races: the all-race id).
MEDICAID_RACE_EFFECT = {
    "nh_black": "medicaid_expansion_death_rr_nh_black",
    "hispanic": "medicaid_expansion_death_rr_hispanic",
}

Effects = Mapping[str, "float | np.ndarray"]


@dataclass
class CellAttributes:
    """Who a strategy can reach in each of ``n`` cells (eligibility, not parameters).

    Built for any cells by :meth:`imsim.inputs.baseline.Baseline.cell_attributes` (the one
    builder every caller uses).

    Attributes
    ----------
    short_cervix_share : numpy.ndarray
        float ``[n]``: share of progesterone-eligible births that are eligible through a short
        cervix (the rest through a prior spontaneous preterm birth).
    medicaid_expanded : numpy.ndarray, optional
        bool ``[n]``: the cell's state had already expanded Medicaid under the ACA in the cell's
        year (``states.csv``), so the ``medicaid_expansion`` policy is no longer a choice there
        and has no effect. Default: all False.
    race : numpy.ndarray, optional
        int ``[n]``: index of the cell's race/Hispanic origin in
        :data:`imsim.core.constants.RACES` (for race-specific effects); -1 = unknown (the
        all-race effect is used). Default: all -1.
    """

    short_cervix_share: np.ndarray
    medicaid_expanded: np.ndarray | None = None
    race: np.ndarray | None = None

    def __post_init__(self):
        n = int(np.shape(self.short_cervix_share)[0])
        if self.medicaid_expanded is None:
            self.medicaid_expanded = np.zeros(n, dtype=bool)
        if self.race is None:
            self.race = np.full(n, -1, dtype=np.int64)
        self.medicaid_expanded = np.asarray(self.medicaid_expanded, dtype=bool)
        self.race = np.asarray(self.race, dtype=np.int64)
        if self.medicaid_expanded.shape != (n,) or self.race.shape != (n,):
            raise ValueError("CellAttributes fields must all have one value per cell")

    @property
    def n(self) -> int:
        """Number of cells."""
        return int(self.short_cervix_share.shape[0])

    def key(self) -> np.ndarray:
        """Return the attributes as float ``[n, 3]`` columns, for merging identical cells.

        Two cells whose state, race, coverage and options agree may be evaluated once only if
        their attributes agree too (``medicaid_expanded`` differs between years of one state).
        """
        return np.column_stack([np.asarray(self.short_cervix_share, dtype=float),
                                self.medicaid_expanded.astype(float),
                                self.race.astype(float)])

    def take(self, idx) -> CellAttributes:
        """Return the attributes of the cells ``idx``.

        Parameters
        ----------
        idx : array_like of int or bool
            Cell indices (may repeat) or a boolean mask ``[n]``.

        Returns
        -------
        CellAttributes
            The selected cells, in ``idx`` order.
        """
        return CellAttributes(short_cervix_share=self.short_cervix_share[idx],
                              medicaid_expanded=self.medicaid_expanded[idx], race=self.race[idx])


def _col(x, n: int) -> np.ndarray:
    """A scalar or ``[n]`` array as a float ``[n]`` array (read-only view for scalars)."""
    return np.broadcast_to(np.asarray(x, dtype=float), (n,))


def safe_sleep(p: CellParams, c: np.ndarray, e: Effects, options: Mapping,
               cells: CellAttributes) -> None:
    """Lower unsafe-sleep prevalence among the births reached.

    Changes ``p_us`` (P(unsafe sleep | low income, smoking)) by the factor
    ``1 - c * safe_sleep_unsafe_reduction`` in every stratum. Reaches: all births (families
    counselled). Evidence: ``safe_sleep_unsafe_reduction``.
    """
    cut = 1.0 - _col(c, p.n) * _col(e["safe_sleep_unsafe_reduction"], p.n)
    p.p_us *= np.clip(cut, 0.0, 1.0)[:, None, None]


def smoking_cessation(p: CellParams, c: np.ndarray, e: Effects, options: Mapping,
                      cells: CellAttributes) -> None:
    """Turn some smokers into early quitters (counted as non-smokers).

    Changes ``p_exp[:, smoking, :]`` by the factor ``1 - c * q * (RR - 1)``, where ``q`` is the
    control-group quit rate and ``RR`` the program's relative quit rate. Reaches: births to
    smokers. Evidence: ``cessation_control_quit`` and ``cessation_<program>_rr`` (option
    ``program``: counselling, incentives, feedback or education).
    """
    program = options.get("program", SMOKING_PROGRAMS[0])
    rr = _col(e[SMOKING_PROGRAM_EFFECT[program]], p.n)
    extra_quit = np.clip(_col(e["cessation_control_quit"], p.n) * (rr - 1.0), 0.0, 1.0)
    k = COND_EXPOSURES.index("smoking")
    p.p_exp[:, k, :] *= np.clip(1.0 - _col(c, p.n) * extra_quit, 0.0, 1.0)[:, None]


#: Evidence ids of the short-cervix odds ratios of GA below the cuts 28, 32, 34 and 37 weeks.
SHORT_CERVIX_OR = ("short_cervix_ptb_lt28_or", "short_cervix_ptb_lt32_or",
                   "short_cervix_ptb_lt34_or", "short_cervix_ptb_lt37_or")
#: Evidence ids of vaginal progesterone's risk ratios at the cuts 28, 32, 34 and 37 weeks: the
#: reported thresholds <28, <33, <35 and <37 weeks (the nearest at or above each cut).
VAGINAL_PROGESTERONE_RR = ("vaginal_progesterone_ptb_lt28_rr", "vaginal_progesterone_ptb_rr",
                           "vaginal_progesterone_ptb_lt35_rr", "vaginal_progesterone_ptb_lt37_rr")
_N_PT = 4                     # the preterm cuts 28, 32, 34, 37 weeks (the 39-week cut is untouched)


def eligible_log_or(e: Effects, short_cervix_share, ref_cum) -> np.ndarray:
    """Return the log odds ratios ``[n, 5]`` of the progesterone-eligible exposure per GA cut.

    The exposure mixes births with a prior spontaneous preterm birth (``prior_preterm_ptb_or``,
    every preterm cut) and births with a short cervix (:data:`SHORT_CERVIX_OR`, one per cut) by
    their shares ``1 - s`` and ``s``: at the reference cumulative probability ``r`` of each cut,
    ``P = (1 - s) apply_or(r, OR_pp) + s apply_or(r, OR_sc)`` and the log odds ratio is
    ``logit(P) - logit(r)``. The 39-week cut gets 0.

    Parameters
    ----------
    e : mapping of str to float or numpy.ndarray
        Evidence values (scalars or float ``[n]``).
    short_cervix_share : array_like of float
        ``[n]``: share of eligible births with a short cervix.
    ref_cum : array_like of float
        ``[5]``: reference P(GA < cut) (the national cumulative distribution).

    Returns
    -------
    numpy.ndarray
        float ``[n, 5]``.
    """
    s = np.asarray(short_cervix_share, dtype=float)
    n = s.shape[0]
    r = np.asarray(ref_cum, dtype=float)[:_N_PT][None, :]
    or_pp = _col(e["prior_preterm_ptb_or"], n)[:, None]
    or_sc = np.stack([_col(e[k], n) for k in SHORT_CERVIX_OR], axis=1)
    mix = ((1.0 - s)[:, None] * or_pp * r / (1.0 - r + or_pp * r)
           + s[:, None] * or_sc * r / (1.0 - r + or_sc * r))
    out = np.zeros((n, 5))
    out[:, :_N_PT] = np.log(mix / (1.0 - mix)) - np.log(r / (1.0 - r))
    return out


def _eligible_mixture(p: CellParams):
    """Weights ``[n, 16]`` of the (smoking, short IPI, low income, SD reach) combinations among
    progesterone-eligible births, and their log odds of GA below the preterm cuts without the
    eligibility and treatment terms ``[n, 16, 4]`` (as the kernels draw them: every exposure
    given low income, SD reach only for low-income births)."""
    n = p.n
    w = np.empty((n, 16))
    eta0 = np.empty((n, 16, _N_PT))
    f = np.ascontiguousarray
    eligible_mixture(f(np.broadcast_to(p.p_li, (n,)), dtype=float), f(p.p_exp, dtype=float),
                     f(np.broadcast_to(p.p_sd, (n,)), dtype=float),
                     *(f(getattr(p, k)[:, :_N_PT], dtype=float)
                       for k in ("theta", "beta_smk", "beta_ipi", "beta_li", "beta_sd")), w, eta0)
    return w, eta0


def _progesterone_shifts(*inputs):
    """:func:`imsim.birth.kernels.progesterone_shifts` once per distinct row of its inputs.

    Stacked rows (sweep samples, uncertainty draws, portfolios) often give a cell the same
    progesterone inputs -- only the parameters of other strategies differ -- so rows are
    grouped by a hash of their input bits, the groups checked for exact equality, and each
    distinct row solved once. The result of a row does not depend on the others.
    """
    c_ = np.ascontiguousarray
    arrs = [c_(x, dtype=float) for x in inputs]
    n = arrs[0].shape[0]
    rep = None
    if n > 1:
        h = np.zeros(n, dtype=np.uint64)
        for x in arrs:
            hash_rows(x.reshape(n, -1), h)
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        if first.size < n and all(np.array_equal(x, x[first[inverse]]) for x in arrs):
            rep, inverse = first, inverse.ravel()
    if rep is not None:
        arrs = [x[rep] for x in arrs]
    new_pp = np.empty(arrs[8].shape)
    beta_t = np.empty(arrs[8].shape)
    progesterone_shifts(*arrs, new_pp, beta_t)
    if rep is not None:
        return new_pp[inverse], beta_t[inverse]
    return new_pp, beta_t


def _progesterone(p: CellParams, c: np.ndarray, e: Effects, options: Mapping,
                  cells: CellAttributes, comps) -> None:
    """Progesterone for eligible births (see :func:`preterm_prevention`)."""
    n = p.n
    s = np.clip(_col(cells.short_cervix_share, n), 0.0, 1.0)
    a = c * s if "vaginal_progesterone" in comps else np.zeros(n)          # treated, short cervix
    b = c * (1.0 - s) if "ohpc" in comps else np.zeros(n)                # treated, prior preterm
    q = np.clip(a + b, 0.0, 1.0)
    if not np.any(q > 0):
        return
    # One treatment indicator per birth: existing treatment (none in the baseline) is kept.
    p.p_prog = q.copy()
    p.beta_prog = np.zeros((n, 5))
    ohpc_id = "ohpc_meis_ptb_rr" if options.get("ohpc_effect", "none") == "meis" else "ohpc_ptb_rr"
    rr_v = np.stack([_col(e[k], n) for k in VAGINAL_PROGESTERONE_RR], axis=1)        # [n, 4]
    rr_o = np.repeat(_col(e[ohpc_id], n)[:, None], _N_PT, axis=1)                   # [n, 4]
    w, eta0 = _eligible_mixture(p)
    act = (((a > 0) & np.any(rr_v != 1.0, axis=1)) | ((b > 0) & np.any(rr_o != 1.0, axis=1))) \
        & (w.sum(axis=1) > 0)
    if not np.any(act):
        return                          # treated, with no effect on gestational age
    ix = np.flatnonzero(act)
    w, eta0, s, a, b, q = w[ix], eta0[ix], s[ix], a[ix], b[ix], q[ix]
    rr_v, rr_o = rr_v[ix], rr_o[ix]
    beta_pp = np.ascontiguousarray(p.beta_pp[ix, :_N_PT], dtype=float)
    # Cumulative P(GA < cut) of eligible births (A), of those with a short cervix (S, from their
    # own odds ratios) and, as the rest of the mix, of those with a prior preterm birth (P).
    # Risk ratios act on the treated births' own cumulative probability at each cut; the
    # untreated eligible births keep theirs (their mix now holds fewer treated subgroup births).
    # Both are solved back to log-odds shifts (imsim.birth.kernels.progesterone_shifts).
    log_or_sc = np.log(np.stack([_col(e[k], p.n)[ix] for k in SHORT_CERVIX_OR], axis=1))
    new_pp, beta_t = _progesterone_shifts(w, eta0, s, a, b, q, rr_v, rr_o, beta_pp, log_or_sc)
    if not p.beta_pp.flags.writeable:
        p.beta_pp = p.beta_pp.copy()
    p.beta_pp[ix, :_N_PT] = new_pp
    p.beta_prog[ix, :_N_PT] = beta_t - new_pp


def preterm_prevention(p: CellParams, c: np.ndarray, e: Effects, options: Mapping,
                       cells: CellAttributes) -> None:
    """Hard-stop policies against elective early-term delivery, and progesterone.

    * ``hard_stop``: changes ``p_exp[:, elective_early_term, :]`` by the factor
      ``1 - c * hard_stop_eed_reduction`` (reaches: every delivery in the state).
    * ``vaginal_progesterone`` / ``ohpc``: sets ``p_prog``, the probability that an eligible
      birth (prior spontaneous preterm birth or short cervix, one exposure) is treated: ``c`` x
      the share of eligible births in the components' subgroups -- short cervix for vaginal
      progesterone, prior preterm birth for 17-OHPC. The evidence is a RISK ratio at each
      threshold, acting on the treated subgroup's own cumulative probability of birth below each
      cut 28, 32, 34 and 37 weeks: vaginal progesterone :data:`VAGINAL_PROGESTERONE_RR`
      (reported thresholds <28, <33, <35, <37 weeks; each cut takes the nearest at or above it)
      on the short-cervix births' probability (their odds ratios :data:`SHORT_CERVIX_OR`, from
      a trial's placebo arm); 17-OHPC ``ohpc_ptb_rr`` (base case: no effect) or
      ``ohpc_meis_ptb_rr`` (option ``ohpc_effect: meis``) on the prior-preterm births'
      probability (the rest of the eligible mix) at every cut below 37 weeks. In log odds this
      sets ``beta_prog`` and re-solves ``beta_pp`` per cut, computed from the cell's parameters
      so that, over the cell's mix of other exposures among eligible births, the treated births'
      cumulative probability is the risk ratio times their subgroup's and the untreated eligible
      births keep theirs: births below each cut fall by exactly ``(1 - RR)`` x the reached
      births' expected number (later levers of a portfolio, e.g. preconception care, change the
      mix a little and make this approximate). A component without effect (17-OHPC base case)
      treats births and changes no probability.
    """
    comps = options.get("components", PRETERM_DEFAULT_COMPONENTS)
    n = p.n
    c = _col(c, n)
    if "hard_stop" in comps:
        k = COND_EXPOSURES.index("elective_early_term")
        cut = 1.0 - c * _col(e["hard_stop_eed_reduction"], n)
        p.p_exp[:, k, :] *= np.clip(cut, 0.0, 1.0)[:, None]
    _progesterone(p, c, e, options, cells, comps)


def preconception_care(p: CellParams, c: np.ndarray, e: Effects, options: Mapping,
                       cells: CellAttributes) -> None:
    """Fewer short interpregnancy intervals (postpartum contraception access).

    Changes ``p_exp[:, short_ipi, :]`` -- the probability that a birth was conceived less than
    6 months after a previous live birth (the interval ``short_ipi_ptb_or`` was estimated for) --
    by the factor ``1 - c * larc_short_ipi_reduction``. Reaches: all births (postpartum women).
    Evidence: ``larc_short_ipi_reduction`` (measured for intervals under 18 months; assumed to
    hold under 6 months, see evidence.csv).
    """
    k = COND_EXPOSURES.index("short_ipi")
    cut = 1.0 - _col(c, p.n) * _col(e["larc_short_ipi_reduction"], p.n)
    p.p_exp[:, k, :] *= np.clip(cut, 0.0, 1.0)[:, None]


def risk_appropriate_care(p: CellParams, c: np.ndarray, e: Effects, options: Mapping,
                          cells: CellAttributes) -> None:
    """More very preterm births delivered at a level III+ hospital.

    Changes ``p_l3`` (P(level III+ | GA < 32 weeks)) to ``p + c * (1 - p)``. Reaches: births under
    32 weeks. The gain in survival comes from ``nonlevel3_neonatal_or`` (in the baseline).
    """
    p.p_l3 = np.clip(p.p_l3 + _col(c, p.n) * (1.0 - p.p_l3), 0.0, 1.0)


def medicaid_expansion_rr(e: Effects, cells: CellAttributes, n: int) -> np.ndarray:
    """Return the per-cell risk ratio of Medicaid expansion on the death hazards.

    ``medicaid_expansion_death_rr_<race>`` for the races of :data:`MEDICAID_RACE_EFFECT` (where
    the mapping ``e`` has that id), ``medicaid_expansion_death_rr`` for every other cell.

    Parameters
    ----------
    e : mapping of str to float or numpy.ndarray
        Evidence values (scalars or float ``[n]``).
    cells : CellAttributes
        The ``n`` cells (their ``race``).
    n : int
        Number of cells.

    Returns
    -------
    numpy.ndarray
        float ``[n]`` (a new array).
    """
    rr = _col(e["medicaid_expansion_death_rr"], n).copy()
    for race, effect_id in MEDICAID_RACE_EFFECT.items():
        sel = cells.race == RACES.index(race)
        if effect_id in e and np.any(sel):
            rr[sel] = _col(e[effect_id], n)[sel]
    return rr


def social_determinants(p: CellParams, c: np.ndarray, e: Effects, options: Mapping,
                        cells: CellAttributes) -> None:
    """Reach low-income births with Medicaid expansion or income support.

    Sets ``p_sd`` (P(reached | low income)) to ``c`` and the effect on the births reached:
    ``medicaid_expansion`` -- ``rr_sd_death`` = the race-specific Medicaid-expansion risk ratio
    (:func:`medicaid_expansion_rr`) on every death cause, and *no effect* (``p_sd`` = 0,
    ``rr_sd_death`` = 1, i.e. coverage treated as 0) in cells whose state had already expanded
    Medicaid by the cell's year (``cells.medicaid_expanded``): expansion is no longer a choice
    there; ``income_support`` -- ``beta_sd`` = log ``income_support_ptb_or`` on the preterm cuts
    (below 37 weeks), in every state. Both effects' ranges include no effect. Option ``policy``.
    """
    n = p.n
    p.p_sd = np.clip(_col(c, n), 0.0, 1.0).copy()
    if options.get("policy", SD_POLICIES[0]) == "medicaid_expansion":
        done = np.asarray(cells.medicaid_expanded, dtype=bool)
        p.p_sd[done] = 0.0
        p.rr_sd_death = np.where(done, 1.0, medicaid_expansion_rr(e, cells, n))
        p.beta_sd = np.zeros((n, 5))
    else:
        p.rr_sd_death = np.ones(n)
        beta = np.zeros((n, 5))
        beta[:, :4] = np.log(_col(e["income_support_ptb_or"], n))[:, None]
        p.beta_sd = beta


Strategy = Callable[[CellParams, np.ndarray, Effects, Mapping, CellAttributes], None]

#: The six strategies, by id, in :data:`imsim.core.constants.STRATEGIES` order.
LEVERS: dict[str, Strategy] = {
    "safe_sleep": safe_sleep,
    "smoking_cessation": smoking_cessation,
    "preterm_prevention": preterm_prevention,
    "preconception_care": preconception_care,
    "risk_appropriate_care": risk_appropriate_care,
    "social_determinants": social_determinants,
}
if tuple(LEVERS) != tuple(STRATEGIES) or set(SMOKING_PROGRAM_EFFECT) != set(SMOKING_PROGRAMS):
    raise ImportError("strategy or program lists out of step with imsim.core.constants")


@dataclass(frozen=True)
class ExposureChange:
    """A counterfactual prevalence of one exposure in some cells (scenario ``exposures:``).

    ``mask`` is bool ``[n]``; exactly one of ``scale`` (multiply the prevalence) or ``set_to``
    (the new marginal prevalence) is given.
    """

    exposure: str
    mask: np.ndarray
    scale: float | None = None
    set_to: float | None = None

    def take(self, idx) -> ExposureChange:
        """Return the same change over the cells ``idx`` (the mask indexed by ``idx``).

        Parameters
        ----------
        idx : array_like of int or bool
            Cell indices (may repeat) or a boolean mask ``[n]``.

        Returns
        -------
        ExposureChange
            The change with ``mask[idx]``.
        """
        return ExposureChange(self.exposure, self.mask[idx], self.scale, self.set_to)


@dataclass
class Levers:
    """A portfolio over ``n`` cells: what each strategy reaches and with which options.

    Attributes
    ----------
    coverage : dict of str to numpy.ndarray
        Strategy id -> float ``[n]`` coverage (0 where the strategy is not used).
    option_index : dict of str to numpy.ndarray
        Strategy id -> int ``[n]``: index into ``options[strategy]`` of each cell's options.
    options : dict of str to list of dict
        Strategy id -> the distinct option sets used.
    cells : CellAttributes
        Eligibility attributes of the cells.
    exposures : list of ExposureChange
        Counterfactual exposure changes (applied before the strategies).
    """

    coverage: dict[str, np.ndarray]
    option_index: dict[str, np.ndarray]
    options: dict[str, list[dict]]
    cells: CellAttributes
    exposures: list[ExposureChange] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of cells."""
        return self.cells.n

    @classmethod
    def from_cells(cls, coverage: Mapping[str, np.ndarray], cell_options: Sequence[Mapping],
                   cells: CellAttributes, exposures: Sequence[ExposureChange] = ()) -> Levers:
        """Build levers from per-cell option dicts, grouping equal option sets.

        Parameters
        ----------
        coverage : mapping of str to numpy.ndarray
            Strategy id -> float ``[n]`` coverage (a share of the eligible, 0..1); missing
            strategies get 0.
        cell_options : sequence of mapping
            ``[n]`` per-cell mappings ``cell_options[i][strategy] -> options dict``; a strategy
            absent from a cell's mapping gets option set 0.
        cells : CellAttributes
            Eligibility attributes of the ``n`` cells.
        exposures : sequence of ExposureChange
            Counterfactual exposure changes over the same cells.

        Returns
        -------
        Levers
            The portfolio over the ``n`` cells.
        """
        n = cells.n
        cov, idx, opts = {}, {}, {}
        for k in STRATEGIES:
            cov[k] = np.asarray(coverage.get(k, np.zeros(n)), dtype=float)
            distinct: dict[str, int] = {}
            values: list[dict] = []
            ix = np.zeros(n, dtype=np.int64)
            for i, o in enumerate(cell_options):
                if k not in o:
                    continue
                key = repr(sorted(o[k].items()))
                if key not in distinct:
                    distinct[key] = len(values)
                    values.append(dict(o[k]))
                ix[i] = distinct[key]
            if not values:
                values.append({})
            idx[k], opts[k] = ix, values
        return cls(cov, idx, opts, cells, list(exposures))

    @classmethod
    def uniform(cls, coverage: Mapping[str, np.ndarray], options: Mapping[str, Mapping],
                cells: CellAttributes) -> Levers:
        """Build levers with one option set per strategy for every cell (no exposure changes).

        Parameters
        ----------
        coverage : mapping of str to numpy.ndarray
            Strategy id -> float ``[n]`` coverage (0..1); missing strategies get 0.
        options : mapping of str to mapping
            Strategy id -> its options (missing: ``{}``, the defaults).
        cells : CellAttributes
            Eligibility attributes of the ``n`` cells.

        Returns
        -------
        Levers
            The portfolio over the ``n`` cells.
        """
        n = cells.n
        cov = {k: np.asarray(coverage.get(k, np.zeros(n)), dtype=float) for k in STRATEGIES}
        return cls(cov, {k: np.zeros(n, dtype=np.int64) for k in STRATEGIES},
                   {k: [dict(options.get(k, {}))] for k in STRATEGIES}, cells)

    def take(self, idx) -> Levers:
        """Return the levers of the cells ``idx`` (indices may repeat: stacked copies).

        Parameters
        ----------
        idx : array_like of int or bool
            Cell indices or a boolean mask ``[n]``.

        Returns
        -------
        Levers
            Coverage, option indices, attributes and exposure masks of the selected cells (the
            option sets themselves are shared).
        """
        return Levers({k: v[idx] for k, v in self.coverage.items()},
                      {k: v[idx] for k, v in self.option_index.items()},
                      self.options, self.cells.take(idx),
                      [x.take(idx) for x in self.exposures])

    def with_coverage(self, strategy: str, coverage: np.ndarray) -> Levers:
        """Return a copy with one strategy's coverage replaced (other fields shared).

        Parameters
        ----------
        strategy : str
            A strategy id of :data:`imsim.core.constants.STRATEGIES`.
        coverage : array_like of float
            ``[n]`` (or a scalar) coverage, 0..1.

        Returns
        -------
        Levers
            The new levers.
        """
        cov = dict(self.coverage)
        cov[strategy] = np.asarray(coverage, dtype=float)
        return Levers(cov, self.option_index, self.options, self.cells, self.exposures)

    def active(self) -> list[str]:
        """Return the strategies with coverage above 0 in some cell, in STRATEGIES order."""
        return [k for k in STRATEGIES if np.any(self.coverage[k] > 0)]


def _take_effects(effects: Effects, idx, n: int) -> dict:
    return {k: (v[idx] if np.ndim(v) and np.shape(v)[0] == n else v) for k, v in effects.items()}


def apply(params: CellParams, levers: Levers, effects: Effects,
          strategies: set[str] | None = None, exposures: bool = True) -> CellParams:
    """Apply a portfolio to ``params`` in place and return it.

    Parameters
    ----------
    params : CellParams
        Parameters of ``n`` cells (edited in place: pass a copy of the baseline).
    levers : Levers
        The portfolio over the same ``n`` cells.
    effects : mapping of str to float or numpy.ndarray
        Evidence values: scalars, or float ``[n]`` arrays (one value per cell).
    strategies : set of str, optional
        Apply only these strategies (attribution); default all with coverage.
    exposures : bool
        Apply the counterfactual exposure changes first (default True).

    Returns
    -------
    CellParams
        ``params``, edited.
    """
    n = params.n
    if exposures:
        for ch in levers.exposures:
            apply_exposure_change(params, ch.exposure, ch.mask, scale=ch.scale, set_to=ch.set_to)
    for k, lever in LEVERS.items():
        if strategies is not None and k not in strategies:
            continue
        cov = levers.coverage[k]
        on = cov > 0
        if not np.any(on):
            continue
        ix = levers.option_index[k]
        for g, opts in enumerate(levers.options[k]):
            sel = on & (ix == g)
            if not np.any(sel):
                continue
            if sel.all():                       # every cell: edit in place, no copies
                lever(params, cov, effects, opts, levers.cells)
                continue
            idx = np.flatnonzero(sel)
            sub = params.take(idx)
            lever(sub, cov[idx], _take_effects(effects, idx, n), opts, levers.cells.take(idx))
            params.put(idx, sub)
    return params


def scenario_arm(base: CellParams, levers: Levers, effects: Effects,
                 strategies: set[str] | None = None, exposures: bool = True) -> CellParams:
    """Return the scenario arm: a copy of ``base`` with the portfolio applied.

    Parameters
    ----------
    base : CellParams
        Baseline parameters of ``n`` cells (not modified).
    levers : Levers
        The portfolio over the same ``n`` cells.
    effects : mapping of str to float or numpy.ndarray
        Evidence values: scalars, or float ``[n]`` arrays.
    strategies : set of str, optional
        Apply only these strategies; default all with coverage.
    exposures : bool
        Apply the counterfactual exposure changes first.

    Returns
    -------
    CellParams
        A new object; see :func:`apply`.
    """
    return apply(base.copy(), levers, effects, strategies=strategies, exposures=exposures)


def apply_exposure_change(p: CellParams, exposure: str, mask, scale=None, set_to=None) -> None:
    """Change the prevalence of one exposure in the cells of ``mask``, in place.

    Either scale it, or set its marginal. Conditional probabilities are scaled together (by one
    factor per cell, clipped to [0, 1]), so the clustering of exposures is kept.

    Parameters
    ----------
    p : CellParams
        Parameters of ``n`` cells (edited in place).
    exposure : str
        One of :data:`imsim.core.constants.EXPOSURES`.
    mask : array_like of bool
        ``[n]``: the cells to change.
    scale : float, optional
        Multiply the prevalence by this factor.
    set_to : float or array_like of float, optional
        The new marginal prevalence (probability); used instead of ``scale`` when given. Where
        the current prevalence is 0 it cannot be raised, and the cell is left unchanged.
    """
    mask = np.asarray(mask, dtype=bool)
    if set_to is not None:
        current = exposure_marginals(p)[exposure]
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(current > 0, set_to / current, 0.0)
        if exposure != "low_income" and np.any(mask & (current <= 0) & (set_to > 0)):
            factor = np.where(current > 0, factor, 1.0)
    else:
        factor = np.full(p.n, float(scale))
    factor = np.where(mask, factor, 1.0)
    if exposure == "low_income":
        p.p_li = np.clip(p.p_li * factor, 0.0, 1.0)
    elif exposure == "unsafe_sleep":
        p.p_us = np.clip(p.p_us * factor[:, None, None], 0.0, 1.0)
    else:
        k = COND_EXPOSURES.index(exposure)
        p.p_exp[:, k, :] = np.clip(p.p_exp[:, k, :] * factor[:, None], 0.0, 1.0)
