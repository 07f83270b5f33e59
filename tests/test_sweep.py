"""Sensitivity sweeps: SALib Sobol/Morris/PSA through imsim's runner (issue 6)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from imsim.core.errors import InputError
from imsim.analysis.evaluate import Evaluator, IshigamiEvaluator
from imsim.analysis.sweep import load_sweep, main, run_sweep

ROOT = Path(__file__).resolve().parents[1]
SOUTH = str(ROOT / "scenarios" / "coiin_portfolios.yaml")


def _ishigami_sweep(tmp_path, n=1024, name="ishigami", chunk_size=512):
    data = {
        "name": name, "scenario": SOUTH, "method": "sobol", "samples": n, "seed": 3,
        "outputs": ["deaths_averted"], "chunk_size": chunk_size,
        "parameters": {"strategies.safe_sleep.coverage": {"low": 0, "high": 1},
                       "strategies.smoking_cessation.coverage": {"low": 0, "high": 1},
                       "strategies.preconception_care.coverage": {"low": 0, "high": 1}},
    }
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def _write(tmp_path, data, name="sweep.yaml"):
    f = tmp_path / name
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return f


def test_ishigami_sobol_indices_within_confidence(tmp_path):
    f = _ishigami_sweep(tmp_path, n=4096, chunk_size=4096)
    res = run_sweep(f, out=tmp_path / "out", workers=1, evaluator=IshigamiEvaluator(),
                    progress=False, figures=False)
    idx = pd.read_csv(tmp_path / "out" / "indices.csv")
    s1 = np.array([0.3139, 0.4424, 0.0])
    st = np.array([0.5576, 0.4424, 0.2437])
    for col, truth in (("S1", s1), ("ST", st)):
        conf = idx[f"{col}_conf"].to_numpy()
        tol = np.maximum(1.5 * conf, 0.02)   # 95% CI, a little slack, and a small floor
        assert np.all(np.abs(idx[col].to_numpy() - truth) <= tol), (col, idx)
    assert res["evaluations"] == 4096 * 5


def test_identical_for_1_and_2_workers_and_dask(tmp_path):
    f = _ishigami_sweep(tmp_path, n=256, chunk_size=100)
    r1 = run_sweep(f, out=tmp_path / "w1", workers=1, evaluator=IshigamiEvaluator(),
                   progress=False, figures=False)
    r2 = run_sweep(f, out=tmp_path / "w2", workers=2, evaluator=IshigamiEvaluator(),
                   progress=False, figures=False)
    assert r1["Y"].tobytes() == r2["Y"].tobytes()
    assert r1["manifest"]["results_hash"] == r2["manifest"]["results_hash"]
    try:
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    except Exception as exc:  # pragma: no cover - environment without sockets etc.
        pytest.skip(f"dask LocalCluster cannot start: {exc}")
    try:
        r3 = run_sweep(f, out=tmp_path / "dask", scheduler=cluster.scheduler_address,
                       evaluator=IshigamiEvaluator(), progress=False, figures=False)
    finally:
        cluster.close()
    assert r3["Y"].tobytes() == r1["Y"].tobytes()
    assert r3["manifest"]["executor"] == "dask"


def test_real_model_identical_across_workers(tmp_path):
    data = {"name": "real-workers", "scenario": SOUTH, "method": "psa", "samples": 24,
            "seed": 5, "chunk_size": 5, "outputs": ["deaths_averted", "bw_rate_ratio_change"],
            "parameters": {"safe_sleep_unsafe_reduction": {},
                           "strategies.safe_sleep.coverage": {"low": 0.2, "high": 0.8}}}
    f = _write(tmp_path, data)
    r1 = run_sweep(f, out=tmp_path / "a", workers=1, progress=False, figures=False)
    r2 = run_sweep(f, out=tmp_path / "b", workers=2, progress=False, figures=False)
    assert r1["Y"].tobytes() == r2["Y"].tobytes()


class _Stop(Exception):
    pass


def test_resume_after_interruption(tmp_path):
    f = _ishigami_sweep(tmp_path, n=128, chunk_size=64)   # 640 rows, 10 chunks
    ref = run_sweep(f, out=tmp_path / "ref", workers=1, evaluator=IshigamiEvaluator(),
                    progress=False, figures=False)

    def stop_after_3(i):
        if i == 2:
            raise _Stop

    out = tmp_path / "run"
    with pytest.raises(_Stop):
        run_sweep(f, out=out, workers=1, evaluator=IshigamiEvaluator(), progress=False,
                  figures=False, on_chunk=stop_after_3)
    partial = tmp_path / "run.partial"
    assert not out.exists()                       # nothing that looks complete
    assert len(list((partial / "chunks").glob("chunk-*.npy"))) == 3
    ev = IshigamiEvaluator()
    res = run_sweep(f, resume=partial, workers=1, evaluator=ev, progress=False, figures=False)
    assert ev.calls == 640 - 3 * 64 + 7          # only missing chunks (+ 7 tornado rows)
    assert res["evaluated"] == 640 - 3 * 64
    assert not partial.exists() and (out / "manifest.json").exists()
    assert res["Y"].tobytes() == ref["Y"].tobytes()
    assert (out / "samples.parquet").read_bytes() == (tmp_path / "ref" / "samples.parquet").read_bytes()
    assert json.loads((out / "manifest.json").read_text())["results_hash"] == \
        ref["manifest"]["results_hash"]


def test_resume_refuses_changed_definition(tmp_path):
    f = _ishigami_sweep(tmp_path, n=64, chunk_size=64)

    def stop(i):
        raise _Stop

    with pytest.raises(_Stop):
        run_sweep(f, out=tmp_path / "r", workers=1, evaluator=IshigamiEvaluator(),
                  progress=False, figures=False, on_chunk=stop)
    data = yaml.safe_load(f.read_text())
    data["seed"] = 4
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="hash"):
        run_sweep(f, resume=tmp_path / "r", workers=1, evaluator=IshigamiEvaluator(),
                  progress=False)


BAD = [
    ({"parameters": {"unsafe_sleep_suid_ox": {}}}, "did you mean 'unsafe_sleep_suid_or'"),
    ({"parameters": {"strategies.safe_sleep.coverage": {"low": 0.8, "high": 0.2}}},
     "reversed"),
    ({"samples": 1000}, "power of two"),
    ({"outputs": ["deaths_avertd"]}, "did you mean 'deaths_averted'"),
    ({"outputs": ["deaths_averted.CA"]}, "not in the scenario"),
    ({"samples": "many"}, "whole number"),
    ({"method": "sobel"}, "did you mean 'sobol'"),
    ({"sampels": 8}, "did you mean 'samples'"),
    ({"parameters": {"strategies.safe_sleep.coverage": {"lo": 0.1, "high": 0.2}}},
     "did you mean 'low'"),
    ({"parameters": {"strategies.safe_sleep.coverage": {"low": 0.1, "high": 1.5}}},
     "outside"),
    ({"parameters": {"collaborative.base_rate": {}, "calibration": {}}}, "collaborative block"),
    ({"thresholds": {"deaths_averted": [1]}}, "psa only"),
    ({"scenario": "nope.yaml"}, "not found"),
    ({"parameters": []}, "non-empty mapping"),
]


@pytest.mark.parametrize("change,message", BAD)
def test_bad_input_exit_2_nothing_written(tmp_path, capsys, change, message):
    data = {"name": "bad", "scenario": SOUTH, "method": "sobol", "samples": 8, "seed": 1,
            "outputs": ["deaths_averted"],
            "parameters": {"safe_sleep_unsafe_reduction": {},
                           "strategies.safe_sleep.coverage": {"low": 0.2, "high": 0.8}}}
    data.update(change)
    f = _write(tmp_path, data)
    out = tmp_path / "out"
    code = main([str(f), "--out", str(out), "--workers", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and str(f) in err
    assert not out.exists() and not (tmp_path / "out.partial").exists()


def test_bad_yaml_and_resume_dir(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text("a: &x 1\nb: *x\n")
    assert main([str(f), "--out", str(tmp_path / "o")]) == 2
    assert "aliases" in capsys.readouterr().err
    g = _ishigami_sweep(tmp_path, n=8)
    assert main([str(g), "--resume", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "missing").exists()


def test_distribution_mapping_matches_evidence(tmp_path):
    """{} effects are sampled from the evidence distribution (quantile mapping)."""
    data = {"name": "psa", "scenario": SOUTH, "method": "psa", "samples": 4000, "seed": 2,
            "outputs": ["deaths_averted"],
            "parameters": {"nonlevel3_neonatal_or": {}, "safe_sleep_unsafe_reduction": {}}}
    sw = load_sweep(_write(tmp_path, data))
    X = sw.transform(sw.unit_sample())
    from scipy import stats

    from imsim.inputs.evidence import EvidenceLibrary

    lib = EvidenceLibrary.load()
    for j, pid in enumerate(sw.param_ids):
        eff = lib.effects[pid]
        ks = stats.kstest(X[:, j], lambda x, e=eff: _cdf(e, x))
        assert ks.pvalue > 0.001, pid
    eff = lib.effects["nonlevel3_neonatal_or"]
    assert eff.dist == "lognormal"
    share = np.mean((X[:, 0] > eff.lo) & (X[:, 0] < eff.hi))
    assert 0.93 < share < 0.97   # a lognormal effect's 95% CI holds 95% of the draws


def _cdf(eff, x):
    grid = np.linspace(1e-6, 1 - 1e-6, 20001)
    return np.interp(x, eff.ppf(grid), grid)


def test_evaluator_matches_runner():
    import imsim

    sc = imsim.load_scenario(SOUTH)
    r = imsim.run(sc, replicates=1)
    s = r.summary
    row = s[(s.state == "ALL") & (s.race == "ALL")].iloc[0]
    ev = Evaluator(sc, ["unsafe_sleep_suid_or", "safe_sleep_unsafe_reduction"],
                   ["deaths_averted", "imr_change_pct", "deaths_averted.GA"])
    y = ev(ev.point_values()[None, :])[0]
    assert y[0] == pytest.approx(row.deaths_averted, rel=1e-9)
    assert y[1] == pytest.approx(100 * (row.imr_scenario - row.imr_baseline) / row.imr_baseline,
                                 rel=1e-6)
    ga = s[(s.state == "GA") & (s.race == "ALL")].iloc[0]
    assert y[2] == pytest.approx(ga.deaths_averted, rel=1e-9)


def test_evaluator_rows_independent_and_coverage_zero():
    import imsim

    sc = imsim.load_scenario(ROOT / "scenarios" / "safe_sleep.yaml")   # national, safe sleep only
    ev = Evaluator(sc, ["safe_sleep_unsafe_reduction", "strategies.safe_sleep.coverage",
                        "strategies.smoking_cessation.coverage"],
                   ["deaths_averted", "bw_rate_difference_change"])
    X = np.array([[0.3, 0.5, 0.2], [0.4, 0.0, 0.0], [0.2, 0.9, 0.4]])
    Y = ev(X)
    assert np.all(Y[1] == 0.0)                      # coverage 0: nothing changes
    for i in range(3):
        assert ev(X[i:i + 1]).tobytes() == Y[i:i + 1].tobytes()
    assert Y[2, 0] > Y[0, 0] > 0
    # A portfolio whose levers rebuild the kernel tables (preterm, social determinants).
    ev = Evaluator(imsim.load_scenario(SOUTH), ["medicaid_expansion_death_rr",
                                                "strategies.safe_sleep.coverage"],
                   ["deaths_averted", "deaths_averted.GA"])
    X = np.array([[0.8, 0.5], [0.9, 0.1], [1.0, 0.7], [0.85, 0.3]])
    Y = ev(X)
    for i in range(4):
        assert ev(X[i:i + 1]).tobytes() == Y[i:i + 1].tobytes()


def test_unknown_ids_in_evaluator():
    import imsim

    sc = imsim.load_scenario(SOUTH)
    with pytest.raises(InputError, match="did you mean"):
        Evaluator(sc, ["strategies.safe_slep.coverage"], ["deaths_averted"])
    with pytest.raises(InputError, match="unknown output"):
        Evaluator(sc, ["calibration"], ["deaths"])


def test_small_real_sweeps_write_every_file(tmp_path):
    base = {"scenario": SOUTH, "seed": 1, "chunk_size": 16,
            "outputs": ["deaths_averted", "imr_change_pct", "bw_rate_ratio_change",
                        "bw_rate_difference_change", "deaths_averted.nh_black"]}
    sobol = {**base, "name": "real-sobol", "method": "sobol", "samples": 8,
             "second_order": True,
             "parameters": {"unsafe_sleep_suid_or": {}, "safe_sleep_unsafe_reduction": {},
                            "strategies.safe_sleep.coverage": {"low": 0.2, "high": 0.8},
                            "calibration": {"group": True}}}
    out = tmp_path / "sobol"
    assert main([str(_write(tmp_path, sobol, "a.yaml")), "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0
    for name in ("samples.parquet", "indices.csv", "indices_s2.csv", "sobol_indices.png",
                 "tornado.png", "tornado.csv", "manifest.json", "report.md",
                 "sweep.resolved.json"):
        assert (out / name).exists(), name
    idx = pd.read_csv(out / "indices.csv")
    assert list(idx.columns) == ["output", "parameter", "S1", "S1_conf", "ST", "ST_conf"]
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples) == 8 * (2 * 4 + 2)
    m = json.loads((out / "manifest.json").read_text())
    assert m["evaluations"] == len(samples) and m["evaluations_per_second"] > 0
    assert "Top drivers" in (out / "report.md").read_text()

    morris = {**base, "name": "real-morris", "method": "morris", "samples": 4,
              "parameters": {"safe_sleep_unsafe_reduction": {},
                             "strategies.safe_sleep.coverage": {"low": 0.2, "high": 0.8},
                             "cessation_counselling_rr": {}}}
    out = tmp_path / "morris"
    assert main([str(_write(tmp_path, morris, "b.yaml")), "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0
    idx = pd.read_csv(out / "indices.csv")
    assert {"output", "parameter", "mu_star", "mu_star_conf", "sigma"} <= set(idx.columns)
    assert (out / "morris_mu_sigma.png").exists()

    psa = {**base, "name": "real-psa", "method": "psa", "samples": 32,
           "thresholds": {"deaths_averted": [100, 500]},
           "parameters": {"safe_sleep_unsafe_reduction": {},
                          "strategies.safe_sleep.coverage": {"low": 0.2, "high": 0.8}}}
    out = tmp_path / "psa"
    assert main([str(_write(tmp_path, psa, "c.yaml")), "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0
    idx = pd.read_csv(out / "indices.csv")
    assert list(idx.columns) == ["output", "mean", "sd", "p2_5", "p50", "p97_5"]
    ex = pd.read_csv(out / "exceedance.csv")
    assert list(ex.columns) == ["output", "threshold", "probability"] and len(ex) == 2


def test_example_sweep_files_validate():
    for f in sorted((ROOT / "sweeps").glob("*.yaml")):
        sw = load_sweep(f)
        assert sw.n_params >= 2
