"""The six strategy levers: coverage x efficacy onto named model quantities.

Each lever takes the baseline :class:`imsim.birth.params.CellParams` of the scenario arm, the coverage of
each cell (share of the *eligible* population reached, after per-race reach) and the effect
values, and edits named quantities in place. None of them touches the kernels; overlapping
strategies combine through the model (a smoker reached by cessation and by safe sleep changes
two exposures of one birth), never by adding effects.

=====================  ====================================================================
strategy               named quantities (evidence ids)
=====================  ====================================================================
safe_sleep             unsafe-sleep prevalence x (1 - c * safe_sleep_unsafe_reduction)
smoking_cessation      smokers who quit early: c * cessation_control_quit * (RR_program - 1)
                       of smokers become non-smokers (early quit ~ non-smoker, EVIDENCE.md)
preterm_prevention     hard_stop: elective early-term prevalence x (1 - c * hard_stop_eed_reduction);
                       vaginal_progesterone / ohpc: eligible births treated with probability c
                       (share of eligible in the component's subgroup), GA odds ratio
                       vaginal_progesterone_ptb_rr on cuts < 34 wk, ohpc_ptb_rr (base: 1.0,
                       no effect) or ohpc_meis_ptb_rr on cuts < 37 wk
preconception_care     short-IPI prevalence x (1 - c * larc_short_ipi_reduction)
risk_appropriate_care  level III+ share of births < 32 wk: p + c * (1 - p)
social_determinants    low-income births reached with probability c; medicaid_expansion:
                       death odds x medicaid_expansion_death_rr; income_support: preterm odds x
                       income_support_ptb_or (both ranges include no effect)
=====================  ====================================================================
"""
from __future__ import annotations

import numpy as np

from imsim.birth.params import CellParams

SMOKING_PROGRAM_EFFECT = {
    "counselling": "cessation_counselling_rr",
    "incentives": "cessation_incentives_rr",
    "feedback": "cessation_feedback_rr",
    "education": "cessation_education_rr",
}


def _col(x, n):
    return np.broadcast_to(np.asarray(x, dtype=float), (n,))


def safe_sleep(p: CellParams, c, e, options=None) -> None:
    cut = 1.0 - _col(c, p.n) * e["safe_sleep_unsafe_reduction"]
    p.p_us *= np.clip(cut, 0.0, 1.0)[:, None, None]


def smoking_cessation(p: CellParams, c, e, options=None) -> None:
    program = (options or {}).get("program", "counselling")
    rr = e[SMOKING_PROGRAM_EFFECT[program]]
    extra_quit = np.clip(e["cessation_control_quit"] * (rr - 1.0), 0.0, 1.0)
    p.p_exp[:, 0, :] *= np.clip(1.0 - _col(c, p.n) * extra_quit, 0.0, 1.0)[:, None]


def preterm_prevention(p: CellParams, c, e, options=None, short_cervix_share=None) -> None:
    options = options or {}
    comps = options.get("components", ["hard_stop", "vaginal_progesterone"])
    c = _col(c, p.n)
    if "hard_stop" in comps:
        p.p_exp[:, 3, :] *= np.clip(1.0 - c * e["hard_stop_eed_reduction"], 0.0, 1.0)[:, None]
    s = np.broadcast_to(np.asarray(short_cervix_share if short_cervix_share is not None else 0.0,
                                   dtype=float), (p.n,))
    w_vag = s if "vaginal_progesterone" in comps else np.zeros(p.n)
    w_ohpc = (1.0 - s) if "ohpc" in comps else np.zeros(p.n)
    reached = w_vag + w_ohpc
    if not np.any(reached > 0):
        return
    ohpc_id = "ohpc_meis_ptb_rr" if options.get("ohpc_effect", "none") == "meis" else "ohpc_ptb_rr"
    with np.errstate(invalid="ignore", divide="ignore"):
        f_vag = np.where(reached > 0, w_vag / reached, 0.0)
    f_ohpc = np.where(reached > 0, 1.0 - f_vag, 0.0)
    beta = np.zeros((p.n, 5))
    beta[:, :3] += (f_vag * np.log(e["vaginal_progesterone_ptb_rr"]))[:, None]
    beta[:, :4] += (f_ohpc * np.log(e[ohpc_id]))[:, None]
    # One treatment indicator per birth: existing treatment (none in the baseline) is kept.
    p.p_prog = np.clip(c * reached, 0.0, 1.0)
    p.beta_prog = beta


def preconception_care(p: CellParams, c, e, options=None) -> None:
    p.p_exp[:, 2, :] *= np.clip(1.0 - _col(c, p.n) * e["larc_short_ipi_reduction"], 0.0, 1.0)[:, None]


def risk_appropriate_care(p: CellParams, c, e, options=None) -> None:
    p.p_l3 = np.clip(p.p_l3 + _col(c, p.n) * (1.0 - p.p_l3), 0.0, 1.0)


def social_determinants(p: CellParams, c, e, options=None) -> None:
    policy = (options or {}).get("policy", "medicaid_expansion")
    p.p_sd = np.clip(_col(c, p.n), 0.0, 1.0).copy()
    if policy == "medicaid_expansion":
        p.rr_sd_death = np.full(p.n, e["medicaid_expansion_death_rr"])
        p.beta_sd = np.zeros((p.n, 5))
    else:
        p.rr_sd_death = np.ones(p.n)
        beta = np.zeros((p.n, 5))
        beta[:, :4] = np.log(e["income_support_ptb_or"])
        p.beta_sd = beta


LEVERS = {
    "safe_sleep": safe_sleep,
    "smoking_cessation": smoking_cessation,
    "preterm_prevention": preterm_prevention,
    "preconception_care": preconception_care,
    "risk_appropriate_care": risk_appropriate_care,
    "social_determinants": social_determinants,
}


def apply_exposure_change(p: CellParams, exposure: str, mask, scale=None, set_to=None) -> None:
    """Counterfactual prevalence for the cells in ``mask``: scale it, or set its marginal.

    Conditional probabilities are scaled together, so the clustering of exposures is kept.
    """
    from imsim.birth.params import COND_EXPOSURES, exposure_marginals

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
