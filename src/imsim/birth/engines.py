"""The two engines over one model: exact expectations and the microsimulation.

Both take :class:`imsim.birth.params.Tables` and return outcome counts per cell ``[n_cells, N_OUT]``
(columns as in :mod:`imsim.birth.kernels`). The expected engine is deterministic; the microsim is a pure
function of ``(seed, replicate)`` and the tables, whatever the number of threads.
"""
from __future__ import annotations

import numpy as np

from imsim.birth import kernels as K
from imsim.birth.params import Tables

ENGINES = ("expected", "microsim")
#: Births per parallel work item of the microsim (any value gives the same result).
CHUNK_BIRTHS = 1 << 16
_SEED_MAX = 2**64 - 1


#: Below this many cells the expected engine runs on one thread (thread start-up costs more).
SERIAL_BELOW = 8192


def expected(tables: Tables) -> np.ndarray:
    """Exact expected counts, float64 ``[n_cells, N_OUT]``."""
    n = tables.births.shape[0]
    out = np.zeros((n, K.N_OUT))
    kernel = K.expected_counts_serial if n < SERIAL_BELOW else K.expected_counts
    kernel(tables.births.astype(np.float64), tables.p_li, tables.p_exp, tables.p_us,
                      tables.p_prog, tables.p_sd, tables.p_l3, tables.ga_cum, tables.death_cum,
                      out)
    return out


def chunks(births: np.ndarray, chunk_births: int = CHUNK_BIRTHS):
    """Split every cell's births into work items: ``(cell, start, length)`` int64 arrays."""
    births = np.asarray(births, dtype=np.int64)
    per_cell = np.maximum((births + chunk_births - 1) // chunk_births, 0)
    cell = np.repeat(np.arange(births.shape[0], dtype=np.int64), per_cell)
    first = np.repeat(np.cumsum(per_cell) - per_cell, per_cell)
    start = (np.arange(cell.shape[0], dtype=np.int64) - first) * chunk_births
    length = np.minimum(births[cell] - start, chunk_births)
    return cell, start, length


def split_seed(seed: int) -> tuple[np.uint64, np.uint64]:
    """The two 32-bit Philox key words of a non-negative integer seed below 2**64."""
    seed = int(seed)
    if seed < 0 or seed > _SEED_MAX:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)


def microsim(tables: Tables, seed: int, replicate: int = 0,
             chunk_births: int = CHUNK_BIRTHS) -> np.ndarray:
    """Simulate every birth; integer counts ``[n_cells, N_OUT]``."""
    cell, start, length = chunks(tables.births, chunk_births)
    out = np.zeros((cell.shape[0], K.N_OUT), dtype=np.int64)
    k0, k1 = split_seed(seed)
    K.simulate_counts(cell, start, length, tables.uid, k0, k1, np.uint64(replicate),
                      tables.p_li, tables.p_exp, tables.p_us, tables.p_prog, tables.p_sd,
                      tables.p_l3, tables.ga_cum, tables.death_cum, out)
    counts = np.zeros((tables.births.shape[0], K.N_OUT), dtype=np.int64)
    np.add.at(counts, cell, out)
    return counts


def warm_up() -> None:
    """Compile (or load from cache) both kernels on a tiny problem."""
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
    )
    tables = build_tables(params)
    expected(tables)
    microsim(tables, 0)
