"""Packaged baseline data: derived tables with their sources (built by scripts/build_data.py).

``tables.json`` is the catalogue; :func:`load_table` reads one table; :func:`data_hash` fingerprints
all of them so a run manifest and a calibration can say exactly which data they used.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources

import pandas as pd


def _dir():
    return resources.files(__name__)


@lru_cache(maxsize=1)
def catalogue() -> list[dict]:
    """Return the catalogue of packaged tables (``tables.json``), read once.

    Returns
    -------
    list of dict
        One entry per table: ``name``, ``file``, description, sources and row count (shared
        by the cache: do not modify).
    """
    return json.loads(_dir().joinpath("tables.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _read(name: str) -> pd.DataFrame:
    entry = next((t for t in catalogue() if t["name"] == name), None)
    file = entry["file"] if entry else f"{name}.csv"
    with _dir().joinpath(file).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, keep_default_na=False, na_values=[""])


def load_table(name: str) -> pd.DataFrame:
    """Return a copy of a packaged table by name (e.g. ``births``, ``evidence``).

    Parameters
    ----------
    name : str
        A table name of :func:`catalogue` (a name not in the catalogue is read from
        ``<name>.csv``).

    Returns
    -------
    pandas.DataFrame
        A fresh copy (the file is read once per process); empty cells are NaN.

    Raises
    ------
    FileNotFoundError
        If there is no such table file.
    """
    return _read(name).copy()


@lru_cache(maxsize=1)
def data_hash() -> str:
    """Return a fingerprint of the packaged data: SHA-256 over every table file, 16 hex digits.

    Files are hashed in file-name order, each name followed by its bytes.
    """
    h = hashlib.sha256()
    for entry in sorted(catalogue(), key=lambda t: t["file"]):
        h.update(entry["file"].encode())
        h.update(_dir().joinpath(entry["file"]).read_bytes())
    return h.hexdigest()[:16]
