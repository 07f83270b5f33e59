"""``imsim sweep``: global sensitivity (SALib Sobol, Morris) and probabilistic analysis (PSA).

A sweep file (see docs/sweeps.md)::

    name: safe-sleep-sobol
    scenario: ../scenarios/safe_sleep.yaml   # relative to the sweep file
    method: sobol                            # sobol | morris | psa
    samples: 1024                            # N (a power of two for sobol)
    seed: 1
    second_order: false                      # sobol: also S2 (indices_s2.csv)
    outputs: [deaths_averted, imr_change_pct]
    parameters:
      unsafe_sleep_suid_or: {}               # the evidence library's distribution
      strategies.safe_sleep.coverage: {low: 0.2, high: 0.8}
      calibration: {group: true}
    thresholds: {deaths_averted: [100, 500]} # psa: P(output > t)

Sampling is done on the unit hypercube (SALib for sobol/morris, a seeded numpy Generator for
psa) and mapped through each parameter's quantile function, so Sobol indices refer to the
parameters' own distributions. Rows are evaluated in fixed chunks (boundaries independent of the
executor) on a local process pool or a Dask cluster; each finished chunk is written to
``<out>.partial/chunks/`` so ``--resume`` redoes nothing, and the folder is renamed to ``<out>``
only when everything is written.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .errors import InputError, did_you_mean

METHODS = ("sobol", "morris", "psa")
TOP_KEYS = ("name", "description", "scenario", "method", "samples", "seed", "outputs",
            "parameters", "thresholds", "second_order", "levels", "chunk_size", "conf_level",
            "num_resamples")
SPEC_KEYS = ("low", "high", "dist", "mode", "mean", "sd", "median", "sdlog", "group")
DISTS = {"unif": "uniform", "uniform": "uniform", "triang": "triangular",
         "triangular": "triangular", "norm": "normal", "normal": "normal",
         "lognorm": "lognormal", "lognormal": "lognormal"}
DEFAULT_CHUNK = 256
_Z95 = 3.919927969080108


# ---------------------------------------------------------------------------------------------
# The sweep definition
# ---------------------------------------------------------------------------------------------

class Dist:
    """A parameter's distribution: a quantile function and a 95% range."""

    def __init__(self, kind: str, **kw):
        self.kind = kind
        self.kw = kw

    def ppf(self, q):
        from scipy import stats

        q = np.asarray(q, dtype=float)
        k = self.kw
        if self.kind == "evidence":
            return k["effect"].ppf(q)
        if self.kind == "uniform":
            return k["low"] + q * (k["high"] - k["low"])
        if self.kind == "triangular":
            c = (k["mode"] - k["low"]) / (k["high"] - k["low"])
            return stats.triang.ppf(q, c, loc=k["low"], scale=k["high"] - k["low"])
        if self.kind == "normal":
            return stats.norm.ppf(q, loc=k["mean"], scale=k["sd"])
        if self.kind == "lognormal":
            return np.exp(stats.norm.ppf(q, loc=math.log(k["median"]), scale=k["sdlog"]))
        raise ValueError(self.kind)

    @property
    def unbounded(self) -> bool:
        if self.kind == "evidence":
            return self.kw["effect"].dist in ("lognormal", "normal")
        return self.kind in ("normal", "lognormal")

    def describe(self) -> dict:
        if self.kind == "evidence":
            e = self.kw["effect"]
            return {"dist": f"evidence:{e.dist}", "point": e.point, "lo": e.lo, "hi": e.hi}
        return {"dist": self.kind, **self.kw}


def _num(v, file, where, what="a number"):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"expected {what}, got {v!r}", file=file, where=where)
    return float(v)


def _int(v, file, where, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"expected a whole number, got {v!r}", file=file, where=where)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError(f"{v} is out of range ({lo} to {hi})", file=file, where=where)
    return v


class Sweep:
    """A validated sweep file."""

    def __init__(self, data: dict, file: str | None = None, base_dir: Path | None = None):
        f = file
        if not isinstance(data, dict):
            raise InputError("a sweep must be a mapping of keys", file=f)
        for key in data:
            if key not in TOP_KEYS:
                raise InputError(f"unknown key '{key}'{did_you_mean(str(key), TOP_KEYS)}; "
                                 f"allowed keys: {', '.join(TOP_KEYS)}", file=f, where=str(key))
        for key in ("name", "scenario", "method", "samples", "outputs", "parameters"):
            if key not in data:
                raise InputError("required key is missing", file=f, where=key)
        name = data["name"]
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").replace(
                ".", "").isalnum() or len(name) > 80:
            raise InputError(f"name must be 1-80 letters, digits, '-', '_' or '.', got {name!r}",
                             file=f, where="name")
        self.name = name
        self.description = str(data.get("description", ""))
        method = data["method"]
        if method not in METHODS:
            raise InputError(f"unknown method {method!r}{did_you_mean(str(method), METHODS)}; "
                             f"allowed: {', '.join(METHODS)}", file=f, where="method")
        self.method = method
        self.samples = _int(data["samples"], f, "samples", 1, 1 << 20)
        if method == "sobol" and self.samples & (self.samples - 1):
            lo = 1 << (self.samples.bit_length() - 1)
            raise InputError(f"samples must be a power of two for sobol, got {self.samples} "
                             f"(try {lo} or {lo * 2})", file=f, where="samples")
        self.seed = _int(data.get("seed", 0), f, "seed", 0, 2**32 - 1)
        self.second_order = data.get("second_order", False)
        if not isinstance(self.second_order, bool):
            raise InputError(f"expected true or false, got {self.second_order!r}", file=f,
                             where="second_order")
        if "second_order" in data and method != "sobol":
            raise InputError("second_order applies to method sobol only", file=f,
                             where="second_order")
        self.levels = _int(data.get("levels", 4), f, "levels", 2, 100)
        if "levels" in data and method != "morris":
            raise InputError("levels applies to method morris only", file=f, where="levels")
        self.chunk_size = _int(data.get("chunk_size", DEFAULT_CHUNK), f, "chunk_size", 1,
                               1 << 20)
        self.conf_level = _num(data.get("conf_level", 0.95), f, "conf_level")
        if not 0 < self.conf_level < 1:
            raise InputError(f"conf_level must be in (0, 1), got {self.conf_level}", file=f,
                             where="conf_level")
        self.num_resamples = _int(data.get("num_resamples", 100), f, "num_resamples", 10,
                                  100_000)
        # The base scenario (relative to the sweep file).
        sc = data["scenario"]
        if not isinstance(sc, str):
            raise InputError(f"expected a path to a scenario file, got {sc!r}", file=f,
                             where="scenario")
        path = Path(sc)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        from .scenario import load_scenario

        try:
            self.scenario = load_scenario(path)
        except InputError as exc:
            raise InputError(f"base scenario: {exc.format()}", file=f, where="scenario") from None
        self.scenario_path = str(path)
        if self.scenario.engine != "expected":
            pass  # sweeps always use the expected engine; documented
        # Outputs.
        outs = data["outputs"]
        if isinstance(outs, str):
            outs = [outs]
        if not isinstance(outs, list) or not outs:
            raise InputError(f"outputs must be a non-empty list, got {outs!r}", file=f,
                             where="outputs")
        from .evaluate import check_output, parse_parameter

        for i, o in enumerate(outs):
            check_output(o, self.scenario, file=f, where=f"outputs[{i}]")
        if len(set(outs)) != len(outs):
            raise InputError("an output is listed twice", file=f, where="outputs")
        self.outputs = list(outs)
        # Parameters.
        params = data["parameters"]
        if not isinstance(params, dict) or not params:
            raise InputError(f"parameters must be a non-empty mapping of parameter ids, got "
                             f"{params!r}", file=f, where="parameters")
        from .evidence import EvidenceLibrary

        lib = EvidenceLibrary.load().with_overrides(self.scenario.effects or {})
        self.param_ids: list[str] = []
        self.dists: list[Dist] = []
        self.groups: list[str] = []
        for pid, spec in params.items():
            where = f"parameters.{pid}"
            p = parse_parameter(pid, file=f, where=where)
            if p.kind == "collaborative" and self.scenario.collaborative is None:
                raise InputError("collaborative.* parameters need a base scenario with a "
                                 "collaborative block", file=f, where=where)
            if spec is None:
                spec = {}
            if not isinstance(spec, dict):
                raise InputError(f"expected a mapping ({{}}, {{low: .., high: ..}}, {{dist: ..}} "
                                 f"or {{group: true}}), got {spec!r}", file=f, where=where)
            for key in spec:
                if key not in SPEC_KEYS:
                    raise InputError(f"unknown key '{key}'{did_you_mean(str(key), SPEC_KEYS)}; "
                                     f"allowed keys: {', '.join(SPEC_KEYS)}", file=f,
                                     where=f"{where}.{key}")
            group = spec.get("group", False)
            if group is True:
                group = pid
            elif group is False:
                group = pid
            elif not isinstance(group, str):
                raise InputError(f"group must be true or a group name, got {group!r}", file=f,
                                 where=f"{where}.group")
            self.groups.append(group)
            self.dists.append(self._dist(p, spec, lib, f, where))
            self.param_ids.append(pid)
        self.use_groups = len(set(self.groups)) != len(self.groups)
        # Thresholds (psa).
        th = data.get("thresholds", {}) or {}
        if "thresholds" in data and method != "psa":
            raise InputError("thresholds apply to method psa only", file=f, where="thresholds")
        if not isinstance(th, dict):
            raise InputError(f"thresholds must map outputs to lists of numbers, got {th!r}",
                             file=f, where="thresholds")
        self.thresholds: dict[str, list[float]] = {}
        for o, ts in th.items():
            if o not in self.outputs:
                raise InputError(f"'{o}' is not one of this sweep's outputs"
                                 f"{did_you_mean(str(o), self.outputs)}", file=f,
                                 where=f"thresholds.{o}")
            if not isinstance(ts, list):
                ts = [ts]
            self.thresholds[o] = [_num(t, f, f"thresholds.{o}") for t in ts]
        if method == "sobol" and len(set(self.groups)) < 2:
            raise InputError("sobol needs at least two parameters (or groups)", file=f,
                             where="parameters")
        self.raw = data
        self.file = f

    @staticmethod
    def _dist(p, spec, lib, f, where) -> Dist:
        from .collaborative import PARAMETERS

        dist = spec.get("dist")
        if dist is not None and dist not in DISTS:
            raise InputError(f"unknown distribution {dist!r}{did_you_mean(str(dist), DISTS)}; "
                             f"allowed: {', '.join(DISTS)}", file=f, where=f"{where}.dist")
        dist = DISTS.get(dist)
        for key in ("low", "high", "mode", "mean", "sd", "median", "sdlog"):
            if key in spec:
                _num(spec[key], f, f"{where}.{key}")
        has_bounds = "low" in spec or "high" in spec
        if dist is None and not has_bounds:
            extra = [k for k in spec if k != "group"]
            if extra:
                raise InputError(f"'{extra[0]}' needs a dist", file=f, where=f"{where}.{extra[0]}")
            if p.kind == "effect":
                eff = lib.effects[p.target]
                if p.target in lib.overrides:
                    raise InputError(f"the base scenario fixes {p.target} = "
                                     f"{lib.overrides[p.target]}; give {{low, high}} to vary it",
                                     file=f, where=where)
                if eff.dist == "fixed" or not (np.isfinite(eff.lo) and np.isfinite(eff.hi)) \
                        or eff.lo == eff.hi:
                    raise InputError(f"effect {p.target} has no uncertainty in the evidence "
                                     f"library (fixed at {eff.point}); give {{low, high}}",
                                     file=f, where=where)
                return Dist("evidence", effect=eff)
            if p.kind == "coverage":
                return Dist("uniform", low=0.0, high=1.0)
            if p.kind == "collaborative":
                _, lo, hi, _ = PARAMETERS[p.target]
                return Dist("uniform", low=float(lo), high=float(hi))
            return Dist("uniform", low=0.0, high=1.0)  # calibration
        if dist is None:
            dist = "uniform"
        need = {"uniform": ("low", "high"), "triangular": ("low", "mode", "high"),
                "normal": ("mean", "sd"), "lognormal": ("median", "sdlog")}[dist]
        for key in need:
            if key not in spec:
                raise InputError(f"a {dist} distribution needs {', '.join(need)}; '{key}' is "
                                 f"missing", file=f, where=f"{where}.{key}")
        allowed_here = set(need) | {"dist", "group"}
        for key in spec:
            if key not in allowed_here:
                raise InputError(f"'{key}' does not apply to a {dist} distribution (it takes "
                                 f"{', '.join(need)})", file=f, where=f"{where}.{key}")
        kw = {k: float(spec[k]) for k in need}
        if dist in ("uniform", "triangular"):
            if not kw["low"] < kw["high"]:
                raise InputError(f"bounds reversed or empty: low {kw['low']} is not below high "
                                 f"{kw['high']}", file=f, where=where)
            if dist == "triangular" and not kw["low"] <= kw["mode"] <= kw["high"]:
                raise InputError(f"mode {kw['mode']} is outside [low, high]", file=f,
                                 where=f"{where}.mode")
            lo_ok, hi_ok = _valid_range(p, lib)
            if kw["low"] < lo_ok or kw["high"] > hi_ok:
                raise InputError(f"range [{kw['low']}, {kw['high']}] is outside what "
                                 f"{p.id} allows ([{lo_ok}, {hi_ok}])", file=f, where=where)
        if dist in ("normal", "lognormal"):
            key = "sd" if dist == "normal" else "sdlog"
            if not kw[key] > 0:
                raise InputError(f"{key} must be > 0, got {kw[key]}", file=f,
                                 where=f"{where}.{key}")
            if dist == "lognormal" and not kw["median"] > 0:
                raise InputError(f"median must be > 0, got {kw['median']}", file=f,
                                 where=f"{where}.median")
            if p.kind != "effect":
                raise InputError(f"{p.id} is bounded; use {{low, high}} (uniform) or triangular",
                                 file=f, where=f"{where}.dist")
        return Dist(dist, **kw)

    # -- derived -----------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return len(self.param_ids)

    def problem(self) -> dict:
        """The SALib problem on the unit hypercube (values are mapped by :meth:`transform`)."""
        prob = {"num_vars": self.n_params, "names": list(self.param_ids),
                "bounds": [[0.0, 1.0]] * self.n_params}
        if self.use_groups:
            prob["groups"] = list(self.groups)
        return prob

    def unit_sample(self) -> np.ndarray:
        """Sample matrix on [0, 1]^P (seeded)."""
        prob = self.problem()
        if self.method == "sobol":
            from SALib.sample import sobol

            return sobol.sample(prob, self.samples, calc_second_order=self.second_order,
                                seed=self.seed)
        if self.method == "morris":
            from SALib.sample import morris

            return morris.sample(prob, self.samples, num_levels=self.levels, seed=self.seed)
        rng = np.random.default_rng(self.seed)
        return rng.random((self.samples, self.n_params))

    def transform(self, Q: np.ndarray) -> np.ndarray:
        """Map unit-cube values to parameter values through each distribution's quantiles.

        Morris visits the grid edges 0 and 1; for unbounded distributions (normal, lognormal)
        those are mapped to the 2.5% and 97.5% quantiles (the grid spans the 95% range).
        """
        X = np.empty_like(Q, dtype=float)
        for j, d in enumerate(self.dists):
            q = Q[:, j]
            if d.unbounded:
                if self.method == "morris":
                    q = 0.025 + 0.95 * q
                else:
                    q = np.clip(q, 1e-12, 1 - 1e-12)
            X[:, j] = d.ppf(q)
        return X

    def resolved(self) -> dict:
        return {
            "name": self.name, "description": self.description, "method": self.method,
            "samples": self.samples, "seed": self.seed, "second_order": self.second_order,
            "levels": self.levels, "chunk_size": self.chunk_size, "conf_level": self.conf_level,
            "num_resamples": self.num_resamples, "outputs": self.outputs,
            "parameters": {p: {**d.describe(), "group": g}
                           for p, d, g in zip(self.param_ids, self.dists, self.groups)},
            "thresholds": self.thresholds,
            "scenario_file": self.scenario_path,
            "scenario": self.scenario.resolved(),
        }

    def definition_hash(self) -> str:
        text = json.dumps(self.resolved(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _valid_range(p, lib) -> tuple[float, float]:
    """The values a parameter may take (for checking {low, high})."""
    if p.kind in ("coverage", "calibration"):
        return (0.0, 1.0)
    if p.kind == "collaborative":
        from .collaborative import PARAMETERS

        _, lo, hi, _ = PARAMETERS[p.target]
        return (float(lo), float(hi))
    eff = lib.effects[p.target]
    if eff.scale == "probability":
        return (0.0, 1.0)
    if eff.scale == "ratio":
        return (1e-9, math.inf)
    return (-math.inf, math.inf)


def load_sweep(path) -> Sweep:
    from .scenario import read_yaml

    p = Path(path)
    data = read_yaml(p, what="sweep")
    return Sweep(data, file=str(p), base_dir=p.parent)


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------

def _eval_chunk(evaluator, X):
    """Evaluate one chunk (runs in a worker; numba kept single-threaded)."""
    try:
        import numba

        if numba.get_num_threads() != 1:
            numba.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    return np.asarray(evaluator(X), dtype=float)


def _worker_init():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import numba

        numba.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _partial_of(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def run_sweep(sweep: Sweep | str | os.PathLike, out=None, workers: int | None = None,
              scheduler: str | None = None, resume=None, evaluator=None, progress: bool = True,
              figures: bool = True, on_chunk=None) -> dict:
    """Run a sweep; return a summary dict (``out``, ``evaluations``, ``evaluated``, ...).

    ``evaluator`` replaces the imsim model by any picklable callable ``X[k, P] -> Y[k, O]``
    (tests use SALib's Ishigami function). ``on_chunk(i)`` is called in the parent after chunk
    ``i`` is saved (tests use it to simulate an interruption).
    """
    t_start = time.perf_counter()
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    # Folders.
    if resume is not None:
        r = Path(resume)
        if r.name.endswith(".partial"):
            partial, out_dir = r, r.with_name(r.name[: -len(".partial")])
        else:
            out_dir, partial = r, _partial_of(r)
        if out is not None and Path(out) != out_dir:
            raise InputError(f"--out {out} does not match --resume {resume}")
        if not partial.is_dir():
            if out_dir.exists() and (out_dir / "manifest.json").exists():
                raise InputError("this sweep already finished; nothing to resume",
                                 file=str(out_dir))
            raise InputError("no interrupted sweep here (expected a folder "
                             f"{partial.name}/ with chunks)", file=str(partial))
    else:
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out_dir = Path("results") / f"{sweep.name}-{stamp}"
        else:
            out_dir = Path(out)
        partial = _partial_of(out_dir)
        if partial.exists():
            raise InputError(f"an interrupted sweep is in {partial}; finish it with --resume "
                             f"{partial} or delete it", file=str(out_dir))
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InputError("the results folder already exists and is not empty", file=str(out_dir))
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if evaluator is None:
        from .evaluate import Evaluator

        evaluator = Evaluator(sweep.scenario, sweep.param_ids, sweep.outputs)
    dhash = sweep.definition_hash()
    chunks_dir = partial / "chunks"
    if resume is not None:
        meta = json.loads((partial / "sweep.json").read_text())
        if meta.get("hash") != dhash:
            raise InputError("the sweep file changed since this sweep started (definition "
                             "hash differs); rerun it from scratch", file=str(partial))
        X = np.load(partial / "X.npy")
        Q = np.load(partial / "Q.npy")
    else:
        Q = sweep.unit_sample()
        X = sweep.transform(Q)
        chunks_dir.mkdir(parents=True, exist_ok=False)
        _atomic_save(partial / "Q.npy", Q)
        _atomic_save(partial / "X.npy", X)
        _atomic_text(partial / "sweep.json", json.dumps(
            {"hash": dhash, "resolved": sweep.resolved()}, indent=2, default=str))
        if sweep.file:
            shutil.copyfile(sweep.file, partial / "sweep.yaml")
    n_rows = X.shape[0]
    cs = sweep.chunk_size
    bounds = [(a, min(a + cs, n_rows)) for a in range(0, n_rows, cs)]
    done = {}
    for i in range(len(bounds)):
        f = chunks_dir / f"chunk-{i:05d}.npy"
        if f.exists():
            done[i] = np.load(f)
    todo = [i for i in range(len(bounds)) if i not in done]
    n_workers = workers or os.cpu_count() or 1
    executor = "dask" if scheduler else ("local" if n_workers == 1 else "processes")
    t_eval = time.perf_counter()
    evaluated = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(bounds), initial=len(done), desc=f"sweep {sweep.name}",
                   unit="chunk", dynamic_ncols=True)

    def finish(i, Y):
        nonlocal evaluated
        _atomic_save(chunks_dir / f"chunk-{i:05d}.npy", Y)
        done[i] = Y
        evaluated += bounds[i][1] - bounds[i][0]
        if bar is not None:
            bar.update(1)
        if on_chunk is not None:
            on_chunk(i)

    try:
        if todo:
            if executor == "local":
                for i in todo:
                    a, b = bounds[i]
                    finish(i, _eval_chunk(evaluator, X[a:b]))
            elif executor == "processes":
                _run_pool(evaluator, X, bounds, todo, n_workers, finish)
            else:
                n_workers = _run_dask(evaluator, X, bounds, todo, scheduler, finish)
    finally:
        if bar is not None:
            bar.close()
    t_eval = time.perf_counter() - t_eval
    Y = np.concatenate([done[i] for i in range(len(bounds))]) if bounds else np.zeros((0, 0))
    # Analysis and files, written into the partial folder, then renamed.
    t_an = time.perf_counter()
    res = _analyse(sweep, Q, X, Y)
    tornado = _tornado(sweep, evaluator)
    stage = partial / "results"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    _write_outputs(stage, sweep, X, Y, res, tornado, figures)
    t_an = time.perf_counter() - t_an
    total = time.perf_counter() - t_start
    data_hash = hashlib.sha256(np.ascontiguousarray(X).tobytes()
                               + np.ascontiguousarray(Y).tobytes()).hexdigest()
    manifest = {
        "name": sweep.name, "method": sweep.method, "samples": sweep.samples,
        "seed": sweep.seed, "second_order": sweep.second_order,
        "parameters": sweep.param_ids, "outputs": sweep.outputs,
        "evaluations": int(n_rows), "evaluated_this_run": int(evaluated),
        "chunks": len(bounds), "chunk_size": cs, "resumed_chunks": len(bounds) - len(todo),
        "executor": executor, "workers": n_workers, "scheduler": scheduler,
        "engine": "expected",
        "timings": {"evaluate_s": t_eval, "analysis_s": t_an, "total_s": total},
        "evaluations_per_second": (evaluated / t_eval) if evaluated and t_eval > 0 else None,
        "definition_hash": dhash, "data_hash": data_hash,
        "scenario_file": sweep.scenario_path, "versions": _versions(),
    }
    _atomic_text(stage / "manifest.json", json.dumps(manifest, indent=2, default=str))
    shutil.copyfile(partial / "sweep.json", stage / "sweep.resolved.json")
    if (partial / "sweep.yaml").exists():
        shutil.copyfile(partial / "sweep.yaml", stage / "sweep.yaml")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(stage, out_dir)
    shutil.rmtree(partial)
    return {"out": out_dir, "evaluations": int(n_rows), "evaluated": int(evaluated),
            "manifest": manifest, "indices": res, "Y": Y, "X": X}


def _mp_context():
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _run_pool(evaluator, X, bounds, todo, n_workers, finish):
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from .engines import warm_up

    warm_up()  # compile / load the numba cache once, before workers read it
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=_mp_context(),
                             initializer=_worker_init) as pool:
        pending = {}
        queue = list(todo)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * n_workers:
                    i = queue.pop(0)
                    a, b = bounds[i]
                    pending[pool.submit(_eval_chunk, evaluator, X[a:b])] = i
                fin, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in fin:
                    i = pending.pop(fut)
                    finish(i, fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def _run_dask(evaluator, X, bounds, todo, scheduler, finish) -> int:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover
        raise InputError(f"--scheduler needs dask.distributed ({exc})") from None
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        n = len(client.scheduler_info().get("workers", {})) or 1
        ev = client.scatter(evaluator, broadcast=True)
        futs = [client.submit(_eval_chunk, ev, X[bounds[i][0]:bounds[i][1]], pure=False,
                              key=f"imsim-sweep-chunk-{i}-{os.getpid()}-{time.time_ns()}")
                for i in todo]
        index = {f.key: i for f, i in zip(futs, todo)}
        for fut in as_completed(futs):
            finish(index[fut.key], np.asarray(fut.result()))
        return n
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------

def _analyse(sweep: Sweep, Q, X, Y) -> dict:
    prob = sweep.problem()
    out: dict = {"rows": [], "s2": [], "exceedance": []}
    names = sorted(set(sweep.groups), key=sweep.groups.index) if sweep.use_groups \
        else sweep.param_ids
    for j, o in enumerate(sweep.outputs):
        y = Y[:, j]
        if sweep.method == "sobol":
            from SALib.analyze import sobol

            Si = sobol.analyze(prob, y, calc_second_order=sweep.second_order,
                               num_resamples=sweep.num_resamples, conf_level=sweep.conf_level,
                               seed=sweep.seed, print_to_console=False)
            for k, name in enumerate(names):
                out["rows"].append({"output": o, "parameter": name,
                                    "S1": Si["S1"][k], "S1_conf": Si["S1_conf"][k],
                                    "ST": Si["ST"][k], "ST_conf": Si["ST_conf"][k]})
            if sweep.second_order:
                for a in range(len(names)):
                    for b in range(a + 1, len(names)):
                        out["s2"].append({"output": o, "parameter_1": names[a],
                                          "parameter_2": names[b], "S2": Si["S2"][a, b],
                                          "S2_conf": Si["S2_conf"][a, b]})
        elif sweep.method == "morris":
            from SALib.analyze import morris

            Si = morris.analyze(prob, Q, y, num_resamples=sweep.num_resamples,
                                conf_level=sweep.conf_level, num_levels=sweep.levels,
                                seed=sweep.seed, print_to_console=False)
            for k, name in enumerate(names):
                out["rows"].append({"output": o, "parameter": name,
                                    "mu_star": float(Si["mu_star"][k]),
                                    "mu_star_conf": float(Si["mu_star_conf"][k]),
                                    "sigma": float(Si["sigma"][k]), "mu": float(Si["mu"][k])})
        else:
            out["rows"].append({"output": o, "mean": float(np.mean(y)),
                                "sd": float(np.std(y, ddof=1)) if y.size > 1 else 0.0,
                                "p2_5": float(np.quantile(y, 0.025)),
                                "p50": float(np.quantile(y, 0.5)),
                                "p97_5": float(np.quantile(y, 0.975))})
            for t in sweep.thresholds.get(o, []):
                out["exceedance"].append({"output": o, "threshold": t,
                                          "probability": float(np.mean(y > t))})
    if sweep.method == "psa":
        # Rank correlation of each input with each output: the drivers in a PSA.
        from scipy.stats import spearmanr

        out["drivers"] = []
        for j, o in enumerate(sweep.outputs):
            for k, p in enumerate(sweep.param_ids):
                if np.ptp(X[:, k]) == 0 or np.ptp(Y[:, j]) == 0:
                    rho = 0.0
                else:
                    rho = float(spearmanr(X[:, k], Y[:, j]).statistic)
                out["drivers"].append({"output": o, "parameter": p, "spearman_rho": rho})
    return out


def _tornado(sweep: Sweep, evaluator) -> list[dict] | None:
    """One-at-a-time ranges: each parameter at its 2.5%/97.5% quantiles, others at the point."""
    try:
        point = evaluator.point_values() if hasattr(evaluator, "point_values") else None
    except Exception:
        point = None
    if point is None:
        point = np.array([float(d.ppf(0.5)) for d in sweep.dists])
    point = np.asarray(point, dtype=float).copy()
    for k, d in enumerate(sweep.dists):
        if not np.isfinite(point[k]) and sweep.param_ids[k] != "calibration":
            point[k] = float(d.ppf(0.5))
    rows = [point]
    lohi = []
    for k, d in enumerate(sweep.dists):
        lo, hi = (float(v) for v in d.ppf(np.array([0.025, 0.975])))
        if d.kind == "uniform":
            lo, hi = d.kw["low"], d.kw["high"]
            if sweep.param_ids[k] == "calibration":
                hi = np.nextafter(1.0, 0.0)
        lohi.append((lo, hi))
        a = point.copy()
        a[k] = lo
        b = point.copy()
        b[k] = hi
        rows += [a, b]
    Yt = np.asarray(evaluator(np.array(rows)), dtype=float)
    out = []
    for j, o in enumerate(sweep.outputs):
        for k, p in enumerate(sweep.param_ids):
            out.append({"output": o, "parameter": p, "low": lohi[k][0], "high": lohi[k][1],
                        "output_point": Yt[0, j], "output_at_low": Yt[1 + 2 * k, j],
                        "output_at_high": Yt[2 + 2 * k, j],
                        "range": abs(Yt[2 + 2 * k, j] - Yt[1 + 2 * k, j])})
    return out


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def _write_outputs(d: Path, sweep: Sweep, X, Y, res, tornado, figures: bool) -> None:
    import pandas as pd

    df = pd.DataFrame(X, columns=sweep.param_ids)
    df.insert(0, "sample", np.arange(X.shape[0]))
    for j, o in enumerate(sweep.outputs):
        df[o] = Y[:, j]
    try:
        import pyarrow  # noqa: F401

        df.to_parquet(d / "samples.parquet", index=False)
    except ImportError:  # pragma: no cover
        df.to_csv(d / "samples.csv", index=False)
    pd.DataFrame(res["rows"]).to_csv(d / "indices.csv", index=False)
    if sweep.method == "sobol" and sweep.second_order:
        pd.DataFrame(res["s2"], columns=["output", "parameter_1", "parameter_2", "S2",
                                         "S2_conf"]).to_csv(d / "indices_s2.csv", index=False)
    if sweep.method == "psa":
        pd.DataFrame(res["exceedance"], columns=["output", "threshold", "probability"]).to_csv(
            d / "exceedance.csv", index=False)
        pd.DataFrame(res["drivers"]).to_csv(d / "drivers.csv", index=False)
    if tornado is not None:
        pd.DataFrame(tornado).to_csv(d / "tornado.csv", index=False)
    figs = _figures(d, sweep, res, tornado) if figures else []
    (d / "report.md").write_text(_report(sweep, res, tornado, figs))


def _figures(d: Path, sweep: Sweep, res, tornado) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    made = []
    outs = sweep.outputs
    rows = pd.DataFrame(res["rows"])
    if sweep.method == "sobol":
        fig, axes = plt.subplots(len(outs), 1, figsize=(8, 2.6 * len(outs) + 0.5), squeeze=False)
        for ax, o in zip(axes[:, 0], outs):
            r = rows[rows.output == o]
            x = np.arange(len(r))
            ax.bar(x - 0.2, r.S1, 0.4, yerr=r.S1_conf, capsize=3, label="S1 (first order)")
            ax.bar(x + 0.2, r.ST, 0.4, yerr=r.ST_conf, capsize=3, label="ST (total)")
            ax.set_xticks(x, r.parameter, rotation=30, ha="right", fontsize=7)
            ax.set_title(o, fontsize=9)
            ax.axhline(0, color="k", lw=0.5)
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(d / "sobol_indices.png", dpi=110)
        plt.close(fig)
        made.append("sobol_indices.png")
    if sweep.method == "morris":
        fig, axes = plt.subplots(1, len(outs), figsize=(4.2 * len(outs), 4), squeeze=False)
        for ax, o in zip(axes[0], outs):
            r = rows[rows.output == o]
            ax.scatter(r.mu_star, r.sigma)
            for _, row in r.iterrows():
                ax.annotate(row.parameter, (row.mu_star, row.sigma), fontsize=6)
            ax.set_xlabel("μ* (mean |elementary effect|)")
            ax.set_ylabel("σ")
            ax.set_title(o, fontsize=9)
        fig.tight_layout()
        fig.savefig(d / "morris_mu_sigma.png", dpi=110)
        plt.close(fig)
        made.append("morris_mu_sigma.png")
    if tornado:
        t = pd.DataFrame(tornado)
        fig, axes = plt.subplots(len(outs), 1, figsize=(8, 0.35 * sweep.n_params * len(outs)
                                                        + 1.2 * len(outs)), squeeze=False)
        for ax, o in zip(axes[:, 0], outs):
            r = t[t.output == o].sort_values("range")
            y = np.arange(len(r))
            base = r.output_point.iloc[0]
            ax.barh(y, r.output_at_low - base, left=base, color="tab:blue", label="at low")
            ax.barh(y, r.output_at_high - base, left=base, color="tab:orange", label="at high")
            ax.set_yticks(y, r.parameter, fontsize=7)
            ax.axvline(base, color="k", lw=0.7)
            ax.set_title(f"{o}: one-at-a-time ranges", fontsize=9)
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(d / "tornado.png", dpi=110)
        plt.close(fig)
        made.append("tornado.png")
    if sweep.method == "psa":
        fig, axes = plt.subplots(1, len(outs), figsize=(4.2 * len(outs), 3.5), squeeze=False)
        for ax, (j, o) in zip(axes[0], enumerate(outs)):
            r = rows[rows.output == o].iloc[0]
            ax.axvline(r.p2_5, ls="--", color="k", lw=0.7)
            ax.axvline(r.p97_5, ls="--", color="k", lw=0.7)
            ax.set_title(o, fontsize=9)
        fig.tight_layout()
        plt.close(fig)
    return made


def _fmt(x) -> str:
    return f"{x:,.4g}" if isinstance(x, (float, np.floating)) else str(x)


def _report(sweep: Sweep, res, tornado, figs) -> str:
    import pandas as pd

    lines = [f"# Sensitivity sweep: {sweep.name}", ""]
    if sweep.description:
        lines += [sweep.description, ""]
    lines += [f"Method **{sweep.method}**, N = {sweep.samples}, seed {sweep.seed}, base scenario "
              f"`{sweep.scenario_path}` ({sweep.scenario.years[0]}-{sweep.scenario.years[1]}, "
              f"{len(sweep.scenario.state_list)} state(s)), expected engine.", "",
              "## Top drivers per output", ""]
    rows = pd.DataFrame(res["rows"])
    for o in sweep.outputs:
        if sweep.method == "sobol":
            r = rows[rows.output == o].sort_values("ST", ascending=False).head(5)
            items = [f"`{x.parameter}` (ST {x.ST:.3f} ± {x.ST_conf:.3f}, S1 {x.S1:.3f})"
                     for x in r.itertuples()]
        elif sweep.method == "morris":
            r = rows[rows.output == o].sort_values("mu_star", ascending=False).head(5)
            items = [f"`{x.parameter}` (μ* {_fmt(x.mu_star)}, σ {_fmt(x.sigma)})"
                     for x in r.itertuples()]
        else:
            dr = pd.DataFrame(res["drivers"])
            dr = dr[dr.output == o].reindex(
                dr[dr.output == o].spearman_rho.abs().sort_values(ascending=False).index).head(5)
            items = [f"`{x.parameter}` (Spearman ρ {x.spearman_rho:+.2f})"
                     for x in dr.itertuples()]
            s = rows[rows.output == o].iloc[0]
            lines.append(f"- **{o}**: mean {_fmt(s['mean'])}, 95% range {_fmt(s.p2_5)} to "
                         f"{_fmt(s.p97_5)}")
            for e in res["exceedance"]:
                if e["output"] == o:
                    lines.append(f"  - P({o} > {_fmt(e['threshold'])}) = "
                                 f"{e['probability']:.3f}")
        lines.append(f"- **{o}** — top drivers: " + "; ".join(items))
    if tornado:
        lines += ["", "## One-at-a-time ranges (tornado)", "",
                  "Each parameter at its low and high value (95% range), others at their point "
                  "values.", ""]
        t = pd.DataFrame(tornado)
        for o in sweep.outputs:
            r = t[t.output == o].sort_values("range", ascending=False).head(5)
            lines.append(f"- **{o}**: " + "; ".join(
                f"`{x.parameter}` {_fmt(x.output_at_low)} to {_fmt(x.output_at_high)}"
                for x in r.itertuples()))
    if figs:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figs]
    lines += ["", "Files: `samples.parquet` (inputs and outputs per sample), `indices.csv`, "
              "`tornado.csv`, `manifest.json`.", ""]
    return "\n".join(lines)


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("imsim", "numpy", "SALib", "dask", "distributed", "numba", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def add_parser(subparsers):
    p = subparsers.add_parser(
        "sweep", help="sensitivity sweep (Sobol, Morris, PSA) of a scenario",
        description="Run a sweep file: sample uncertain inputs (SALib Sobol / Morris, or PSA), "
                    "evaluate the base scenario for every row with the expected engine on a "
                    "local process pool or a Dask cluster, and write samples, indices, figures "
                    "and a report. See docs/sweeps.md.")
    p.add_argument("file", help="sweep YAML file (see sweeps/)")
    p.add_argument("--out", metavar="DIR", help="results folder (default results/<name>-<time>/)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local worker processes (default: all cores)")
    p.add_argument("--scheduler", metavar="tcp://host:port",
                   help="run on a Dask distributed cluster instead of local processes")
    p.add_argument("--resume", metavar="DIR",
                   help="finish an interrupted sweep (its <out>.partial folder or <out>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args) -> int:
    """Run ``imsim sweep``; InputError propagates (the CLI prints it, exit code 2)."""
    res = run_sweep(args.file, out=args.out, workers=args.workers, scheduler=args.scheduler,
                    resume=args.resume, progress=not getattr(args, "quiet", False))
    m = res["manifest"]
    eps = m["evaluations_per_second"]
    if not getattr(args, "quiet", False):
        print(f"{m['name']}: {m['evaluations']:,} evaluations ({m['evaluated_this_run']:,} this "
              f"run, {m['executor']}, {m['workers']} worker(s)) in "
              f"{m['timings']['total_s']:.1f} s"
              + (f", {eps:,.0f} evaluations/s" if eps else ""))
        print(f"wrote {res['out']}/")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry point (``python -c 'from imsim.sweep import main; main([...])'``)."""
    import sys

    parser = argparse.ArgumentParser(prog="imsim")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["sweep", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except InputError as exc:
        print(f"imsim: error: {exc.format()}", file=sys.stderr)
        return 2
