"""imsim.core.folders: default names never collide, outputs are never overwritten, and a failure
leaves nothing that looks complete."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from imsim.core import folders
from imsim.core.errors import InputError
from imsim.core.folders import (
    PARTIAL,
    atomic_file,
    atomic_folder,
    check_new,
    check_new_file,
    new_folder,
    publish,
)

STAMP = "20260101-120000"


@pytest.fixture
def same_second(monkeypatch):
    """Every default name is stamped with the same second."""
    monkeypatch.setattr(folders, "timestamp", lambda: STAMP)


def test_new_folders_in_the_same_second_are_distinct(tmp_path, same_second):
    got = [new_folder("run", tmp_path) for _ in range(3)]
    assert [p.name for p in got] == [f"run-{STAMP}", f"run-{STAMP}-2", f"run-{STAMP}-3"]
    assert all(p.is_dir() and not any(p.iterdir()) for p in got)


def test_a_sweep_partial_and_a_run_never_share_a_name(tmp_path, same_second):
    sweep = new_folder("x", tmp_path, suffix=PARTIAL)
    assert (tmp_path / f"x-{STAMP}.partial").is_dir() and not sweep.exists()
    run = new_folder("x", tmp_path)
    assert run.name == f"x-{STAMP}-2"
    assert new_folder("x", tmp_path, suffix=PARTIAL).name == f"x-{STAMP}-3"


def test_default_names_are_safe_folder_names(tmp_path, same_second):
    assert new_folder("../a b/c", tmp_path).parent == tmp_path


def test_new_folder_is_safe_between_processes(tmp_path):
    """Eight processes claiming a name in the same second each get their own folder."""
    code = textwrap.dedent(f"""
        import sys
        from imsim.core import folders
        folders.timestamp = lambda: "{STAMP}"
        sys.stdin.readline()                  # start together
        print(folders.new_folder("race", sys.argv[1]).name)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(8)]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    names = [p.communicate()[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(names)) == 8, names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_check_new_refuses_non_empty_folders_and_files(tmp_path):
    assert check_new(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_new(tmp_path / "empty")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    (tmp_path / "f.csv").write_text("x")
    for p in ("full", "f.csv"):
        with pytest.raises(InputError, match="already exists"):
            check_new(tmp_path / p)
    (tmp_path / "empty.csv").touch()
    check_new_file(tmp_path / "empty.csv")
    for p in ("full", "f.csv"):
        with pytest.raises(InputError, match="already exists"):
            check_new_file(tmp_path / p)


def test_atomic_folder_refuses_existing_before_the_block_runs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    ran = []
    with pytest.raises(InputError, match="not empty"):
        with atomic_folder(out):
            ran.append(1)
    assert ran == []
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "keep.txt").read_text() == "mine"


def test_atomic_folder_publishes_only_at_the_end(tmp_path):
    out = tmp_path / "sub" / "out"
    with atomic_folder(out) as st:
        assert st.out == out and st.tmp.parent == out.parent and st.tmp.name.startswith(".out.")
        (st.tmp / "a.csv").write_text("1")
        assert not out.exists()
    assert (out / "a.csv").read_text() == "1"
    assert [p.name for p in out.parent.iterdir()] == ["out"]
    assert stat.S_IMODE(out.stat().st_mode) & 0o077 == stat.S_IMODE(
        (tmp_path / "sub").stat().st_mode) & 0o077      # ordinary permissions, not 0700


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("default", [False, True])
def test_a_failure_mid_write_leaves_nothing(tmp_path, monkeypatch, exc, default):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exc):
        with atomic_folder(None if default else tmp_path / "results" / "run", name="run") as st:
            (st.tmp / "summary.csv").write_text("half")
            raise exc()
    assert list((tmp_path / "results").iterdir()) == []


def test_default_atomic_folders_in_the_same_second(tmp_path, monkeypatch, same_second):
    monkeypatch.chdir(tmp_path)
    outs = []
    for _ in range(2):
        with atomic_folder(name="run") as st:
            (st.tmp / "x").write_text("x")
        outs.append(st.out)
    assert [p.name for p in outs] == [f"run-{STAMP}", f"run-{STAMP}-2"]
    assert all((tmp_path / p / "x").is_file() for p in outs)


def test_publish_refuses_a_folder_filled_meanwhile(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match="meanwhile|while this command ran"):
        with atomic_folder(out) as st:
            (st.tmp / "mine").write_text("new")
            out.mkdir()
            (out / "theirs").write_text("other run")
    assert [p.name for p in out.iterdir()] == ["theirs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_swaps_in_one_rename_and_keeps_the_old_on_failure(tmp_path):
    out = tmp_path / "cal"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(out, replace=True) as st:
            (st.tmp / "new.txt").write_text("new")
            raise RuntimeError
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    with atomic_folder(out, replace=True) as st:
        (st.tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["cal"]
    tmp = tmp_path / ".t"
    tmp.mkdir()
    publish(tmp, tmp_path / "fresh", replace=True)
    assert (tmp_path / "fresh").is_dir() and not tmp.exists()


def test_atomic_file_keeps_extension_and_never_truncates(tmp_path):
    path = tmp_path / "chunk.npy"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            assert tmp.suffix == ".npy" and tmp.name.startswith(".chunk.") and tmp.exists()
            tmp.write_text("ha")
            raise RuntimeError
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk.npy"]
    with atomic_file(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new"
    assert oct(stat.S_IMODE(path.stat().st_mode) & 0o044) == oct(
        0o044 & ~_umask())                       # readable like any file, not 0600


def test_atomic_file_without_overwrite(tmp_path):
    path = tmp_path / "targets.csv"
    path.write_text("theirs")
    with pytest.raises(InputError, match="already exists"):
        with atomic_file(path, overwrite=False):
            raise AssertionError("not reached")
    with pytest.raises(InputError, match="already exists"):
        with atomic_file(tmp_path / "late.csv", overwrite=False) as tmp:
            tmp.write_text("mine")
            (tmp_path / "late.csv").write_text("theirs")
    assert (tmp_path / "late.csv").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.csv", "targets.csv"]
    with atomic_file(tmp_path / "new.csv", overwrite=False) as tmp:
        tmp.write_text("mine")
    assert (tmp_path / "new.csv").read_text() == "mine"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------
# Every command: an existing --out is refused before any work; a failure leaves nothing
# ---------------------------------------------------------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _fail(*args, **kwargs):
    raise AssertionError("work started although --out exists")


def _tiny_sweep(tmp_path):
    import yaml

    f = tmp_path / "tiny.yaml"
    f.write_text(yaml.safe_dump({
        "name": "tiny", "scenario": str(REPO / "scenarios" / "safe_sleep_south.yaml"),
        "method": "psa", "samples": 4, "seed": 1, "outputs": ["deaths_averted"],
        "parameters": {"safe_sleep_unsafe_reduction": {}}}))
    return f


@pytest.mark.parametrize("command", ["run", "sweep", "recommend", "calibrate", "import-wonder"])
def test_existing_out_is_refused_before_any_work(tmp_path, monkeypatch, capsys, command):
    import imsim.analysis.evaluate
    import imsim.analysis.runner
    import imsim.calibration.calibrate
    import imsim.config.scenario
    import imsim.config.sweepfile
    import imsim.inputs.wonder
    import imsim.output.recommendation
    from imsim.cli import main

    for module, name in [(imsim.analysis.runner, "run"), (imsim.config.scenario, "load_scenario"),
                         (imsim.analysis.evaluate, "Evaluator"),
                         (imsim.config.sweepfile.Sweep, "unit_sample"),
                         (imsim.output.recommendation, "recommend"),
                         (imsim.output.recommendation, "load_plan"),
                         (imsim.calibration.calibrate, "load_observations"),
                         (imsim.calibration.calibrate, "build_targets"),
                         (imsim.inputs.wonder, "import_wonder")]:
        monkeypatch.setattr(module, name, _fail)
    monkeypatch.chdir(REPO)
    out = tmp_path / "out"
    if command == "import-wonder":
        out.write_text("state,race\n")
    else:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    argv = {"run": ["run", "scenarios/baseline.yaml"],
            "sweep": ["sweep", str(_tiny_sweep(tmp_path)), "--workers", "1"],
            "recommend": ["recommend", "plans/southeast.yaml"],
            "calibrate": ["calibrate"],
            "import-wonder": ["data", "import-wonder", "export.txt"]}[command]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and str(out) in err and "Traceback" not in err
    if command == "import-wonder":
        assert out.read_text() == "state,race\n"
    else:
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) in (["out"], ["out", "tiny.yaml"])


def test_failed_calibration_leaves_no_default_folder(tmp_path, monkeypatch):
    import imsim.calibration.calibrate as C

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(C, "load_observations", boom)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        C.calibrate(None, None)
    assert list((tmp_path / "calibration").iterdir()) == []


def test_failed_recommendation_save_leaves_nothing(tmp_path, monkeypatch, same_second):
    import imsim.output.recommendation as R
    from imsim.analysis.recommend import parse_plan, recommend

    rec = recommend(parse_plan({
        "name": "t", "states": ["VT"], "years": [2026, 2027], "max_strategies": 1,
        "strategies": {"safe_sleep": {"coverage": 0.5}, "smoking_cessation": {"coverage": 0.3}},
        "draws": 2, "seed": 1}))
    monkeypatch.chdir(tmp_path)
    first = R.save(rec, figures=False)
    second = R.save(rec, figures=False)
    assert (first.name, second.name) == (f"recommend-t-{STAMP}", f"recommend-t-{STAMP}-2")
    assert (second / "recommendations.csv").is_file()

    def boom(*a, **k):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(R, "write_index", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        R.save(rec)
    with pytest.raises(RuntimeError, match="simulated"):
        R.save(rec, tmp_path / "explicit")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [first.name, second.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
