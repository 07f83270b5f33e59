"""Numba settings, defined once.

Kernels are compiled with ``cache=True``. Numba writes its cache next to the source file; when the
package is installed read-only that fails ("no locator available"), so before numba is imported we
point ``NUMBA_CACHE_DIR`` at a writable user cache directory unless the user chose one.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def _ensure_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    here = Path(__file__).resolve().parent
    if os.access(here, os.W_OK):
        return
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    target = Path(base) / "imsim" / "numba"
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:
        target = Path(tempfile.gettempdir()) / f"imsim-numba-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        target.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(target)
    if "numba" in sys.modules:  # pragma: no cover - numba already configured its cache
        import numba.core.config as _cfg

        _cfg.CACHE_DIR = str(target)


_ensure_cache_dir()

#: Options for serial kernels.
JIT_OPTIONS = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}
#: Options for kernels parallel over cells or chunks (``prange``).
JIT_PARALLEL_OPTIONS = {**JIT_OPTIONS, "parallel": True}
