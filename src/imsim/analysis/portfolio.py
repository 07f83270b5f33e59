"""Batched evaluation of many strategy portfolios under parameter uncertainty (for ``recommend``).

For every uncertainty draw ``d`` (effect values and calibration posterior draw from
:func:`imsim.analysis.draws.draw_plan`, the baseline fit from :func:`imsim.inputs.fit.fit_for`)
this module

1. builds the baseline :class:`~imsim.birth.params.CellParams` once for all cells of all states;
2. builds the scenario arm of *every* portfolio as extra rows with
   :func:`imsim.birth.strategies.apply` -- the one pipeline every run uses -- through a prefix
   tree: ``apply`` applies a portfolio's strategies one after another in STRATEGIES order, so the
   arm of ``(s1, s2, s3)`` is ``apply`` of ``s3`` alone on the arm of ``(s1, s2)``; each node of
   the tree (a portfolio or a prefix of one) applies its last strategy once to its parent's rows,
   all nodes ending in one strategy stacked in one call;
3. evaluates baseline and all arms with one call of the expected engine.

So every portfolio and every state of draw ``d`` sees the same effect values and the same fit
(common random numbers across portfolios): differences between portfolios are paired.

Exact shortcuts keep this fast (results bit-identical to the plain ``apply`` of each whole
portfolio on every cell: ``tests/test_recommend.py``, ``tests/test_recommend_tree.py``):

* **Identical cells are evaluated once.** Parameters depend on a cell only through its state,
  year (rates move with time), race, births, the coverage of each strategy and its eligibility
  attributes (whether the state
  had already expanded Medicaid that year); the expected engine is linear in births. Cells of one
  state x race with the same coverage vector and attributes (e.g. every year of a
  constant-coverage horizon) are merged into one row carrying their summed births.
* **Shared gestational-age and death tables.** The levers only change the scalar probabilities
  the kernels read directly (``p_exp``, ``p_us``, ``p_prog``, ``p_sd``, ``p_l3``) plus the
  treatment effects ``beta_prog``, ``beta_sd``, ``rr_sd_death``, which matter only for treated
  births. The baseline has no treated births (``p_prog = p_sd = 0``), so one "universal" table
  set with the treatment effects filled in gives the baseline's outcomes exactly and serves every
  arm. A node row whose GA parameters differ from its parent's (progesterone re-solves
  ``beta_pp``) gets a GA table row of its own, one per distinct parameter row, and keeps its
  parent's death table row (and the other way round):
  :func:`imsim.birth.kernels.expected_counts_split_rows` reads each row's GA and death table rows
  separately, so the shortcut can never change a result.
* **Unchanged rows are not evaluated.** A node row whose parameters all equal its parent's (e.g.
  Medicaid expansion in a state that had already expanded) has its parent's outcomes.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, fields

import numpy as np

from imsim.analysis.draws import Draw
from imsim.birth.strategies import Levers, apply
from imsim.inputs.fit import fit_for
from imsim.inputs.baseline import Baseline, Cells
from imsim.core.constants import RACES, STATES, STRATEGIES
from imsim.birth.engines import expected
from imsim.birth.kernels import N_OUT, OUT_BIRTHS, OUT_DEATHS, OUT_LI, OUT_LT32, OUT_SMK
from imsim.birth import kernels as K
from imsim.birth.params import (GA_FIELDS, CellParams, Tables, build_tables, death_cumulative,
                                ga_cumulative, tables_sharing)

#: CellParams fields copied straight into the kernel tables (everything else feeds ga_cum or
#: death_cum through build_tables).
DIRECT_FIELDS = ("births", "uid", "p_li", "p_exp", "p_us", "p_prog", "p_sd", "p_l3")
#: Treatment effects that only act on treated births (p_prog, p_sd are 0 in the baseline).
TREATMENT_FIELDS = ("beta_prog", "beta_sd", "rr_sd_death")

_NB = RACES.index("nh_black")
_NW = RACES.index("nh_white")

#: The population a strategy's coverage refers to (README: coverage is the share of the
#: strategy's *eligible* population reached); used for "births reached" and costs.
ELIGIBLE = {
    "safe_sleep": "all births",
    "smoking_cessation": "births to smokers",
    "preterm_prevention": "all births (hard-stop policies apply to every delivery)",
    "preconception_care": "all births (postpartum contraception access)",
    "risk_appropriate_care": "births under 32 weeks",
    "social_determinants": "births to low-income mothers",
}


def enumerate_portfolios(candidates=STRATEGIES, k: int = 3) -> list[tuple[str, ...]]:
    """Return every portfolio of 1..k distinct strategies of ``candidates``, in canonical order.

    Strategies inside a portfolio follow :data:`imsim.core.constants.STRATEGIES`; portfolios are
    ordered by size, then lexicographically in that order (``itertools.combinations``).

    Parameters
    ----------
    candidates : iterable of str
        Strategy ids to combine (ids not in ``STRATEGIES`` are ignored).
    k : int
        Largest portfolio size.

    Returns
    -------
    list of tuple of str
        ``sum_{j=1..k} C(m, j)`` portfolios for ``m`` candidates.
    """
    cands = [s for s in STRATEGIES if s in set(candidates)]
    out: list[tuple[str, ...]] = []
    for size in range(1, min(int(k), len(cands)) + 1):
        out.extend(itertools.combinations(cands, size))
    return out


def portfolio_id(portfolio) -> str:
    """Return the canonical id of a portfolio: strategy ids joined by '+' in STRATEGIES order.

    Parameters
    ----------
    portfolio : iterable of str
        Strategy ids (any order).

    Returns
    -------
    str
        E.g. ``"safe_sleep+preterm_prevention"``.
    """
    order = {s: i for i, s in enumerate(STRATEGIES)}
    return "+".join(sorted(portfolio, key=order.__getitem__))


@dataclass
class Setup:
    """What the evaluation needs: cells, coverage per strategy and cell, lever options.

    Attributes
    ----------
    baseline : Baseline
        The scenario-independent inputs.
    cells : Cells
        The ``n`` cells (year x state x race) of every plan state over the horizon.
    states : list of str
        The plan's states, in :data:`imsim.core.constants.STATES` order (axis ``S``).
    coverage : dict of str to numpy.ndarray
        Candidate strategy -> float ``[n]`` coverage (share of the eligible reached, 0..1).
    options : dict of str to dict
        Candidate strategy -> its lever options (the same in every cell).
    """

    baseline: Baseline
    cells: Cells
    states: list[str]                      # plan states, in STATES order
    coverage: dict[str, np.ndarray]        # candidate strategy -> coverage per cell
    options: dict[str, dict]               # candidate strategy -> lever options


@dataclass
class Evaluation:
    """Outcomes of every portfolio in every state for every draw.

    Axes: ``D`` draws (draw 0 the point), ``P`` portfolios, ``S`` states, ``K`` candidate
    strategies. Every array is float64; deaths and births are counts over the horizon.

    Attributes
    ----------
    portfolios : list of tuple of str
        The ``P`` portfolios.
    states : list of str
        The ``S`` states.
    effects : list of dict
        ``[D]`` evidence values of each draw.
    deaths_baseline : numpy.ndarray
        ``[D, S]`` infant deaths in the baseline arm.
    deaths_averted : numpy.ndarray
        ``[D, P, S]`` baseline minus scenario deaths.
    rd_baseline : numpy.ndarray
        ``[D, S]`` NH black minus NH white IMR, per 1,000 live births (NaN without births).
    rd_change : numpy.ndarray
        ``[D, P, S]`` scenario minus baseline rate difference, per 1,000 live births (negative:
        the gap narrows; NaN replaced by 0).
    excess_averted : numpy.ndarray
        ``[D, P, S]`` excess NH black deaths (above the NH white rate) averted.
    births : numpy.ndarray
        ``[S]`` live births over the horizon.
    births_black : numpy.ndarray
        ``[S]`` NH black live births over the horizon.
    reached : numpy.ndarray
        ``[S, K]`` births reached by each strategy (coverage x eligible births, draw 0).
    strategies : list of str
        The ``K`` candidate strategies.
    timings : dict of str to float
        Seconds per step summed over draws (``*_s``), and the row counts ``unique_rows`` and
        ``arm_rows_per_draw``.
    deaths_averted_by_race : numpy.ndarray or None
        ``[D, P, S, R]`` baseline minus scenario deaths per race/Hispanic origin of the mother
        (``R`` in :data:`imsim.core.constants.RACES` order); sums over ``R`` to
        ``deaths_averted``. None when the constructor did not supply it.
    """

    portfolios: list[tuple[str, ...]]
    states: list[str]
    effects: list[dict[str, float]]
    deaths_baseline: np.ndarray            # [D, S]
    deaths_averted: np.ndarray             # [D, P, S]
    rd_baseline: np.ndarray                # [D, S] NH black - NH white deaths per 1,000 births
    rd_change: np.ndarray                  # [D, P, S] scenario - baseline rate difference
    excess_averted: np.ndarray             # [D, P, S] excess NH black deaths averted
    births: np.ndarray                     # [S] over the horizon
    births_black: np.ndarray               # [S]
    reached: np.ndarray                    # [S, K] births reached per strategy (draw 0)
    strategies: list[str]                  # the candidate strategies (axis K of reached)
    timings: dict[str, float] = field(default_factory=dict)
    deaths_averted_by_race: np.ndarray | None = None   # [D, P, S, R], R in RACES order


@dataclass
class _Layout:
    """Unique rows and the stacked arm rows (precomputed once)."""

    rep: np.ndarray            # [U] representative cell index of each unique row
    weight: np.ndarray         # [U] births summed over the cells merged into the row
    u_state: np.ndarray        # [U] position of the row's state in Setup.states
    u_race: np.ndarray         # [U]
    cov: dict[str, np.ndarray]  # strategy -> coverage per unique row
    src: np.ndarray            # [P*U] unique row of each arm row


def _layout(setup: Setup, portfolios) -> _Layout:
    cells = setup.cells
    cands = list(setup.coverage)
    cov_mat = np.stack([setup.coverage[k] for k in cands], axis=1) if cands else \
        np.zeros((cells.n, 0))
    # Cells merge only if their eligibility attributes agree too (Medicaid expansion by year).
    attrs = setup.baseline.cell_attributes(cells)
    # The year is part of the key: rates move with time (the calibration's trend model).
    key = np.concatenate([cells.year[:, None].astype(float), cells.s_idx[:, None].astype(float),
                          cells.r_idx[:, None].astype(float), cov_mat, attrs.key()], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(first)                 # keep the original cell order
    remap = np.empty_like(order)
    remap[order] = np.arange(order.size)
    rep = first[order]
    u_of_cell = remap[inverse]
    weight = np.bincount(u_of_cell, weights=cells.births.astype(float), minlength=rep.size)
    pos = {s: i for i, s in enumerate(setup.states)}
    u_state = np.array([pos[STATES[s]] for s in cells.s_idx[rep]], dtype=np.int64)
    u_race = cells.r_idx[rep].astype(np.int64)
    cov = {k: setup.coverage[k][rep] for k in cands}
    src = np.tile(np.arange(rep.size), len(portfolios))
    return _Layout(rep, weight, u_state, u_race, cov, src)


@dataclass
class _Stage:
    """The nodes of the prefix tree whose last strategy is ``strategy``, stacked."""

    strategy: str
    first: int                  # store block of the first node (the nodes' blocks are contiguous)
    parent_blocks: list[int]    # store block of each node's parent
    src: np.ndarray             # [m U] unique row of each stacked row
    levers: Levers              # ``strategy`` alone, at its coverage, over the m U rows


@dataclass
class _Tree:
    """The portfolios as a prefix tree in :data:`STRATEGIES` order (precomputed once).

    :func:`imsim.birth.strategies.apply` applies a portfolio's strategies one after another in
    STRATEGIES order, so the arm of ``(s1, s2, s3)`` is the arm of ``(s1, s2)`` with ``s3`` applied
    (``apply`` with the levers of ``s3`` alone). The nodes are the portfolios and all their
    prefixes (with at most ``k`` strategies every prefix is itself a portfolio); node ``j`` is
    block ``j + 1`` of ``U`` rows, block 0 the universal rows (the parent of the one-strategy
    nodes). Each stage applies one strategy to the rows of every node ending in it, stacked, from
    their parents' rows: each strategy runs once per node instead of once per portfolio holding
    it (progesterone: 4 nodes instead of 16 portfolios of 41), on exactly the values the plain
    ``apply`` on the portfolio would give it.
    """

    blocks: int                 # 1 + number of nodes
    port_block: np.ndarray      # [P] store block of each portfolio
    stages: list[_Stage]


def _tree(setup: Setup, lay: _Layout, portfolios, attrs_u) -> _Tree:
    order = {s: i for i, s in enumerate(STRATEGIES)}
    canon = [tuple(sorted(set(p), key=order.__getitem__)) for p in portfolios]
    nodes = {p[:j] for p in canon for j in range(1, len(p) + 1)}
    nodes = sorted(nodes, key=lambda t: (order[t[-1]], len(t), [order[x] for x in t]))
    block = {(): 0, **{t: j + 1 for j, t in enumerate(nodes)}}
    n_u = lay.rep.size
    stages = []
    for k in STRATEGIES:
        group = [t for t in nodes if t[-1] == k]
        if not group:
            continue
        m = len(group)
        src = np.tile(np.arange(n_u), m)
        cov = np.tile(lay.cov[k], m) if k in lay.cov else np.zeros(m * n_u)
        levers = Levers.uniform({k: cov}, setup.options, attrs_u.take(src))
        stages.append(_Stage(k, block[group[0]], [block[t[:-1]] for t in group], src, levers))
    return _Tree(1 + len(nodes), np.array([block[p] for p in canon], dtype=np.int64), stages)


def _concat(parts: list[CellParams]) -> CellParams:
    """The rows of ``parts`` stacked (new arrays)."""
    return CellParams(**{f.name: np.concatenate([getattr(x, f.name) for x in parts])
                         for f in fields(parts[0])})


def _changed(after: CellParams, before: CellParams):
    """Rows whose parameters differ: in any field, in a GA table field, in a death table field
    (3 x bool ``[m]``)."""
    m = after.n
    any_field, ga, death = (np.zeros(m, dtype=bool) for _ in range(3))
    for f in fields(after):
        a, b = getattr(after, f.name), getattr(before, f.name)
        if a is b or np.array_equal(a, b):        # most fields: untouched by the stage
            continue
        d = (a != b).reshape(m, -1).any(axis=1)
        any_field |= d
        if f.name in GA_FIELDS:
            ga |= d
        elif f.name not in DIRECT_FIELDS:
            death |= d
    return any_field, ga, death


def _new_table_rows(sub: CellParams, universal: CellParams, src: np.ndarray, names):
    """The distinct rows of the fields ``names`` among ``sub`` (rows of universal rows ``src``).

    Two rows of the same universal row agree on every column no lever changed, so (universal row,
    the columns a lever changed in some row) identifies a row's values exactly. Returns the rows
    to build (indices into ``sub``) and each row's position among them.
    """
    n = sub.n
    changed_cols = []
    for name in names:
        a = np.asarray(getattr(sub, name), dtype=float).reshape(n, -1)
        d = (a != np.asarray(getattr(universal, name), dtype=float).reshape(
            universal.n, -1)[src]).any(axis=0)
        if d.any():
            changed_cols.append(a[:, d])
    key = np.column_stack([src.astype(float)] + changed_cols)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


@dataclass
class _Rows:
    """The rows the engine evaluates for the arms of one draw (see :func:`_arms`)."""

    tables: Tables             # direct tables of the E rows; GA/death tables: universal, then new
    ga_rows: np.ndarray        # [E] GA table row of each
    death_rows: np.ndarray     # [E] death table row of each
    src: np.ndarray            # [E] unique row of each
    out_row: np.ndarray        # [(1 + N) U] outcome row of every block row (see _arms)


def _arms(tree: _Tree, universal: CellParams, t_univ: Tables, effects, n_u: int,
          timing: dict) -> _Rows:
    """Apply every node's last strategy (the tree's stages) and find the rows to evaluate.

    A node row whose parameters equal its parent's (e.g. Medicaid expansion where the state had
    already expanded) has its parent's outcomes; a row whose GA (death) parameters equal its
    parent's reads its parent's GA (death) table row; other rows get table rows of their own (one
    per distinct parameter row): progesterone changes GA parameters only, so its rows share the
    universal death tables. ``out_row`` gives the outcome row of every row of every block (block
    ``b``: rows ``b U .. (b + 1) U - 1``) in ``[baseline rows (U), the E evaluated rows]``.
    """
    blocks: list[CellParams | None] = [universal] + [None] * (tree.blocks - 1)
    out_row = np.empty(tree.blocks * n_u, dtype=np.int64)
    out_row[:n_u] = np.arange(n_u)
    parts = {"ga": [t_univ.ga_cum], "death": [t_univ.death_cum]}
    table_row = {"ga": out_row.copy(), "death": out_row.copy()}    # rows >= U: set per stage
    n_tab = {"ga": n_u, "death": n_u}
    build = {"ga": (GA_FIELDS, ga_cumulative),
             "death": ([f.name for f in fields(universal)
                        if f.name not in DIRECT_FIELDS and f.name not in GA_FIELDS],
                       death_cumulative)}
    direct = {name: [] for name in DIRECT_FIELDS}
    ev_src, ev_rows = [], {"ga": [], "death": []}
    n_out = n_u
    for st in tree.stages:
        before = _concat([blocks[b] for b in st.parent_blocks])
        after = apply(before.copy(), st.levers, effects)
        differ, *tab_differ = _changed(after, before)
        m = len(st.parent_blocks)
        for j in range(m):                     # node rows: views of the stacked rows
            blocks[st.first + j] = after.take(slice(j * n_u, (j + 1) * n_u))
        parent_rows = np.concatenate([b * n_u + np.arange(n_u) for b in st.parent_blocks])
        rows = slice(st.first * n_u, (st.first + m) * n_u)
        own = np.flatnonzero(differ)
        for kind, changed in zip(("ga", "death"), tab_differ):
            tab = table_row[kind][parent_rows]
            if changed.any():
                t0 = time.perf_counter()
                names, builder = build[kind]
                idx = np.flatnonzero(changed)
                first, inverse = _new_table_rows(after.take(idx), universal, st.src[idx], names)
                parts[kind].append(builder(after.take(idx[first])))
                tab[idx] = n_tab[kind] + inverse
                n_tab[kind] += first.size
                timing["tables_s"] += time.perf_counter() - t0
            table_row[kind][rows] = tab
            ev_rows[kind].append(tab[own])
        out = out_row[parent_rows]
        out[own] = n_out + np.arange(own.size)
        out_row[rows] = out
        n_out += own.size
        for name in DIRECT_FIELDS:
            direct[name].append(getattr(after, name)[own])
        ev_src.append(st.src[own])
    t0 = time.perf_counter()
    cat = (lambda x: np.concatenate(x) if len(x) > 1 else x[0])
    empty = np.zeros(0, dtype=np.int64)
    rows_e = CellParams(**{f.name: np.concatenate(direct[f.name])
                           if f.name in direct and tree.stages else getattr(universal, f.name)[:0]
                           for f in fields(universal)})
    result = _Rows(tables_sharing(rows_e, cat(parts["ga"]), cat(parts["death"])),
                   np.concatenate(ev_rows["ga"]) if tree.stages else empty,
                   np.concatenate(ev_rows["death"]) if tree.stages else empty,
                   np.concatenate(ev_src) if tree.stages else empty, out_row)
    timing["tables_s"] += time.perf_counter() - t0
    return result


def _expected_split(rows: _Rows) -> np.ndarray:
    """Expected outcomes ``[E, N_OUT]`` of the evaluated rows (each reads its own GA and death
    table rows: :func:`imsim.birth.kernels.expected_counts_split_rows`)."""
    t = rows.tables
    out = np.zeros((rows.src.size, N_OUT))
    K.expected_counts_split_rows(t.births.astype(np.float64), t.p_li, t.p_exp, t.p_us, t.p_prog,
                                 t.p_sd, t.p_l3, t.ga_cum, t.death_cum,
                                 np.ascontiguousarray(rows.ga_rows, dtype=np.int64),
                                 np.ascontiguousarray(rows.death_rows, dtype=np.int64), out)
    return out


def _row_sums(out: np.ndarray):
    """Births and deaths of every row: two [n] arrays."""
    return (out[:, OUT_BIRTHS:OUT_BIRTHS + 6].sum(axis=1),
            out[:, OUT_DEATHS:OUT_DEATHS + 18].sum(axis=1))


def _aggregate(out: np.ndarray, group: np.ndarray, n_groups: int):
    """Births and deaths summed per group: two [n_groups] arrays."""
    births = out[:, OUT_BIRTHS:OUT_BIRTHS + 6].sum(axis=1)
    deaths = out[:, OUT_DEATHS:OUT_DEATHS + 18].sum(axis=1)
    return (np.bincount(group, weights=births, minlength=n_groups),
            np.bincount(group, weights=deaths, minlength=n_groups))


def evaluate(setup: Setup, portfolios, draws: list[Draw], calibration=None,
             progress: bool = False, seed: int | None = None) -> Evaluation:
    """Evaluate every portfolio in every state of ``setup`` for every uncertainty draw.

    Parameters
    ----------
    setup : Setup
        Cells, candidate coverage and options.
    portfolios : sequence of tuple of str
        The portfolios (``P``).
    draws : list of Draw
        The uncertainty draws (``D``), from :func:`imsim.analysis.draws.draw_plan` -- the same
        draws ``imsim run`` uses for the same seed and count.
    calibration : CalibratedTargets or None
        The calibration the baseline reproduces (None: the direct fit).
    progress : bool
        Show a progress bar over the draws.
    seed : int, optional
        The plan's seed: projected births vary by draw as in ``imsim run``
        (:meth:`~imsim.inputs.baseline.Baseline.births_factor`); None keeps them at the point.

    Returns
    -------
    Evaluation
        Deaths averted ``[D, P, S]`` and the disparity measures.
    """
    baseline = setup.baseline
    portfolios = [tuple(p) for p in portfolios]
    lay = _layout(setup, portfolios)
    n_u, n_p, n_s, n_r = lay.rep.size, len(portfolios), len(setup.states), len(RACES)
    n_d = len(draws)
    cands = list(setup.coverage)
    ucells = Cells(setup.cells.year[lay.rep], setup.cells.s_idx[lay.rep],
                   setup.cells.r_idx[lay.rep], np.round(lay.weight).astype(np.int64))
    attrs_u = baseline.cell_attributes(ucells)
    # The universal levers: every candidate where it has coverage. The arm levers: each
    # portfolio's strategies on its own stacked copy of the rows.
    levers_u = Levers.uniform({k: lay.cov[k] for k in cands}, setup.options, attrs_u)
    tree = _tree(setup, lay, portfolios, attrs_u)
    # Store row of every arm row: portfolio p's rows are its node's block.
    arm_store = (tree.port_block[:, None] * n_u + np.arange(n_u)[None, :]).ravel()
    n_eval = 0
    g_base = lay.u_state * n_r + lay.u_race                       # [U] -> (state, race)
    g_arm = (np.repeat(np.arange(n_p), n_u) * n_s + lay.u_state[lay.src]) * n_r \
        + lay.u_race[lay.src]

    deaths_b = np.zeros((n_d, n_s))
    averted = np.zeros((n_d, n_p, n_s))
    rd_b = np.zeros((n_d, n_s))
    rd_change = np.zeros((n_d, n_p, n_s))
    excess = np.zeros((n_d, n_p, n_s))
    averted_race = np.zeros((n_d, n_p, n_s, n_r))
    births_s = births_black = None
    reached = np.zeros((n_s, len(cands)))
    t = {"fit_s": 0.0, "params_s": 0.0, "levers_s": 0.0, "tables_s": 0.0, "engine_s": 0.0,
         "aggregate_s": 0.0}
    bar = None
    if progress and n_d > 1:
        from tqdm import tqdm

        bar = tqdm(total=n_d, desc="portfolio draws", unit="draw", leave=False)
    for d, draw in enumerate(draws):
        effects = draw.effects
        t0 = time.perf_counter()
        fit = fit_for(baseline, effects, calibration, draw.calibration_draw)
        t1 = time.perf_counter()
        base = baseline.params(ucells, effects, fit)
        # Universal parameters: the baseline plus every treatment effect a lever would set.
        full = apply(base.copy(), levers_u, effects)
        universal = base.copy()
        for name in TREATMENT_FIELDS:
            setattr(universal, name, getattr(full, name).copy())
        t2 = time.perf_counter()
        t_univ = build_tables(universal)
        tab = {"tables_s": time.perf_counter() - t2}
        ev_rows = _arms(tree, universal, t_univ, effects, n_u, tab)
        n_eval = max(n_eval, ev_rows.src.size)
        t4 = time.perf_counter()
        t3 = t4 - tab["tables_s"]             # levers: the stages without the table building
        out_b = expected(t_univ)               # exact baseline (p_prog = p_sd = 0)
        out_e = _expected_split(ev_rows)
        # Projected births carry their trend's uncertainty in draws d >= 1 (as imsim run).
        if d > 0 and seed is not None:
            fb = baseline.births_factor(setup.cells, seed, draw.index)[lay.rep]
            out_b = out_b * fb[:, None]
            out_e = out_e * fb[ev_rows.src][:, None]
        t5 = time.perf_counter()
        bb, db = _aggregate(out_b, g_base, n_s * n_r)
        # Every arm row's outcomes: its node row's, or the first ancestor's it equals.
        o = ev_rows.out_row[arm_store]
        ba, da = (np.bincount(g_arm, weights=np.concatenate([x, y])[o],
                              minlength=n_p * n_s * n_r)
                  for x, y in zip(_row_sums(out_b), _row_sums(out_e)))
        bb, db = bb.reshape(n_s, n_r), db.reshape(n_s, n_r)
        ba, da = ba.reshape(n_p, n_s, n_r), da.reshape(n_p, n_s, n_r)
        deaths_b[d] = db.sum(axis=1)
        averted[d] = deaths_b[d][None, :] - da.sum(axis=2)
        averted_race[d] = db[None, :, :] - da
        with np.errstate(invalid="ignore", divide="ignore"):
            rate_b = np.where(bb > 0, 1000.0 * db / bb, np.nan)
            rate_a = np.where(ba > 0, 1000.0 * da / ba, np.nan)
        rdb = rate_b[:, _NB] - rate_b[:, _NW]
        rda = rate_a[:, :, _NB] - rate_a[:, :, _NW]
        rd_b[d] = rdb
        rd_change[d] = np.nan_to_num(rda - rdb[None, :])
        # Excess NH black deaths (above the NH white rate) averted: -births_black x change / 1000.
        excess[d] = -bb[None, :, _NB] * rd_change[d] / 1000.0
        if d == 0:
            births_s = bb.sum(axis=1)
            births_black = bb[:, _NB].copy()
            elig = {
                "safe_sleep": out_b[:, OUT_BIRTHS:OUT_BIRTHS + 6].sum(axis=1),
                "smoking_cessation": out_b[:, OUT_SMK],
                "preterm_prevention": out_b[:, OUT_BIRTHS:OUT_BIRTHS + 6].sum(axis=1),
                "preconception_care": out_b[:, OUT_BIRTHS:OUT_BIRTHS + 6].sum(axis=1),
                "risk_appropriate_care": out_b[:, OUT_LT32],
                "social_determinants": out_b[:, OUT_LI],
            }
            for j, k in enumerate(cands):
                reached[:, j] = np.bincount(lay.u_state, weights=lay.cov[k] * elig[k],
                                            minlength=n_s)
        t6 = time.perf_counter()
        t["fit_s"] += t1 - t0
        t["params_s"] += t2 - t1
        t["levers_s"] += t3 - t2
        t["tables_s"] += t4 - t3
        t["engine_s"] += t5 - t4
        t["aggregate_s"] += t6 - t5
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    t["unique_rows"] = float(n_u)
    t["arm_rows_per_draw"] = float(n_u * n_p)
    t["evaluated_rows_per_draw"] = float(n_eval)
    return Evaluation(portfolios=portfolios, states=list(setup.states),
                      effects=[dr.effects for dr in draws],
                      deaths_baseline=deaths_b, deaths_averted=averted, rd_baseline=rd_b,
                      rd_change=rd_change, excess_averted=excess, births=births_s,
                      births_black=births_black, reached=reached, strategies=cands, timings=t,
                      deaths_averted_by_race=averted_race)


__all__ = ["ELIGIBLE", "Evaluation", "Setup", "enumerate_portfolios", "evaluate", "portfolio_id",
           "N_OUT"]
