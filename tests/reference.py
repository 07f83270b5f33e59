"""A slow, independent NumPy version of the birth model, for kernel-vs-reference tests.

It works from the *named* parameters (:class:`imsim.birth.params.CellParams`), never from the kernel
tables of :func:`imsim.birth.params.build_tables`, and re-derives every step from the model definition
(DESIGN.md "The model of one birth", :mod:`imsim.birth.params` docstring):

* Philox4x32 written again with any number of rounds, vectorised over births with uint64
  arithmetic (checked against the Random123 known-answer vectors for 7 and 10 rounds in
  ``test_kernels.py``); the microsim draws with Philox4x32-7;
* the draws of birth ``b`` of a cell: counter ``(b, cell uid, block, replicate)``, key ``(seed low
  32 bits, seed high 32 bits)``; block 0 -> low income, smoking, prior preterm, short IPI; block 1
  -> elective early term, unsafe sleep, gestational age, death; block 2 -> progesterone, social
  determinants reach, level III+; uniform ``(x + 0.5) / 2**32``, event when ``u < p``;
* exposures, treatments, the cumulative-logit GA band, the elective early-term relabel (a would-be
  39+ birth delivered at 37-38 weeks: counted in the 37-38 band, but dying with the 39+ band's
  probabilities, every cause's risk times ``rr_eet_death``), level III+ for births under 32
  weeks, and competing-cause death (neonatal, then SUID, then other postneonatal) from
  odds-ratio-adjusted probabilities.

:func:`simulate_counts` gives the microsim counts of every cell on the same draws as the kernel;
:func:`expected_counts` enumerates every exposure/treatment combination by brute force.
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy.special import expit

from imsim.birth.kernels import N_OUT, OUT_DEATHS
from imsim.birth.params import apply_or

N_BANDS = 6
# Output columns, restated from the kernels module docstring.
COL = {"li": 24, "smk": 25, "pp": 26, "ipi": 27, "eet": 28, "us": 29, "prog": 30, "sd": 31,
       "lt32": 32, "l3": 33}

_MASK32 = np.uint64(0xFFFFFFFF)
_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (np.uint64(0x9E3779B9), np.uint64(0xBB67AE85))


def _mulhilo(a, b):
    prod = a * b                              # < 2**64: exact in uint64
    return prod >> np.uint64(32), prod & _MASK32


#: Rounds of the microsim's generator (Philox4x32-7), restated from the kernels module docstring.
ROUNDS = 7


def philox4x32(ctr, key, rounds):
    """Philox4x32 with ``rounds`` rounds over arrays: ``ctr`` 4 arrays, ``key`` 2 arrays (32-bit
    values).

    Returns the four output words as uint64 arrays (Salmon et al. 2011, Random123 ``philox.h``:
    the key is bumped by the Weyl constants before every round but the first).
    """
    x = [np.asarray(c, dtype=np.uint64) & _MASK32 for c in ctr]
    x = list(np.broadcast_arrays(*x))
    k = [np.asarray(kk, dtype=np.uint64) & _MASK32 for kk in key]
    for rnd in range(rounds):
        if rnd > 0:                                    # bump the key before rounds 2..10
            k = [(k[0] + _PHILOX_W[0]) & _MASK32, (k[1] + _PHILOX_W[1]) & _MASK32]
        hi0, lo0 = _mulhilo(_PHILOX_M[0], x[0])
        hi1, lo1 = _mulhilo(_PHILOX_M[1], x[2])
        x = [hi1 ^ x[1] ^ k[0], lo1, hi0 ^ x[3] ^ k[1], lo0]
    return x


def philox4x32_10(ctr, key):
    """Philox4x32-10, the Random123 default (the known-answer vectors' reference)."""
    return philox4x32(ctr, key, 10)


def philox4x32_7(ctr, key):
    """Philox4x32-7, the microsim's generator."""
    return philox4x32(ctr, key, ROUNDS)


def uniforms(n_births, uid, block, seed, replicate):
    """The four uniforms of ``block`` for births ``0 .. n_births-1`` of the cell ``uid``."""
    seed = int(seed)
    b = np.arange(n_births, dtype=np.uint64)
    words = philox4x32_7(
        (b, np.uint64(uid), np.uint64(block), np.uint64(replicate)),
        (np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)))
    return [(w.astype(np.float64) + 0.5) / 2.0**32 for w in words]


def _or_pow(odds_ratio, flag):
    """``odds_ratio ** flag`` for a 0/1 flag array."""
    return np.where(flag == 1, odds_ratio, 1.0)


def ga_cumulative(p, c, smk, pp, ipi, li, prog, sd):
    """[m, 5] P(GA < cut_k) of births with the given 0/1 exposure arrays in cell ``c``."""
    eta = (p.theta[c][None, :]
           + smk[:, None] * p.beta_smk[c][None, :]
           + pp[:, None] * p.beta_pp[c][None, :]
           + ipi[:, None] * p.beta_ipi[c][None, :]
           + li[:, None] * p.beta_li[c][None, :]
           + prog[:, None] * p.beta_prog[c][None, :]
           + sd[:, None] * p.beta_sd[c][None, :])
    return np.maximum.accumulate(expit(eta), axis=1)     # a cumulative probability never falls


def death_probabilities(p, c, band, nonl3, smk, us, li, sd, eet=0):
    """Per-cause conditional death probabilities (neonatal; SUID | survived neonatal; other |
    survived both) of births with GA ``band`` etc. in cell ``c``; ``eet`` (0/1) marks elective
    early-term births, which take the 39+ band's probabilities times ``rr_eet_death``."""
    eet = np.asarray(eet)
    band = np.where(eet == 1, N_BANDS - 1, band)
    rr_sd = _or_pow(p.rr_sd_death[c], sd) * _or_pow(p.rr_eet_death[c], eet)
    rr_neo = rr_sd * _or_pow(p.rr_smk_neo[c], smk * (band >= 4))     # smoking, term births only
    p_neo = np.minimum(apply_or(p.q_neo[c][band], _or_pow(p.or_nonl3[c], nonl3 * (band < 2)))
                       * rr_neo, 0.999)
    or_suid = _or_pow(p.or_us_suid[c], us) * _or_pow(p.or_us_smk[c], us * smk)
    rr_suid = _or_pow(p.rr_smk_suid[c], smk) * _or_pow(p.rr_li_pn[c], li) * rr_sd
    p_suid = np.minimum(apply_or(p.q_suid[c][band], or_suid) * rr_suid, 0.999)
    p_oth = np.minimum(p.q_oth[c][band] * _or_pow(p.rr_li_pn[c], li) * rr_sd, 0.999)
    return p_neo, p_suid, p_oth


def simulate_cell(p, c, seed, replicate=0):
    """Per-birth outcomes of cell ``c``: a dict of int arrays (band, cause: -1 alive, 0..2)."""
    n = int(p.births[c])
    uid = p.uid[c]
    u_li, u_smk, u_pp, u_ipi = uniforms(n, uid, 0, seed, replicate)
    u_eet, u_us, u_ga, u_death = uniforms(n, uid, 1, seed, replicate)
    u_prog, u_sd, u_l3, _ = uniforms(n, uid, 2, seed, replicate)

    li = (u_li < p.p_li[c]).astype(np.int64)
    pe = p.p_exp[c]
    smk = (u_smk < pe[0][li]).astype(np.int64)
    pp = (u_pp < pe[1][li]).astype(np.int64)
    ipi = (u_ipi < pe[2][li]).astype(np.int64)
    eet = (u_eet < pe[3][li]).astype(np.int64)
    us = (u_us < p.p_us[c][li, smk]).astype(np.int64)
    prog = ((pp == 1) & (u_prog < p.p_prog[c])).astype(np.int64)
    sd = ((li == 1) & (u_sd < p.p_sd[c])).astype(np.int64)

    cum = ga_cumulative(p, c, smk, pp, ipi, li, prog, sd)
    band = (u_ga[:, None] >= cum).sum(axis=1)
    elective = ((eet == 1) & (band == N_BANDS - 1)).astype(np.int64)  # a 39+ birth delivered early
    band = np.where(elective == 1, N_BANDS - 2, band)                  # counted at 37-38 weeks
    lt32 = band < 2
    l3 = (lt32 & (u_l3 < p.p_l3[c])).astype(np.int64)
    nonl3 = (lt32 & (l3 == 0)).astype(np.int64)

    p_neo, p_suid, p_oth = death_probabilities(p, c, band, nonl3, smk, us, li, sd, elective)
    # One uniform, inverse CDF over the competing outcomes (neonatal, SUID, other, survive).
    t_neo = p_neo
    t_suid = t_neo + (1.0 - p_neo) * p_suid
    t_oth = t_suid + (1.0 - p_neo) * (1.0 - p_suid) * p_oth
    cause = np.full(n, -1)
    cause = np.where(u_death < t_oth, 2, cause)
    cause = np.where(u_death < t_suid, 1, cause)
    cause = np.where(u_death < t_neo, 0, cause)
    return dict(li=li, smk=smk, pp=pp, ipi=ipi, eet=eet, us=us, prog=prog, sd=sd, band=band,
                lt32=lt32.astype(np.int64), l3=l3, cause=cause)


def counts_from_births(b) -> np.ndarray:
    """Aggregate per-birth outcomes into one row of kernel output columns."""
    row = np.zeros(N_OUT, dtype=np.int64)
    row[:N_BANDS] = np.bincount(b["band"], minlength=N_BANDS)
    dead = b["cause"] >= 0
    idx = OUT_DEATHS + N_BANDS * b["cause"][dead] + b["band"][dead]
    row += np.bincount(idx, minlength=N_OUT)
    for name, col in COL.items():
        row[col] = int(b[name].sum())
    return row


def simulate_counts(p, seed, replicate=0) -> np.ndarray:
    """Microsim counts int64 [n_cells, N_OUT] on the kernel's draws."""
    return np.stack([counts_from_births(simulate_cell(p, c, seed, replicate))
                     for c in range(p.n)])


def expected_counts(p) -> np.ndarray:
    """Exact expected counts float64 [n_cells, N_OUT] by brute-force enumeration.

    Sums over all 2**8 combinations of (low income, smoking, prior preterm, short IPI, elective
    early term, unsafe sleep, progesterone, social-determinants reach), the six GA bands and,
    under 32 weeks, the level of the delivery hospital.
    """
    out = np.zeros((p.n, N_OUT))
    for c in range(p.n):
        acc = np.zeros(N_OUT)
        pe = p.p_exp[c]
        for li, smk, pp, ipi, eet, us, prog, sd in itertools.product((0, 1), repeat=8):
            def bern(prob, x):
                return prob if x else 1.0 - prob
            w = (bern(p.p_li[c], li) * bern(pe[0, li], smk) * bern(pe[1, li], pp)
                 * bern(pe[2, li], ipi) * bern(pe[3, li], eet) * bern(p.p_us[c, li, smk], us)
                 * bern(p.p_prog[c] if pp else 0.0, prog) * bern(p.p_sd[c] if li else 0.0, sd))
            if w == 0.0:
                continue
            one = np.ones(1, dtype=np.int64)
            cum = ga_cumulative(p, c, smk * one, pp * one, ipi * one, li * one, prog * one,
                                sd * one)[0]
            band_p = np.diff(np.concatenate([[0.0], cum, [1.0]]))
            # (band, elective, probability): an elective birth is a would-be 39+ birth
            # delivered at 37-38 weeks.
            outcomes = [(b, 0, band_p[b]) for b in range(N_BANDS - 1)]
            if eet:
                outcomes.append((N_BANDS - 2, 1, band_p[N_BANDS - 1]))
            else:
                outcomes.append((N_BANDS - 1, 0, band_p[N_BANDS - 1]))
            for band, elective, pb in outcomes:
                wb = w * pb
                acc[band] += wb
                levels = ((0, p.p_l3[c]), (1, 1.0 - p.p_l3[c])) if band < 2 else ((0, 1.0),)
                for nonl3, w_l in levels:
                    pn, ps, po = (float(np.squeeze(v)) for v in death_probabilities(
                        p, c, np.array(band), np.array(nonl3), np.array(smk), np.array(us),
                        np.array(li), np.array(sd), np.array(elective)))
                    acc[OUT_DEATHS + band] += wb * w_l * pn
                    acc[OUT_DEATHS + N_BANDS + band] += wb * w_l * (1 - pn) * ps
                    acc[OUT_DEATHS + 2 * N_BANDS + band] += wb * w_l * (1 - pn) * (1 - ps) * po
                if band < 2:
                    acc[COL["lt32"]] += wb
                    acc[COL["l3"]] += wb * p.p_l3[c]
            for name, x in (("li", li), ("smk", smk), ("pp", pp), ("ipi", ipi), ("eet", eet),
                            ("us", us), ("prog", prog), ("sd", sd)):
                acc[COL[name]] += w * x
        out[c] = acc * p.births[c]
    return out
