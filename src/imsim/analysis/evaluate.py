"""Fast, picklable evaluation of a base scenario at many parameter values (for sweeps).

:class:`Evaluator` maps a matrix ``X[k, P]`` of parameter values to outputs ``Y[k, O]`` with the
expected engine, over the scenario's states and horizon. Parameter ids:

* any evidence effect id -- the value replaces the effect (scenario overrides included);
* ``strategies.<strategy>.coverage`` -- one constant coverage replacing the scenario's coverage of
  that strategy over the whole horizon, in every state whose portfolio (or collaborative) uses the
  strategy; per-race ``reach`` still multiplies it;
* ``collaborative.<param>`` for names in :data:`imsim.collaborative.abm.PARAMETERS` -- the
  collaborative ABM is rerun with :func:`imsim.collaborative.abm.apply_parameters`;
* ``calibration`` -- calibration uncertainty as one input ``u`` in [0, 1): posterior draw
  ``floor(u * K)`` of a calibration with ``K`` draws, passed to
  :func:`imsim.inputs.fit.fit_for` as ``fit_for(baseline, effects, cal, d)``. The calibration is
  the evaluator's ``calibration`` argument resolved by
  :func:`imsim.analysis.runner.get_calibration` (``None``: the default calibration; not the
  scenario's ``calibration:`` key). With the direct fit (``"direct"``) the draw changes nothing
  and the input's indices are 0; a NaN ``u`` means the calibration's point estimate.

Outputs: ``deaths_averted`` (national total over the horizon, baseline - scenario),
``imr_change_pct`` (100 (IMR_scen - IMR_base) / IMR_base), ``bw_rate_ratio_change`` (NH black / NH
white IMR ratio, scenario - baseline), ``bw_rate_difference_change`` (NH black - NH white IMR per
1,000, scenario - baseline), ``deaths_averted.<race>`` and ``deaths_averted.<STATE>``.

How it is fast (see docs/sweeps.md): inputs are resolved once; cells that can never differ (same
state, race, strategy options, coverage and eligibility attributes in every year) are merged, births summed (expected
counts are linear in births); the baseline arm is computed once per fit (fits cached by the
effects that enter the baseline); the scenario arm of many rows is built by applying the levers
to stacked copies of the cells with per-cell effect arrays, reusing the kernel tables
(``ga_cum``, ``death_cum``) wherever the levers left their inputs unchanged, and evaluated in one
:func:`imsim.birth.engines.expected` call. Each row's result depends only on that row.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import fields

import numpy as np

from imsim.analysis.draws import posterior_index
from imsim.birth.params import GA_FIELDS
from imsim.birth.strategies import apply
from imsim.inputs.baseline import BASELINE_EFFECTS
from imsim.inputs.fit import fit_for
from imsim.config.sweepids import BASE_OUTPUTS, check_output, parse_parameter  # noqa: F401
from imsim.core.constants import RACES, STATES, STRATEGIES
from imsim.core.errors import InputError

#: CellParams fields read by :func:`imsim.birth.params.death_cumulative` (the GA table reads
#: :data:`imsim.birth.params.GA_FIELDS`).
_DEATH_FIELDS = ("q_neo", "q_suid", "q_oth", "or_nonl3", "or_us_suid", "rr_smk_suid",
                 "or_us_smk", "rr_li_pn", "rr_sd_death", "rr_eet_death", "rr_smk_neo")


class Evaluator:
    """A picklable, deterministic ``X[k, P] -> Y[k, O]`` for a base scenario (module docstring).

    Rows are stacked into engine calls (``batch`` rows per call on the general path; on the
    grouped path as many as keep about :data:`GROUP_ROWS` group-rows per call); the batching
    never changes results.
    A NaN ``calibration`` value means "the point fit". The prepared state (resolved inputs,
    caches) is built on first use in each process and is not pickled.

    Parameters
    ----------
    scenario : Scenario
        The base scenario.
    parameters : sequence of str
        The ``P`` parameter ids (see the module docstring).
    outputs : sequence of str
        The ``O`` output ids (see the module docstring).
    calibration : str or path or CalibratedTargets, optional
        The calibration the baseline reproduces (:func:`imsim.analysis.runner.get_calibration`;
        None: the default calibration).
    batch : int
        Rows per engine call on the general path (each row stacks every unique cell).

    Raises
    ------
    InputError
        For an unknown parameter or output id, or ``collaborative.*`` parameters without a
        collaborative block in the scenario.
    """

    def __init__(self, scenario, parameters, outputs, calibration=None, batch: int = 8):
        self.scenario = scenario
        self.parameters = [parse_parameter(p, where=f"parameters.{p}") for p in parameters]
        self.outputs = list(outputs)
        for o in self.outputs:
            check_output(o, scenario, where="outputs")
        if any(p.kind == "collaborative" for p in self.parameters) and \
                scenario.collaborative is None:
            raise InputError("collaborative.* parameters need a base scenario with a "
                             "collaborative block", where="parameters")
        self.calibration = calibration
        self.batch = int(batch)
        self._st = None
        #: Identifies this evaluator across pickled copies (a sweep worker keeps the first copy
        #: it gets, prepared, for the later chunks).
        self.token = uuid.uuid4().hex

    # -- pickling: the prepared state is rebuilt lazily in each process ----------------------
    def __getstate__(self):
        d = dict(self.__dict__)
        d["_st"] = None
        return d

    @property
    def n_params(self) -> int:
        """Number of parameters ``P`` (columns of ``X``)."""
        return len(self.parameters)

    def point_values(self) -> np.ndarray:
        """Return each parameter's value in the base scenario.

        Effects: the evidence point value or the scenario's override; coverage: the mean
        coverage over the cells that use the strategy (0 if none does); collaborative
        parameters: their default; ``calibration``: NaN (the point fit).

        Returns
        -------
        numpy.ndarray
            float64 ``[P]``.
        """
        st = self._state()
        out = []
        for p in self.parameters:
            if p.kind == "effect":
                out.append(st.point_effects[p.target])
            elif p.kind == "coverage":
                out.append(st.point_coverage.get(p.target, math.nan))
            elif p.kind == "collaborative":
                from imsim.collaborative.abm import PARAMETERS

                out.append(float(PARAMETERS[p.target][0]))
            else:
                out.append(math.nan)
        return np.asarray(out, dtype=float)

    def warm(self) -> None:
        """Prepare this process's state (inputs, the point fit and its groups, kernels) by
        evaluating the point row once."""
        self(self.point_values()[None, :])

    # -- preparation -------------------------------------------------------------------------
    def _state(self):
        if self._st is None:
            self._st = _Prepared(self)
        return self._st

    def __call__(self, X) -> np.ndarray:
        """Return the outputs ``Y[k, O]`` of parameter rows ``X[k, P]`` (float64)."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.shape[1] != len(self.parameters):
            raise ValueError(f"X has {X.shape[1]} columns, expected {len(self.parameters)}")
        st = self._state()
        Y = np.empty((X.shape[0], len(self.outputs)))
        grouped = st.grouped_batch()
        step = max(grouped or self.batch, 1)
        for a in range(0, X.shape[0], step):
            Y[a:a + step] = st.evaluate(X[a:a + step])
        return Y


def _set_threads_1():
    try:
        import numba

        if numba.get_num_threads() != 1:
            numba.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass


class _Prepared:
    """Everything an :class:`Evaluator` reuses between rows (built once per process)."""

    def __init__(self, ev: Evaluator):
        from imsim.analysis import runner

        self.ev = ev
        sc = ev.scenario
        self.inputs = inputs = runner.resolve_inputs(sc)
        self.point_effects = inputs.evidence.point()
        self.cov_params = [(j, p.target) for j, p in enumerate(ev.parameters)
                           if p.kind == "coverage"]
        self.eff_params = [(j, p.target) for j, p in enumerate(ev.parameters)
                           if p.kind == "effect"]
        self.col_params = [(j, p.target) for j, p in enumerate(ev.parameters)
                           if p.kind == "collaborative"]
        self.cal_param = next((j for j, p in enumerate(ev.parameters)
                               if p.kind == "calibration"), None)
        if self.col_params and sc.collaborative is None:
            raise InputError("collaborative.* parameters need a base scenario with a "
                             "collaborative block", where="parameters")
        cells = inputs.cells
        n = cells.n
        states = np.asarray(STATES)[cells.s_idx]
        races = np.asarray(RACES)[cells.r_idx]
        # Where each strategy is used, and the per-race reach multiplier.
        self.uses = {}
        self.reach = {}
        for k in STRATEGIES:
            uses = np.array([k in inputs.options[i] for i in range(n)])
            reach = np.ones(n)
            for i in np.flatnonzero(uses):
                block = sc.portfolio(states[i]).active().get(k)
                if block is not None and block.reach and races[i] in block.reach:
                    reach[i] = block.reach[races[i]]
            self.uses[k] = uses
            self.reach[k] = reach
        self.point_coverage = {}
        for _, k in self.cov_params:
            cov = inputs.coverage[k][self.uses[k]]
            self.point_coverage[k] = float(np.mean(cov)) if cov.size else 0.0
        # Option group id per strategy and cell (0: strategy not used in the cell).
        levers = inputs.levers
        opt_id = np.zeros((n, len(STRATEGIES)))
        for j, k in enumerate(STRATEGIES):
            opt_id[:, j] = np.where(self.uses[k], levers.option_index[k] + 1, 0)
        self.opt_id = opt_id
        # Coverage as the levers see it (an overridden strategy: where it is used, and reach).
        cov = np.stack([inputs.coverage[k] for k in STRATEGIES], axis=1)
        overridden = {k for _, k in self.cov_params}
        for j, k in enumerate(STRATEGIES):
            if k in overridden:
                cov[:, j] = np.where(self.uses[k], self.reach[k], -1.0)
        # Merge cells that can never differ (not with a collaborative: its coverage is per row).
        if sc.collaborative is None:
            # The year is part of the key: rates move with time (the calibration's trend).
            key = np.column_stack([cells.year, cells.s_idx, cells.r_idx, opt_id, cov,
                                   levers.cells.key()])
            _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
            inverse = inverse.ravel()
        else:
            first = np.arange(n)
            inverse = np.arange(n)
        order = np.argsort(first, kind="stable")        # keep cell order of first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        self.member = rank[inverse]                      # cell -> unique index
        self.rep = first[order]                          # unique -> representative cell
        nu = self.rep.size
        from imsim.inputs.baseline import Cells

        births = np.zeros(nu, dtype=np.int64)
        np.add.at(births, self.member, cells.births)
        self.ucells = Cells(cells.year[self.rep].copy(), cells.s_idx[self.rep].copy(),
                            cells.r_idx[self.rep].copy(), births)
        self.nu = nu
        self.u_options = [inputs.options[i] for i in self.rep]
        self.u_opt_id = opt_id[self.rep]
        self.u_cov_key = cov[self.rep]
        self.u_coverage = {k: inputs.coverage[k][self.rep].copy() for k in STRATEGIES}
        self.u_uses = {k: self.uses[k][self.rep] for k in STRATEGIES}
        self.u_reach = {k: self.reach[k][self.rep] for k in STRATEGIES}
        self.u_inputs = runner.RunInputs(sc, inputs.baseline, self.ucells, self.u_coverage,
                                         self.u_options, inputs.evidence, inputs.collaborative,
                                         levers=levers.take(self.rep))
        # Aggregation matrices: unique cell -> race, state.
        self.race_of = self.ucells.r_idx
        st_list = sc.state_list
        s_pos = {STATES.index(s): i for i, s in enumerate(st_list)}
        self.state_of = np.array([s_pos[s] for s in self.ucells.s_idx])
        self.n_states = len(st_list)
        self.state_names = st_list
        self._base_cache: dict = {}
        self._abm_cache: dict = {}
        # The scenario's own calibration unless the sweep names one (as `imsim run` does).
        self.cal = runner.get_calibration(ev.calibration if ev.calibration is not None
                                          else sc.calibration)
        self.calib_k = 0 if self.cal is None else int(self.cal.n_draws)

    # -- the baseline arm, once per fit -------------------------------------------------------
    def _base(self, effects: dict, draw):
        from imsim.analysis import runner
        from imsim.birth.engines import expected
        from imsim.birth.params import build_tables

        key = (tuple(effects[k] for k in BASELINE_EFFECTS if k in effects), draw)
        hit = self._base_cache.get(key)
        if hit is not None:
            return hit
        fit = fit_for(self.inputs.baseline, effects, self.cal, draw)
        base = self.inputs.baseline.params(self.ucells, effects, fit)
        pre = runner.scenario_params(self.u_inputs, base, effects, only=set())
        tb = build_tables(base)
        out_b = expected(tb)
        tp = tb if _same_params(base, pre) else build_tables(pre)
        if len(self._base_cache) > 256:
            self._base_cache.clear()
        hit = (pre, tp, out_b, _Groups(self, base, tb, pre, tp))
        self._base_cache[key] = hit
        return hit

    def _abm_coverage(self, values: tuple) -> dict[str, np.ndarray]:
        """Coverage per (unique = every) cell from a rerun of the collaborative ABM."""
        from imsim.collaborative.abm import (
            annual_coverage,
            apply_parameters,
            parse_collaborative,
            run_collaborative,
        )

        if values in self._abm_cache:
            return self._abm_cache[values]
        sc = self.ev.scenario
        cfg = parse_collaborative(sc.collaborative)
        cfg = apply_parameters(cfg, {name: v for (_, name), v in zip(self.col_params, values)})
        annual = annual_coverage(run_collaborative(cfg, (sc.years[0], sc.years[1]), sc.seed))
        from imsim.analysis.runner import abm_lookup, cell_coverage

        out, _ = cell_coverage(sc, self.inputs.cells, abm_lookup(annual))
        if len(self._abm_cache) > 64:
            self._abm_cache.clear()
        self._abm_cache[values] = out
        return out

    # -- a batch of rows ------------------------------------------------------------------------
    def evaluate(self, X: np.ndarray) -> np.ndarray:
        """Outputs ``[k, O]`` of rows ``X[k, P]``: the grouped path (:class:`_Groups`) where it
        applies, else :meth:`evaluate_plain`. Both give the same numbers (to rounding)."""
        _set_threads_1()
        if self.col_params:
            return self.evaluate_plain(X)
        if self.cal_param is None and not any(eid in BASELINE_EFFECTS
                                              for _, eid in self.eff_params):
            # Every row has the point fit (no swept input enters the baseline).
            grp = self._base(self.point_effects, None)[3]
            y = grp.evaluate(X)
            return self.evaluate_plain(X) if y is None else y
        rows = self._rows(X)
        Y = np.empty((X.shape[0], len(self.ev.outputs)))
        # Rows of one fit share one grouping of the cells.
        by_fit: dict = {}
        for i, (eff, draw) in enumerate(rows):
            key = (tuple(eff[k] for k in BASELINE_EFFECTS if k in eff), draw)
            by_fit.setdefault(key, []).append(i)
        for idx in by_fit.values():
            eff, draw = rows[idx[0]]
            grp = self._base(eff, draw)[3]
            sub = X[idx]
            y = grp.evaluate(sub)
            Y[idx] = self.evaluate_plain(sub) if y is None else y
        return Y

    def grouped_batch(self) -> int | None:
        """Rows per call on the grouped path (None: rows take the general path)."""
        if self.col_params:
            return None
        ng = self._base(self.point_effects, None)[3].ng
        return max(1, GROUP_ROWS // ng)

    def _rows(self, X: np.ndarray) -> list:
        """(effects, calibration draw) of each row."""
        rows = []
        for i in range(X.shape[0]):
            eff = dict(self.point_effects)
            for j, eid in self.eff_params:
                eff[eid] = float(X[i, j])
            draw = None
            if self.cal_param is not None and self.calib_k:
                u = X[i, self.cal_param]
                if np.isfinite(u):
                    draw = posterior_index(u, self.calib_k)
            rows.append((eff, draw))
        return rows

    def evaluate_plain(self, X: np.ndarray) -> np.ndarray:
        """Outputs ``[k, O]``: every unique cell of every row through the levers and the
        expected engine (the general path; the collaborative's per-row coverage takes it)."""
        from imsim.birth.engines import expected

        _set_threads_1()
        k = X.shape[0]
        nu = self.nu
        rows = self._rows(X)
        # Baseline arm per row (cached by fit).
        bases = [self._base(eff, draw) for eff, draw in rows]
        # Scenario arm: stack the rows' pre-lever params as extra cells.
        pre = _concat([b[0] for b in bases])
        scen = pre.copy()
        cov = {s: np.tile(self.u_coverage[s], k) for s in STRATEGIES}
        for j, s in self.cov_params:
            v = np.clip(X[:, j], 0.0, 1.0)
            cov[s] = np.where(np.tile(self.u_uses[s], k),
                              np.repeat(v, nu) * np.tile(self.u_reach[s], k), 0.0)
        if self.col_params:
            for i in range(k):
                vals = tuple(float(X[i, j]) for j, _ in self.col_params)
                abm = self._abm_coverage(vals)
                for s in STRATEGIES:
                    if s in {t for _, t in self.cov_params}:
                        continue
                    cov[s][i * nu:(i + 1) * nu] = abm[s]
        eff_ids = list(self.point_effects)
        E = {e: np.repeat(np.array([r[0][e] for r in rows]), nu) for e in eff_ids}
        # The one strategy pipeline, on k stacked copies of the unique cells with per-row
        # effects and coverage (exposure changes are already in `pre`).
        levers = self.u_inputs.levers.take(np.tile(np.arange(nu), k))
        for s in STRATEGIES:
            levers = levers.with_coverage(s, cov[s])
        apply(scen, levers, E, exposures=False)
        tables = self._tables(scen, pre, [b[1] for b in bases])
        out_s = expected(tables).reshape(k, nu, -1)
        out_b = np.stack([b[2] for b in bases])
        return self._outputs(out_b, out_s)

    def _tables(self, scen, pre, pre_tables):
        """Kernel tables of the stacked scenario arm, rebuilding only what the levers changed."""
        from imsim.birth.params import build_tables, build_tables_reusing

        n = scen.n
        changed = np.zeros(n, dtype=bool)
        for f in GA_FIELDS + _DEATH_FIELDS:
            a, b = getattr(scen, f), getattr(pre, f)
            if a is not b:
                changed |= (a != b).reshape(n, -1).any(axis=1)
        if changed.all():
            return build_tables(scen)
        return build_tables_reusing(scen, np.concatenate([t.ga_cum for t in pre_tables]),
                                    np.concatenate([t.death_cum for t in pre_tables]), changed)

    def _outputs(self, out_b: np.ndarray, out_s: np.ndarray) -> np.ndarray:
        """Outputs [k, O] from counts [k, nu, N_OUT] of both arms.

        Every reduction runs on one row at a time with fixed shapes, so a row's result never
        depends on how many rows share the batch (numpy may order multi-row reductions
        differently).
        """
        return np.stack([self._outputs_row(out_b[i], out_s[i]) for i in range(out_b.shape[0])])

    def _outputs_row(self, ob: np.ndarray, os_: np.ndarray) -> np.ndarray:
        bb, db = _births_deaths(ob)
        bs, ds = _births_deaths(os_)

        def by(group, n_groups, x):
            return np.array([np.sum(x[group == g]) for g in range(n_groups)])

        nr = len(RACES)
        race_db, race_ds = by(self.race_of, nr, db), by(self.race_of, nr, ds)
        race_bb, race_bs = by(self.race_of, nr, bb), by(self.race_of, nr, bs)
        state_cache = None
        if any(o.split(".", 1)[-1] in self.state_names for o in self.ev.outputs):
            state_cache = (by(self.state_of, self.n_states, db)
                           - by(self.state_of, self.n_states, ds))
        return self._output_columns(np.sum(db), np.sum(ds), np.sum(bb), np.sum(bs), race_db,
                                    race_ds, race_bb, race_bs, state_cache)

    def _output_columns(self, db, ds, bb, bs, race_db, race_ds, race_bb, race_bs,
                        state_averted) -> np.ndarray:
        """The outputs of one row from its totals: deaths and births of both arms, by race, and
        deaths averted by state (None if no output needs them)."""
        w, b = RACES.index("nh_white"), RACES.index("nh_black")
        with np.errstate(divide="ignore", invalid="ignore"):
            rate_b = 1000.0 * race_db / race_bb
            rate_s = 1000.0 * race_ds / race_bs
            imr_b = 1000.0 * db / bb
            imr_s = 1000.0 * ds / bs
        cols = []
        for o in self.ev.outputs:
            if o == "deaths_averted":
                cols.append(db - ds)
            elif o == "imr_change_pct":
                cols.append(100.0 * (imr_s - imr_b) / imr_b)
            elif o == "bw_rate_ratio_change":
                cols.append(rate_s[b] / rate_s[w] - rate_b[b] / rate_b[w])
            elif o == "bw_rate_difference_change":
                cols.append((rate_s[b] - rate_s[w]) - (rate_b[b] - rate_b[w]))
            else:
                what = o.split(".", 1)[1]
                if what in RACES:
                    r = RACES.index(what)
                    cols.append(race_db[r] - race_ds[r])
                else:
                    cols.append(state_averted[self.state_names.index(what)])
        return np.array(cols, dtype=float)


#: Group-rows per call of the grouped path (rows x groups): large enough to spread the
#: per-call overhead, small enough for memory (a group-row holds about 100 parameters).
GROUP_ROWS = 16384
#: CellParams fields that differ between cells of one group (:class:`_Groups`); no lever edits
#: them (checked on every batch).
_GROUP_FREE = ("births", "uid", "q_neo", "q_suid", "q_oth")
#: Death-table inputs a lever may change (social-determinants reach's risk ratio aside).
_DEATH_RATIOS = ("or_nonl3", "or_us_suid", "rr_smk_suid", "or_us_smk", "rr_li_pn",
                 "rr_eet_death", "rr_smk_neo")


class _Grouping:
    """Cells grouped by equal key rows: ``group[c]``, representatives ``rep[g]`` (first
    member), and the members of group ``g`` as ``members[member_start[g]:member_start[g + 1]]``
    (each group's cells in cell order)."""

    def __init__(self, key: np.ndarray):
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        self.group = rank[inverse].astype(np.int64)
        self.rep = first[order]
        self.n = self.rep.size
        self.members = np.argsort(self.group, kind="stable").astype(np.int64)
        self.member_start = np.concatenate(
            [[0], np.cumsum(np.bincount(self.group, minlength=self.n))]).astype(np.int64)


def _param_key(params, nu: int) -> list:
    """Key columns of every CellParams field except :data:`_GROUP_FREE` (scalars: same in every
    cell, no column)."""
    cols = []
    for f in fields(params):
        a = np.asarray(getattr(params, f.name))
        if f.name not in _GROUP_FREE and a.ndim:
            cols.append(a.reshape(nu, -1).astype(float))
    return cols


def _row_sums(x: np.ndarray, group, n_groups: int) -> np.ndarray:
    """``[k, n_groups]`` sums of ``x[k, n]`` by ``group[n]``, each row on its own in cell order."""
    from imsim.birth.kernels import row_group_sums

    out = np.zeros((x.shape[0], n_groups))
    row_group_sums(np.ascontiguousarray(x, dtype=float), np.asarray(group, dtype=np.int64),
                   n_groups, out)
    return out


def _grouped_deaths(rows, k: int, grouping: _Grouping, cells, t2, use) -> np.ndarray:
    """Expected deaths ``[k, n_cells]``: :func:`imsim.birth.kernels.expected_deaths_grouped` on
    group-row parameters ``rows`` (``k * grouping.n`` of them), with each cell's death rates
    from ``cells`` (CellParams of every cell), its death table's ``t2`` and ``use`` per
    group-row."""
    from imsim.birth import kernels as K
    from imsim.birth.params import RISK_CAP

    f = np.ascontiguousarray
    m = rows.n

    def col(name):
        return f(np.broadcast_to(getattr(rows, name), (m,)), dtype=float)

    out = np.zeros((k, cells.n))
    K.expected_deaths_grouped(
        col("p_li"), f(rows.p_exp, dtype=float), f(rows.p_us, dtype=float), col("p_prog"),
        col("p_sd"), col("p_l3"), *(f(getattr(rows, name), dtype=float) for name in GA_FIELDS),
        *(col(name) for name in _DEATH_RATIOS[:5]), col("rr_sd_death"),
        *(col(name) for name in _DEATH_RATIOS[5:]), f(use, dtype=np.int64),
        f(cells.births, dtype=float), *(f(getattr(cells, name), dtype=float)
                                        for name in ("q_neo", "q_suid", "q_oth")),
        t2, grouping.member_start, grouping.members, RISK_CAP, out)
    return out


class _Groups:
    """The sweep's fast path for one fit: levers applied once per group of cells, not per cell.

    A group is a set of unique cells that agree in everything the levers read or write --
    options, coverage, eligibility attributes (race among them) and every pre-lever parameter --
    except their reference death probabilities ``q_*`` and births: typically one race in every
    year of a projected horizon and in every state whose structure is the national one, which
    differ only by the trend's and the state's death rates. Per batch of rows the levers run on
    ``k x n_groups`` group-rows, the GA part of the expected engine runs once per group-row, and
    :func:`imsim.birth.kernels.expected_deaths_grouped` sums each member cell's deaths with its
    own death rates, reading its precomputed death table wherever the group-row's odds and risk
    ratios are those the table was built with. The baseline arm goes through the same kernel
    (grouped on its own parameters), so a row that changes nothing averts exactly 0. Outputs
    need deaths by cell only (births do not change between arms). If a batch's levers changed
    a ``q_*`` field (no strategy does today) :meth:`evaluate` returns None and the batch takes
    :meth:`_Prepared.evaluate_plain`.
    """

    def __init__(self, prep: _Prepared, base, tb, pre, tp):
        self.prep = prep
        nu = prep.nu
        # Not the state or race: cells of different states that agree in all of these are
        # evaluated alike (race-specific effects read the race attribute, which is in the key).
        self.grouping = g = _Grouping(np.column_stack(
            [prep.u_opt_id, prep.u_cov_key, prep.u_inputs.levers.cells.key()]
            + _param_key(pre, nu)))
        self.ng = g.n
        self.pre_g = pre.take(g.rep)
        self.pre = pre
        self.t2 = np.ascontiguousarray(tp.death_cum[..., 2])
        # The baseline arm, through the same kernel.
        gb = _Grouping(np.column_stack(_param_key(base, nu)))
        db = _grouped_deaths(base.take(gb.rep), 1, gb, base,
                             np.ascontiguousarray(tb.death_cum[..., 2]),
                             np.full(gb.n, 2, dtype=np.int64))[0]
        bb = np.asarray(base.births, dtype=float)
        pr = prep
        # Sums in the scenario arm's order (so equal deaths give an exact 0).
        self.race_db = _row_sums(db[None, :], pr.race_of, len(RACES))[0]
        self.race_bb = _row_sums(bb[None, :], pr.race_of, len(RACES))[0]
        self.state_db = _row_sums(db[None, :], pr.state_of, pr.n_states)[0]
        self.db = _row_sums(db[None, :], np.zeros(nu), 1)[0, 0]
        self.bb = _row_sums(bb[None, :], np.zeros(nu), 1)[0, 0]
        self.want_states = any(o.split(".", 1)[-1] in pr.state_names for o in pr.ev.outputs)

    def evaluate(self, X: np.ndarray):
        """Outputs ``[k, O]`` of rows ``X`` (all of this fit), or None to take the plain path."""
        pr = self.prep
        k, ng = X.shape[0], self.ng
        tile = np.tile(np.arange(ng), k)
        scen = self.pre_g.take(tile)                        # k stacked copies of the groups
        u_rep = self.grouping.rep[tile]                     # unique cell of each group-row
        levers = pr.u_inputs.levers.take(u_rep)
        for j, s in pr.cov_params:
            v = np.clip(X[:, j], 0.0, 1.0)
            levers = levers.with_coverage(
                s, np.where(pr.u_uses[s][u_rep], np.repeat(v, ng) * pr.u_reach[s][u_rep], 0.0))
        E = dict(pr.point_effects)
        for j, eid in pr.eff_params:
            E[eid] = np.repeat(X[:, j].astype(float), ng)
        apply(scen, levers, E, exposures=False)
        m = scen.n

        def same_as_pre(name):
            """[k * ng]: the group-row's field equals the groups' pre-lever value."""
            a, b = np.asarray(getattr(scen, name)), np.asarray(getattr(self.pre_g, name))
            if a.ndim == 0 or b.ndim == 0:
                return np.broadcast_to(a == b, (m,))
            eq = a.reshape(k, ng, -1) == b.reshape(1, ng, -1)
            return eq.all(axis=2).reshape(m)

        for name in _GROUP_FREE:
            if not same_as_pre(name).all():
                return None
        # Where each group-row may read the cells' death tables (built with pre's ratios).
        same = np.ones(m, dtype=bool)
        for fname in _DEATH_RATIOS:
            same &= same_as_pre(fname)
        use = np.where(same, np.where(same_as_pre("rr_sd_death"), 2, 1), 0).astype(np.int64)
        deaths = _grouped_deaths(scen, k, self.grouping, self.pre, self.t2, use)
        race_ds = _row_sums(deaths, pr.race_of, len(RACES))
        state_ds = _row_sums(deaths, pr.state_of, pr.n_states) if self.want_states else None
        total = _row_sums(deaths, np.zeros(pr.nu), 1)
        return np.stack([
            pr._output_columns(self.db, total[i, 0], self.bb, self.bb, self.race_db, race_ds[i],
                               self.race_bb, self.race_bb,
                               None if state_ds is None else self.state_db - state_ds[i])
            for i in range(k)])


def _births_deaths(out: np.ndarray):
    """Births and deaths (every band and cause) of each cell from expected counts."""
    from imsim.birth.kernels import N_BANDS, N_CAUSES, OUT_BIRTHS, OUT_DEATHS

    births = out[:, OUT_BIRTHS:OUT_BIRTHS + N_BANDS].sum(axis=1)
    deaths = out[:, OUT_DEATHS:OUT_DEATHS + N_CAUSES * N_BANDS].sum(axis=1)
    return births, deaths


def _same_params(a, b) -> bool:
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))


def _concat(params_list):
    """Stack CellParams of several rows as extra cells."""
    from imsim.birth.params import CellParams

    if len(params_list) == 1:
        return params_list[0].copy()
    return CellParams(**{f.name: np.concatenate([getattr(p, f.name) for p in params_list])
                         for f in fields(params_list[0])})


class IshigamiEvaluator:
    """Test/demo model with known Sobol indices: SALib's Ishigami function.

    Takes three inputs in [0, 1] (mapped linearly to [-pi, pi], which leaves the indices
    unchanged) and returns its value once per requested output column. Counts its rows in
    ``self.calls`` (per process).

    Parameters
    ----------
    n_outputs : int
        Number of (identical) output columns.
    """

    def __init__(self, n_outputs: int = 1):
        self.n_outputs = n_outputs
        self.calls = 0

    def __call__(self, X):
        from SALib.test_functions import Ishigami

        X = np.asarray(X, dtype=float)
        self.calls += X.shape[0]
        y = Ishigami.evaluate(-np.pi + 2.0 * np.pi * X)
        return np.repeat(y[:, None], self.n_outputs, axis=1)

    def point_values(self):
        """Return the centre of the unit cube, float64 ``[3]`` (0.5 each)."""
        return np.full(3, 0.5)
