"""The expected engine on shared GA/death table rows equals it on gathered copies (issue 15).

Portfolio search evaluates ~52,000 arm rows per draw that all read one of ~1,275 universal GA and
death tables; ``engines.expected_rows`` reads them in place instead of copying 8 KB per row.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import random_params
from imsim.birth import engines
from imsim.birth.params import Tables, build_tables, tables_sharing


def test_expected_rows_equals_expected_on_gathered_tables(warm):
    params = random_params(21, n_cells=5)
    t = build_tables(params)
    rows = np.array([4, 0, 0, 2, 3, 1, 4, 2], dtype=np.int64)
    arm = params.take(rows)
    # Same per-cell probabilities as the gathered rows, but some changed so rows matter.
    arm.p_prog = arm.p_prog * 0.5
    arm.p_sd = np.clip(arm.p_sd + 0.1, 0.0, 1.0)
    t_arm = build_tables(arm)
    gathered = Tables(**{**t_arm.__dict__, "ga_cum": t.ga_cum[rows],
                         "death_cum": t.death_cum[rows]})
    want = engines.expected(gathered)
    got = engines.expected_rows(tables_sharing(arm, t.ga_cum, t.death_cum), rows)
    np.testing.assert_array_equal(got, want)
    # Rows matter: reading every cell's table at row 0 gives different counts.
    other = engines.expected_rows(tables_sharing(arm, t.ga_cum, t.death_cum),
                                  np.zeros_like(rows))
    assert not np.array_equal(other, want)


def test_expected_rows_refuses_rows_out_of_range(warm):
    params = random_params(22, n_cells=2)
    t = build_tables(params)
    with pytest.raises(ValueError):
        engines.expected_rows(t, np.array([0, 2]))
    with pytest.raises(ValueError):
        engines.expected_rows(t, np.array([0]))
