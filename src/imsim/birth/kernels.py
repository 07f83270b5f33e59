"""Numba kernels: the only place where births are simulated or summed over.

Both engines read the same per-cell *tables* (built in :mod:`imsim.birth.params` from named
parameters), so they evaluate one model:

* :func:`expected_counts` sums over every exposure combination and gestational-age band in closed
  form (deterministic, exact expectations);
* :func:`simulate_counts` draws every birth.

Why a counter-based generator
-----------------------------
A microsimulation compares two worlds, baseline and scenario. If each birth's random draws depend
on how many draws came before it (a sequential generator), switching a strategy on in one state
re-deals the cards for every later birth and the comparison drowns in noise. Here every draw is a
pure function ``philox(seed, replicate, stream, birth uid)``: a birth meets the same luck in both
worlds, so it dies in both or neither unless its own parameters changed (common random numbers by
construction). The same property makes results identical for any thread count or chunking, and
means no per-birth array is ever stored.

Streams (Philox counter word ``c2``): block 0 carries the low-income, smoking, prior-preterm and
short-IPI draws; block 1 the elective-early-term, unsafe-sleep, gestational-age and death draws;
block 2 (drawn only when needed) progesterone treatment, social-determinants reach and level III+
delivery. A uniform is ``(x + 0.5) / 2**32`` for a 32-bit word ``x``; an event with probability
``p`` happens when ``u < p``.

Array conventions (``n`` cells):

* ``p_li[n]``: P(low income).
* ``p_exp[n, 4, 2]``: P(exposure | low income) for exposures ``smoking, prior_preterm, short_ipi,
  elective_early_term`` (axis 1) and low income 0/1 (axis 2).
* ``p_us[n, 2, 2]``: P(unsafe sleep | low income, smoking).
* ``p_prog[n]``: P(progesterone | eligible); ``p_sd[n]``: P(reached by social-determinants
  intervention | low income); ``p_l3[n]``: P(delivered at level III+ | GA < 32 weeks).
* ``ga_cum[n, 64, 5]``: P(GA below cut k | combination), cuts 28, 32, 34, 37, 39 weeks; the
  combination index is ``smk + 2 pp + 4 ipi + 8 li + 16 prog + 32 sd``. An elective early-term
  birth whose GA would be 39+ is delivered at 37-38 weeks.
* ``death_cum[n, 7, 2, 16, 3]``: cumulative death thresholds by death row, delivery below level
  III (1) or not (0), combination ``smk + 2 us + 4 li + 8 sd``, and cause (neonatal, SUID, other
  postneonatal): ``u < t[0]`` neonatal, ``u < t[1]`` SUID, ``u < t[2]`` other postneonatal.
  Rows 0-5 are the GA bands; row 6 (:data:`EET_ROW`) is an elective early-term birth: a would-be
  39+ birth delivered at 37-38 weeks without medical indication. It is *counted* in the 37-38
  band (births and deaths) but dies with the 39+ band's probabilities times ``rr_eet_death``.

Output counts ``[.., N_OUT]`` (int64 for the microsim, float64 for expectations): births by band
(0-5), deaths by cause x band (6 + 6*cause + band), then tallies of exposed births (see ``OUT_*``).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from imsim.birth.jit import JIT_OPTIONS, JIT_PARALLEL_OPTIONS

N_BANDS = 6
N_CAUSES = 3
N_CUTS = 5
#: Death-table row of an elective early-term birth (after the six GA bands).
EET_ROW = N_BANDS
#: First term GA band (37-38 weeks): smoking's direct effect on neonatal death applies from here.
TERM_BAND = 4
#: Rows of the death table: the GA bands and the elective early-term row.
N_DEATH_ROWS = N_BANDS + 1
#: GA band an elective early-term birth is counted in (37-38 weeks).
EET_BAND = N_BANDS - 2
OUT_BIRTHS = 0
OUT_DEATHS = 6
OUT_LI = 24
OUT_SMK = 25
OUT_PP = 26
OUT_IPI = 27
OUT_EET = 28
OUT_US = 29
OUT_PROG = 30
OUT_SD = 31
OUT_LT32 = 32
OUT_L3 = 33
N_OUT = 34
TILE = 256

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
_INV32 = 1.0 / 4294967296.0


@nb.njit(inline="always", **JIT_OPTIONS)
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Return the four 32-bit words of Philox4x32-10 (Salmon et al. 2011) as uint64 scalars.

    Parameters
    ----------
    c0, c1, c2, c3 : uint64
        The counter, each word a 32-bit value: birth index within the cell, cell uid, stream
        block and replicate (as :func:`simulate_counts` uses them).
    k0, k1 : uint64
        The key (the seed's low and high 32 bits).

    Returns
    -------
    tuple of 4 uint64
        The four output words, each in ``[0, 2**32)``.
    """
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (
            ((p1 >> _SHIFT) ^ c1 ^ k0) & _MASK,
            p1 & _MASK,
            ((p0 >> _SHIFT) ^ c3 ^ k1) & _MASK,
            p0 & _MASK,
        )
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@nb.njit(inline="always", **JIT_OPTIONS)
def _u(x):
    return (np.float64(np.int64(x)) + 0.5) * _INV32


@nb.njit(inline="always", **JIT_OPTIONS)
def _fill_uniforms(start, m, uid, block, replicate, key0, key1, u0, u1, u2, u3):
    """Fill ``u0..u3[:m]`` with the uniforms of births ``start .. start+m-1`` for one block.

    A separate tight loop so that LLVM vectorises the generator across births; the buffers are a
    fixed-size scratch tile, never an array over all births.
    """
    for j in range(m):
        a0, a1, a2, a3 = philox4x32(np.uint64(start + j), uid, block, replicate, key0, key1)
        u0[j] = _u(a0)
        u1[j] = _u(a1)
        u2[j] = _u(a2)
        u3[j] = _u(a3)


@nb.njit(inline="always", **JIT_OPTIONS)
def _ga_band(cum, combo, u):
    """Band index (0-5) of a uniform ``u`` against cumulative cut probabilities."""
    band = 0
    for k in range(N_CUTS):
        band += u >= cum[combo, k]
    return band


@nb.njit(**JIT_PARALLEL_OPTIONS)
def simulate_counts(chunk_cell, chunk_start, chunk_len, cell_uid, key0, key1, replicate,
                    p_li, p_exp, p_us, p_prog, p_sd, p_l3, ga_cum, death_cum, out):
    """Simulate every birth of every chunk and write its outcome counts to ``out[chunk]``.

    Parameters
    ----------
    chunk_cell, chunk_start, chunk_len : int64[n_chunks]
        The cell of each chunk and its range of birth indices within the cell.
    cell_uid : uint64[n_cells]
        A stable id of each cell (year, state, race); with the birth index it forms the birth uid.
    key0, key1 : uint64
        The seed, as two 32-bit halves (Philox key).
    replicate : uint64
        Monte Carlo replicate (Philox counter word 3).
    p_li : float64[n_cells]
        P(low income).
    p_exp : float64[n_cells, 4, 2]
        P(exposure | low income), exposures smoking, prior preterm, short IPI, elective early
        term.
    p_us : float64[n_cells, 2, 2]
        P(unsafe sleep | low income, smoking).
    p_prog, p_sd, p_l3 : float64[n_cells]
        P(progesterone | eligible), P(social-determinants reach | low income),
        P(level III+ delivery | GA < 32 weeks).
    ga_cum : float64[n_cells, 64, 5]
        Cumulative GA probabilities (see the module docstring).
    death_cum : float64[n_cells, 7, 2, 16, 3]
        Cumulative death thresholds by death row (see the module docstring).
    out : int64[n_chunks, N_OUT]
        Output: every column of row ``chunk`` is overwritten with that chunk's counts (births
        and deaths by band, tallies of exposed births); one row per chunk, so threads never
        share a row.
    """
    n_chunks = chunk_cell.shape[0]
    for ch in nb.prange(n_chunks):
        c = chunk_cell[ch]
        uid = cell_uid[c]
        acc = np.zeros(N_OUT, np.int64)
        pli = p_li[c]
        pprog = p_prog[c]
        psd = p_sd[c]
        pl3 = p_l3[c]
        gcum = ga_cum[c]
        dcum = death_cum[c]
        # Scalars, so the exposure loop is branch-free selects (vectorisable).
        pe00, pe01 = p_exp[c, 0, 0], p_exp[c, 0, 1]
        pe10, pe11 = p_exp[c, 1, 0], p_exp[c, 1, 1]
        pe20, pe21 = p_exp[c, 2, 0], p_exp[c, 2, 1]
        pe30, pe31 = p_exp[c, 3, 0], p_exp[c, 3, 1]
        pu00, pu01 = p_us[c, 0, 0], p_us[c, 0, 1]
        pu10, pu11 = p_us[c, 1, 0], p_us[c, 1, 1]
        treat = pprog > 0.0 or psd > 0.0
        start = chunk_start[ch]
        end = start + chunk_len[ch]
        ua0 = np.empty(TILE)
        ua1 = np.empty(TILE)
        ua2 = np.empty(TILE)
        ua3 = np.empty(TILE)
        ub0 = np.empty(TILE)
        ub1 = np.empty(TILE)
        ub2 = np.empty(TILE)
        ub3 = np.empty(TILE)
        combo = np.empty(TILE, np.int64)
        dcv = np.empty(TILE, np.int64)
        eetv = np.empty(TILE, np.int64)
        drow = np.empty(TILE, np.int64)
        n_li = n_smk = n_pp = n_ipi = n_eet = n_us = n_prog = n_sd = 0
        for t0 in range(start, end, TILE):
            m = min(TILE, end - t0)
            _fill_uniforms(t0, m, uid, np.uint64(0), replicate, key0, key1, ua0, ua1, ua2, ua3)
            _fill_uniforms(t0, m, uid, np.uint64(1), replicate, key0, key1, ub0, ub1, ub2, ub3)
            # Phase 1: exposures (streams 0.0-0.3, 1.0, 1.1).
            for j in range(m):
                li = np.int64(ua0[j] < pli)
                smk = np.int64(ua1[j] < (pe01 if li else pe00))
                pp = np.int64(ua2[j] < (pe11 if li else pe10))
                ipi = np.int64(ua3[j] < (pe21 if li else pe20))
                eet = np.int64(ub0[j] < (pe31 if li else pe30))
                pu = (pu11 if smk else pu10) if li else (pu01 if smk else pu00)
                us = np.int64(ub1[j] < pu)
                combo[j] = smk + 2 * pp + 4 * ipi + 8 * li
                dcv[j] = smk + 2 * us + 4 * li
                eetv[j] = eet
                n_li += li
                n_smk += smk
                n_pp += pp
                n_ipi += ipi
                n_eet += eet
                n_us += us
            # Phase 2: treatments reached by a strategy (stream 2.0 progesterone, 2.1 social
            # determinants), drawn only for eligible births of cells where a strategy is on.
            if treat:
                for j in range(m):
                    pp = (combo[j] >> 1) & 1
                    li = (combo[j] >> 3) & 1
                    if (pp == 1 and pprog > 0.0) or (li == 1 and psd > 0.0):
                        e0, e1, _e2, _e3 = philox4x32(np.uint64(t0 + j), uid, np.uint64(2),
                                                      replicate, key0, key1)
                        prog = np.int64(pp == 1 and _u(e0) < pprog)
                        sd = np.int64(li == 1 and _u(e1) < psd)
                        combo[j] += 16 * prog + 32 * sd
                        dcv[j] += 8 * sd
                        n_prog += prog
                        n_sd += sd
            # Phase 3: gestational age (stream 1.2) as a death row; elective early term turns a
            # 39+ birth into the elective row (counted at 37-38 weeks below).
            for j in range(m):
                u = ub2[j]
                cb = combo[j]
                bnd = np.int64(0)
                for k in range(N_CUTS):
                    bnd += u >= gcum[cb, k]
                drow[j] = bnd + eetv[j] * np.int64(bnd == N_BANDS - 1)
            # Phase 4: level III delivery (stream 2.2) for GA < 32 weeks, and death (1.3).
            for j in range(m):
                row = drow[j]
                bnd = row - (EET_ROW - EET_BAND) * np.int64(row == EET_ROW)
                acc[OUT_BIRTHS + bnd] += 1
                nonl3 = 0
                if bnd < 2:
                    _e0, _e1, e2, _e3 = philox4x32(np.uint64(t0 + j), uid, np.uint64(2),
                                                   replicate, key0, key1)
                    if _u(e2) < pl3:
                        acc[OUT_L3] += 1
                    else:
                        nonl3 = 1
                    acc[OUT_LT32] += 1
                ud = ub3[j]
                dc = dcv[j]
                if ud < dcum[row, nonl3, dc, 2]:
                    if ud < dcum[row, nonl3, dc, 0]:
                        acc[OUT_DEATHS + bnd] += 1
                    elif ud < dcum[row, nonl3, dc, 1]:
                        acc[OUT_DEATHS + N_BANDS + bnd] += 1
                    else:
                        acc[OUT_DEATHS + 2 * N_BANDS + bnd] += 1
        acc[OUT_LI] = n_li
        acc[OUT_SMK] = n_smk
        acc[OUT_PP] = n_pp
        acc[OUT_IPI] = n_ipi
        acc[OUT_EET] = n_eet
        acc[OUT_US] = n_us
        acc[OUT_PROG] = n_prog
        acc[OUT_SD] = n_sd
        for k in range(N_OUT):
            out[ch, k] = acc[k]


@nb.njit(inline="always", **JIT_OPTIONS)
def _band_distribution(c, li, smk, sd, p_exp, p_prog, ga_cum, band_p):
    """Death-row probabilities of cell ``c`` given (low income, smoking, SD reach) into
    ``band_p[7]`` (GA bands 0-5, elective early-term row 6), summed over prior preterm, short
    IPI, progesterone and elective early-term delivery; returns P(prior preterm) and
    P(progesterone) in that stratum."""
    for k in range(N_DEATH_ROWS):
        band_p[k] = 0.0
    w_pp_tot = 0.0
    w_prog_tot = 0.0
    for pp in range(2):
        w_pp = p_exp[c, 1, li] if pp == 1 else 1.0 - p_exp[c, 1, li]
        pprog = p_prog[c] if pp == 1 else 0.0
        for ipi in range(2):
            w_ipi = p_exp[c, 2, li] if ipi == 1 else 1.0 - p_exp[c, 2, li]
            for prog in range(2):
                w_prog = pprog if prog == 1 else 1.0 - pprog
                w = w_pp * w_ipi * w_prog
                if w == 0.0:
                    continue
                combo = smk + 2 * pp + 4 * ipi + 8 * li + 16 * prog + 32 * sd
                prev = 0.0
                for k in range(N_CUTS):
                    cum = ga_cum[c, combo, k]
                    band_p[k] += w * (cum - prev)
                    prev = cum
                band_p[N_BANDS - 1] += w * (1.0 - prev)
                w_pp_tot += w * pp
                w_prog_tot += w * prog
    # Elective early-term delivery turns 39+ births into elective births (the elective row).
    moved = band_p[N_BANDS - 1] * p_exp[c, 3, li]
    band_p[N_BANDS - 1] -= moved
    band_p[EET_ROW] = moved
    return w_pp_tot, w_prog_tot


@nb.njit(inline="always", **JIT_OPTIONS)
def _expected_cell(c, births, p_li, p_exp, p_us, p_prog, p_sd, p_l3, ga_cum, death_cum, out):
    """Expected outcome counts of cell ``c`` into ``out[c]`` (see :func:`expected_counts`)."""
    acc = np.zeros(N_OUT)
    band_p = np.zeros(N_DEATH_ROWS)
    nb_ = births[c]
    for li in range(2):
        w_li = p_li[c] if li == 1 else 1.0 - p_li[c]
        if w_li == 0.0:
            continue
        psd = p_sd[c] if li == 1 else 0.0
        for smk in range(2):
            w_smk = p_exp[c, 0, li] if smk == 1 else 1.0 - p_exp[c, 0, li]
            if w_smk == 0.0:
                continue
            for sd in range(2):
                w_sd = psd if sd == 1 else 1.0 - psd
                if w_sd == 0.0:
                    continue
                w_a = w_li * w_smk * w_sd
                w_pp_tot, w_prog_tot = _band_distribution(c, li, smk, sd, p_exp, p_prog, ga_cum,
                                                          band_p)
                peet = p_exp[c, 3, li]
                for us in range(2):
                    w_us = p_us[c, li, smk] if us == 1 else 1.0 - p_us[c, li, smk]
                    if w_us == 0.0:
                        continue
                    w = nb_ * w_a * w_us
                    dc = smk + 2 * us + 4 * li + 8 * sd
                    for row in range(N_DEATH_ROWS):
                        # Elective early-term births are counted in the 37-38 band.
                        band = EET_BAND if row == EET_ROW else row
                        wb = w * band_p[row]
                        acc[OUT_BIRTHS + band] += wb
                        if band < 2:
                            acc[OUT_LT32] += wb
                            acc[OUT_L3] += wb * p_l3[c]
                            parts = 2
                        else:
                            parts = 1
                        for nonl3 in range(parts):
                            if band < 2:
                                wl = wb * ((1.0 - p_l3[c]) if nonl3 == 1 else p_l3[c])
                            else:
                                wl = wb
                            t0 = death_cum[c, row, nonl3, dc, 0]
                            t1 = death_cum[c, row, nonl3, dc, 1]
                            t2 = death_cum[c, row, nonl3, dc, 2]
                            acc[OUT_DEATHS + band] += wl * t0
                            acc[OUT_DEATHS + N_BANDS + band] += wl * (t1 - t0)
                            acc[OUT_DEATHS + 2 * N_BANDS + band] += wl * (t2 - t1)
                    acc[OUT_US] += w * us
                    acc[OUT_SMK] += w * smk
                    acc[OUT_LI] += w * li
                    acc[OUT_SD] += w * sd
                    acc[OUT_PP] += w * w_pp_tot
                    acc[OUT_PROG] += w * w_prog_tot
                    acc[OUT_IPI] += w * p_exp[c, 2, li]
                    acc[OUT_EET] += w * peet
    for k in range(N_OUT):
        out[c, k] = acc[k]


@nb.njit(**JIT_PARALLEL_OPTIONS)
def expected_counts(births, p_li, p_exp, p_us, p_prog, p_sd, p_l3, ga_cum, death_cum, out):
    """Write the exact expected outcome counts of each cell into ``out[cell]`` (parallel).

    Sums over low income, smoking, unsafe sleep and social-determinants reach (which the death
    tables depend on) and, inside, over prior preterm, short IPI, progesterone and elective
    early-term delivery (which act through gestational age and, for elective births, the
    elective death row).

    Parameters
    ----------
    births : float64[n]
        Births per cell (the counts are linear in it).
    p_li, p_exp, p_us, p_prog, p_sd, p_l3, ga_cum, death_cum : float64 arrays
        Cell tables with ``n`` rows, shapes as in :func:`simulate_counts`.
    out : float64[n, N_OUT]
        Output: row ``c`` is overwritten with the expected counts of cell ``c`` (births and
        deaths by band, expected numbers of exposed births; columns ``OUT_*``).
    """
    for c in nb.prange(births.shape[0]):
        _expected_cell(c, births, p_li, p_exp, p_us, p_prog, p_sd, p_l3, ga_cum, death_cum, out)


@nb.njit(**JIT_OPTIONS)
def expected_counts_serial(births, p_li, p_exp, p_us, p_prog, p_sd, p_l3, ga_cum, death_cum,
                           out):
    """Write the expected counts of :func:`expected_counts` on one thread.

    Faster than the parallel kernel for a few thousand cells or fewer (thread start-up costs
    more than it saves).

    Parameters
    ----------
    births : float64[n]
        Births per cell.
    p_li, p_exp, p_us, p_prog, p_sd, p_l3, ga_cum, death_cum : float64 arrays
        Cell tables with ``n`` rows, shapes as in :func:`simulate_counts`.
    out : float64[n, N_OUT]
        Output, as in :func:`expected_counts`.
    """
    for c in range(births.shape[0]):
        _expected_cell(c, births, p_li, p_exp, p_us, p_prog, p_sd, p_l3, ga_cum, death_cum, out)


@nb.njit(**JIT_OPTIONS)
def rake_multipliers(target, deaths_unit, race, race_cause, f, iters, tol):
    """Rake cell and race x cause death multipliers (``m[c, i] = k[i] * f[c, race[i]]``).

    Alternates ``k`` (each cell hits its total deaths) and ``f`` (each race hits its deaths by
    cause), on deaths linear in the multipliers: ``deaths[c, i] = m[c, i] * deaths_unit[c, i]``.

    Parameters
    ----------
    target : float64[n]
        Target deaths per cell (all causes).
    deaths_unit : float64[3, n]
        Expected deaths per unit multiplier, by cause (neonatal, SUID, other postneonatal).
    race : int64[n]
        Race index of each cell, in ``0 .. R-1``.
    race_cause : float64[3, R]
        Target deaths by cause and race.
    f : float64[3, R]
        Starting race x cause factors; updated in place to the raked factors.
    iters : int
        Maximum number of raking sweeps.
    tol : float
        Stop when no factor of ``f`` changes by more than this relative amount.

    Returns
    -------
    float64[n]
        The cell factors ``k`` (consistent with the final ``f``).
    """
    n = target.shape[0]
    n_r = race_cause.shape[1]
    k = np.empty(n)
    got = np.empty((3, n_r))
    for _ in range(iters):
        for i in range(n):
            tot = 0.0
            for c in range(3):
                tot += f[c, race[i]] * deaths_unit[c, i]
            k[i] = target[i] / max(tot, 1e-300)
        got[:, :] = 0.0
        for i in range(n):
            for c in range(3):
                got[c, race[i]] += k[i] * deaths_unit[c, i]
        change = 0.0
        for c in range(3):
            for j in range(n_r):
                new = race_cause[c, j] / got[c, j] if got[c, j] > 0 else 1.0
                change = max(change, abs(new / f[c, j] - 1.0))
                f[c, j] = new
        if change < tol:
            break
    for i in range(n):
        tot = 0.0
        for c in range(3):
            tot += f[c, race[i]] * deaths_unit[c, i]
        k[i] = target[i] / max(tot, 1e-300)
    return k


@nb.njit(**JIT_OPTIONS)
def ga_table(theta, beta_smk, beta_pp, beta_ipi, beta_li, beta_prog, beta_sd, out):
    """Write cumulative GA probabilities ``out[n, 64, 5]`` from cut-points and log odds ratios.

    ``P(GA < cut_k | combination) = expit(theta_k + sum_x beta_xk x)`` over the combination bits
    ``smk, pp, ipi, li, prog, sd`` (bit 0 first), made non-decreasing in k.

    Parameters
    ----------
    theta : float64[n, 5]
        Cut-points (log odds of GA below 28, 32, 34, 37, 39 weeks for an unexposed birth).
    beta_smk, beta_pp, beta_ipi, beta_li, beta_prog, beta_sd : float64[n, 5]
        Log odds ratios of each cut for smoking, prior preterm, short IPI, low income,
        progesterone and social-determinants reach.
    out : float64[n, 64, 5]
        Output, overwritten.
    """
    n = theta.shape[0]
    prod = np.empty(64)
    fac = np.empty(6)
    for c in range(n):
        for k in range(N_CUTS):
            # exp(-eta) of every combination as a product of per-bit factors (64 products
            # instead of 64 exponentials); bit order smk, pp, ipi, li, prog, sd.
            fac[0] = np.exp(-beta_smk[c, k])
            fac[1] = np.exp(-beta_pp[c, k])
            fac[2] = np.exp(-beta_ipi[c, k])
            fac[3] = np.exp(-beta_li[c, k])
            fac[4] = np.exp(-beta_prog[c, k])
            fac[5] = np.exp(-beta_sd[c, k])
            prod[0] = np.exp(-theta[c, k])
            size = 1
            for b in range(6):
                for j in range(size):
                    prod[size + j] = prod[j] * fac[b]
                size *= 2
            for combo in range(64):
                out[c, combo, k] = 1.0 / (1.0 + prod[combo])
        for combo in range(64):
            for k in range(1, N_CUTS):
                if out[c, combo, k] < out[c, combo, k - 1]:
                    out[c, combo, k] = out[c, combo, k - 1]


@nb.njit(inline="always", **JIT_OPTIONS)
def _apply_or(p, odds_ratio):
    return odds_ratio * p / (1.0 - p + odds_ratio * p)


@nb.njit(**JIT_OPTIONS)
def death_table(q_neo, q_suid, q_oth, or_nonl3, or_us_suid, rr_smk_suid, or_us_smk, rr_li_pn,
                rr_sd_death, rr_eet_death, rr_smk_neo, cap, out):
    """Write cumulative death thresholds ``out[n, 7, 2, 16, 3]`` (see the module docstring).

    Odds ratios act on the odds, risk ratios multiply the probability (capped at ``cap``): as in
    :func:`imsim.birth.params.death_probabilities`. Row 6 (:data:`EET_ROW`, an elective
    early-term birth) uses the 39+ band's reference probabilities with every cause's risk times
    ``rr_eet_death``.

    Parameters
    ----------
    q_neo, q_suid, q_oth : float64[n, 6]
        Reference death probabilities per GA band (neonatal, SUID, other postneonatal) of an
        unexposed birth delivered at level III+.
    or_nonl3, or_us_suid, rr_smk_suid, or_us_smk, rr_li_pn, rr_sd_death, rr_eet_death, rr_smk_neo : float64[n]
        Odds ratios (``or_*``) and risk ratios (``rr_*``) of
        :class:`imsim.birth.params.CellParams`.
    cap : float
        Upper bound of a death probability after a risk ratio (a probability).
    out : float64[n, 7, 2, 16, 3]
        Output, overwritten: axes cell, death row (GA band 0-5, elective early-term row 6),
        delivery below level III (1) or not (0), combination ``smk + 2 us + 4 li + 8 sd``,
        cumulative cause threshold.
    """
    n = q_neo.shape[0]
    for c in range(n):
        for row in range(N_DEATH_ROWS):
            eet = row == EET_ROW
            band = N_BANDS - 1 if eet else row
            rr_e = rr_eet_death[c] if eet else 1.0
            for nonl3 in range(2):
                for dc in range(16):
                    smk = dc & 1
                    us = (dc >> 1) & 1
                    li = (dc >> 2) & 1
                    sd = (dc >> 3) & 1
                    rr_sd = (rr_sd_death[c] if sd == 1 else 1.0) * rr_e
                    p = q_neo[c, band]
                    if band < 2 and nonl3 == 1:
                        p = _apply_or(p, or_nonl3[c])
                    rr_n = rr_smk_neo[c] if (smk == 1 and band >= TERM_BAND) else 1.0
                    p_neo = min(p * rr_sd * rr_n, cap)
                    o = 1.0
                    if us == 1:
                        o *= or_us_suid[c]
                        if smk == 1:
                            o *= or_us_smk[c]
                    rr = rr_sd
                    if smk == 1:
                        rr *= rr_smk_suid[c]
                    if li == 1:
                        rr *= rr_li_pn[c]
                    p_suid = min(_apply_or(q_suid[c, band], o) * rr, cap)
                    rr_o = rr_sd * (rr_li_pn[c] if li == 1 else 1.0)
                    p_oth = min(q_oth[c, band] * rr_o, cap)
                    t0 = p_neo
                    t1 = t0 + (1.0 - p_neo) * p_suid
                    t2 = t1 + (1.0 - p_neo) * (1.0 - p_suid) * p_oth
                    out[c, row, nonl3, dc, 0] = t0
                    out[c, row, nonl3, dc, 1] = t1
                    out[c, row, nonl3, dc, 2] = t2


@nb.njit(**JIT_OPTIONS)
def solve_cutpoints_kernel(w, off, eet, target, tol, out):
    """Solve cut-points ``out[n, 5]`` so that each cell's marginal P(GA < cut_k) is ``target``.

    Solves ``sum_j w[c, j] F_k(out[c, k] + off[c, j, k]) = target[c, k]``. ``F_k`` is the
    logistic function, except at the last cut (39 weeks) where elective early-term
    delivery adds ``(1 - F) eet[c, j]``. Safeguarded Newton in ``[-40, 40]`` (bisection when a
    step leaves the bracket), at most 100 steps per cut.

    Parameters
    ----------
    w : float64[n, J]
        Weights of the ``J`` exposure combinations of each cell (each row sums to 1).
    off : float64[n, J, 5]
        Log-odds offset of each combination at each cut (``sum_x beta_xk x``).
    eet : float64[n, J]
        P(elective early-term delivery) of each combination.
    target : float64[n, 5]
        Target marginal P(GA < cut_k), each in (0, 1).
    tol : float
        Absolute tolerance on the marginal probability.
    out : float64[n, 5]
        Output, overwritten with the cut-points (log odds).
    """
    n, n_j = w.shape
    for c in range(n):
        for k in range(N_CUTS):
            tgt = target[c, k]
            lo = -40.0
            hi = 40.0
            x = np.log(tgt / (1.0 - tgt))
            mean_off = 0.0
            for j in range(n_j):
                mean_off += w[c, j] * off[c, j, k]
            x -= mean_off
            for _ in range(100):
                val = 0.0
                der = 0.0
                for j in range(n_j):
                    p = 1.0 / (1.0 + np.exp(-(x + off[c, j, k])))
                    d = p * (1.0 - p)
                    if k == N_CUTS - 1:
                        val += w[c, j] * (p + (1.0 - p) * eet[c, j])
                        der += w[c, j] * d * (1.0 - eet[c, j])
                    else:
                        val += w[c, j] * p
                        der += w[c, j] * d
                f = val - tgt
                if f > 0:
                    hi = x
                else:
                    lo = x
                if abs(f) < tol:
                    break
                step = f / der if der > 0 else 0.0
                nxt = x - step
                if not (lo < nxt < hi) or der <= 0:
                    nxt = 0.5 * (lo + hi)
                x = nxt
            out[c, k] = x
