"""The two engines over one model: exact expectations and the microsimulation.

Both take :class:`imsim.birth.params.Tables` and return outcome counts per cell ``[n_cells, N_OUT]``
(columns as in :mod:`imsim.birth.kernels`). The expected engine is deterministic; the microsim is a pure
function of ``(seed, replicate)`` and the tables, whatever the number of threads.
"""
from __future__ import annotations

import numpy as np

from imsim.birth import kernels as K
from imsim.birth.params import Tables
from imsim.core.constants import ENGINES  # noqa: F401  (re-exported)

#: Births per parallel work item of the microsim (any value gives the same result).
CHUNK_BIRTHS = 1 << 16
_SEED_MAX = 2**64 - 1


#: Below this many cells the expected engine runs on one thread (thread start-up costs more).
SERIAL_BELOW = 8192


def expected_rows(tables: Tables, rows: np.ndarray) -> np.ndarray:
    """Return :func:`expected` of cells whose GA and death tables are shared rows.

    Parameters
    ----------
    tables : Tables
        Kernel tables of ``n`` cells, except ``ga_cum`` and ``death_cum``, which hold ``m`` rows.
    rows : numpy.ndarray
        int ``[n]``: the row of ``ga_cum``/``death_cum`` each cell reads, in ``0 .. m-1``.

    Returns
    -------
    numpy.ndarray
        float64 ``[n, N_OUT]``, equal to :func:`expected` on tables with
        ``ga_cum[rows]`` and ``death_cum[rows]`` (which it never builds).
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    m = tables.ga_cum.shape[0]
    if rows.shape != tables.births.shape or (rows.size and (rows.min() < 0 or rows.max() >= m)):
        raise ValueError("rows must give one table row in [0, m) per cell")
    out = np.zeros((rows.shape[0], K.N_OUT))
    K.expected_counts_rows(tables.births.astype(np.float64), tables.p_li, tables.p_exp,
                           tables.p_us, tables.p_prog, tables.p_sd, tables.p_l3, tables.ga_cum,
                           tables.death_cum, rows, out)
    return out


def expected(tables: Tables) -> np.ndarray:
    """Return the exact expected outcome counts of every cell.

    Runs :func:`imsim.birth.kernels.expected_counts` (on one thread below
    :data:`SERIAL_BELOW` cells).

    Parameters
    ----------
    tables : Tables
        Kernel tables of ``n_cells`` cells (:func:`imsim.birth.params.build_tables`).

    Returns
    -------
    numpy.ndarray
        float64 ``[n_cells, N_OUT]``: expected births and deaths by GA band and cause, and
        expected numbers of exposed births (columns ``OUT_*`` of :mod:`imsim.birth.kernels`);
        counts, not rates.
    """
    n = tables.births.shape[0]
    out = np.zeros((n, K.N_OUT))
    kernel = K.expected_counts_serial if n < SERIAL_BELOW else K.expected_counts
    kernel(tables.births.astype(np.float64), tables.p_li, tables.p_exp, tables.p_us,
                      tables.p_prog, tables.p_sd, tables.p_l3, tables.ga_cum, tables.death_cum,
                      out)
    return out


def chunks(births: np.ndarray, chunk_births: int = CHUNK_BIRTHS):
    """Split every cell's births into work items of at most ``chunk_births`` births.

    Parameters
    ----------
    births : array_like of int
        ``[n_cells]`` births per cell (negative values count as 0).
    chunk_births : int
        Maximum births per work item.

    Returns
    -------
    cell, start, length : numpy.ndarray
        int64 ``[n_chunks]`` each: the cell of each work item, the index of its first birth
        within the cell and its number of births. Cells with no births have no work item.
    """
    births = np.asarray(births, dtype=np.int64)
    per_cell = np.maximum((births + chunk_births - 1) // chunk_births, 0)
    cell = np.repeat(np.arange(births.shape[0], dtype=np.int64), per_cell)
    first = np.repeat(np.cumsum(per_cell) - per_cell, per_cell)
    start = (np.arange(cell.shape[0], dtype=np.int64) - first) * chunk_births
    length = np.minimum(births[cell] - start, chunk_births)
    return cell, start, length


def split_seed(seed: int) -> tuple[np.uint64, np.uint64]:
    """Return the two 32-bit Philox key words of a seed.

    Parameters
    ----------
    seed : int
        A whole number in ``[0, 2**64)``.

    Returns
    -------
    tuple of numpy.uint64
        ``(low 32 bits, high 32 bits)``.

    Raises
    ------
    ValueError
        If ``seed`` is negative or not below ``2**64``.
    """
    seed = int(seed)
    if seed < 0 or seed > _SEED_MAX:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)


def microsim(tables: Tables, seed: int, replicate: int = 0,
             chunk_births: int = CHUNK_BIRTHS) -> np.ndarray:
    """Simulate every birth of every cell and return its outcome counts.

    The result is a pure function of the tables, ``seed`` and ``replicate``: it does not depend
    on the number of threads or on ``chunk_births``.

    Parameters
    ----------
    tables : Tables
        Kernel tables of ``n_cells`` cells (:func:`imsim.birth.params.build_tables`).
    seed : int
        Seed in ``[0, 2**64)`` (the Philox key).
    replicate : int
        Monte Carlo replicate (the runner passes the draw index).
    chunk_births : int
        Births per parallel work item.

    Returns
    -------
    numpy.ndarray
        int64 ``[n_cells, N_OUT]``: births and deaths by GA band and cause, and numbers of
        exposed births (columns ``OUT_*`` of :mod:`imsim.birth.kernels`).

    Raises
    ------
    ValueError
        If ``seed`` is out of range (:func:`split_seed`).
    """
    cell, start, length = chunks(tables.births, chunk_births)
    out = np.zeros((cell.shape[0], K.N_OUT), dtype=np.int64)
    k0, k1 = split_seed(seed)
    K.simulate_counts(cell, start, length, tables.uid, k0, k1, np.uint64(replicate),
                      tables.p_li, tables.p_exp, tables.p_us, tables.p_prog, tables.p_sd,
                      tables.p_l3, tables.ga_cum, tables.death_cum, out)
    counts = np.zeros((tables.births.shape[0], K.N_OUT), dtype=np.int64)
    if cell.shape[0]:
        # A cell's work items are consecutive: sum each run of rows (faster than np.add.at).
        first = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        counts[cell[first]] = np.add.reduceat(out, first, axis=0)
    return counts


def warm_up() -> None:
    """Compile (or load from the Numba cache) both engines' kernels on a one-cell problem."""
    from imsim.birth.params import CellParams, build_tables

    n = 1
    z5 = np.zeros((n, 5))
    params = CellParams(
        births=np.array([10], dtype=np.int64), uid=np.zeros(n, dtype=np.uint64),
        p_li=np.full(n, 0.5), p_exp=np.full((n, 4, 2), 0.1), p_us=np.full((n, 2, 2), 0.2),
        p_prog=np.zeros(n), p_sd=np.zeros(n), p_l3=np.full(n, 0.8),
        theta=np.tile([-5.0, -4.0, -3.5, -2.3, -0.7], (n, 1)), beta_smk=z5, beta_pp=z5,
        beta_ipi=z5, beta_li=z5, beta_prog=z5, beta_sd=z5,
        q_neo=np.full((n, 6), 0.001), q_suid=np.full((n, 6), 0.001),
        q_oth=np.full((n, 6), 0.001), or_nonl3=np.ones(n), or_us_suid=np.ones(n),
        rr_smk_suid=np.ones(n), or_us_smk=np.ones(n), rr_li_pn=np.ones(n), rr_sd_death=np.ones(n),
        rr_eet_death=np.full(n, 1.3), rr_smk_neo=np.full(n, 1.3),
    )
    tables = build_tables(params)
    expected(tables)
    expected_rows(tables, np.zeros(n, dtype=np.int64))
    microsim(tables, 0)
