"""Writing a results folder atomically: build it hidden, rename it into place at the end.

An interrupted or failed run leaves no folder that looks complete, and runs never overwrite each
other: an existing, non-empty target is refused before any work is done.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from imsim.core.errors import InputError


def check_new(out: str | os.PathLike) -> Path:
    """Refuse an existing non-empty folder (or a file) as an output folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("output folder already exists and is not empty; choose another --out "
                         "(runs never overwrite each other)", file=str(out))
    return out


@contextmanager
def atomic_folder(out: str | os.PathLike):
    """Yield a hidden temporary folder beside ``out``; rename it to ``out`` on success.

    On any exception (including KeyboardInterrupt) the temporary folder is removed.
    """
    out = check_new(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
