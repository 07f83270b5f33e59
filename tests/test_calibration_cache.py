"""Parsed calibration folders are reused only while their files are unchanged (issue 15).

``CalibratedTargets.load`` keeps the parsed fit keyed by each file's size, mtime and inode, so a
warm ``imsim run`` does not re-read the CSVs, yet a re-fit written into the same folder is seen.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from imsim.calibration.targets import FIT_FILES, CalibratedTargets

REPO = Path(__file__).resolve().parents[1]


def _copy_fit(tmp_path) -> Path:
    dst = tmp_path / "fit"
    dst.mkdir()
    for name in FIT_FILES:
        src = REPO / "calibration" / "default" / name
        if src.is_file():
            shutil.copy2(src, dst / name)
    return dst


def test_unchanged_folder_is_parsed_once_and_copies_are_independent(tmp_path):
    folder = _copy_fit(tmp_path)
    a = CalibratedTargets.load(folder)
    b = CalibratedTargets.load(folder)
    assert a is not b
    assert a.imr is b.imr                      # the parsed arrays are shared (never edited)
    a.path = "elsewhere"
    a.meta["note"] = "only in a"
    assert b.path == str(folder) and "note" not in b.meta
    assert CalibratedTargets.load(folder).path == str(folder)


def test_rewritten_file_is_read_again(tmp_path):
    folder = _copy_fit(tmp_path)
    before = CalibratedTargets.load(folder)
    cells = (folder / "cells.csv").read_text(encoding="utf-8").splitlines()
    head = cells[0].split(",")
    row = cells[1].split(",")
    i = head.index("imr")
    row[i] = repr(float(row[i]) * 2.0)
    cells[1] = ",".join(row)
    # A re-fit writes a new file (new inode) even within the same mtime tick.
    (folder / "cells.csv").unlink()
    (folder / "cells.csv").write_text("\n".join(cells) + "\n", encoding="utf-8")
    after = CalibratedTargets.load(folder)
    assert after.imr is not before.imr
    changed = np.argwhere(~np.isclose(after.imr, before.imr))
    assert len(changed) == 1
    s, r = changed[0]
    np.testing.assert_allclose(after.imr[s, r], 2.0 * before.imr[s, r])
