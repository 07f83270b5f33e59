"""Output folders and files: new names that never collide, written atomically.

Every command that writes results (``run``, ``sweep``, ``recommend``, ``calibrate``, ``data
import-wonder``) goes through this module, so they all behave the same way:

* **Fresh default names.** Without ``--out`` a command writes ``<parent>/<name>-<timestamp>/``;
  if that name is taken (two runs in the same second, even from two processes) it gets ``-2``,
  ``-3``... The name is claimed with ``mkdir``, which the operating system performs atomically,
  so two processes can never claim the same one.
* **No overwriting.** An existing, non-empty ``--out`` is refused with an
  :class:`~imsim.core.errors.InputError` before any work is done (commands call
  :func:`check_new` first). Only an explicit ``replace=True`` (``imsim calibrate --replace``)
  swaps an existing folder, and then in one rename.
* **Atomic.** A folder is built under a hidden temporary name beside its target and renamed into
  place at the end; a single file is written to a hidden temporary file and moved with
  :func:`os.replace`. An interrupted or failed command leaves nothing that looks complete.
"""
from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imsim.core.errors import InputError

#: Suffix of a resumable sweep folder (``<out>.partial/``); a name is taken in either form.
PARTIAL = ".partial"


def timestamp() -> str:
    """Return the local time as ``YYYYmmdd-HHMMSS``, the stamp of default folder names."""
    return time.strftime("%Y%m%d-%H%M%S")


def check_new(out: str | os.PathLike) -> Path:
    """Refuse an existing, non-empty folder (or a file) as an output folder.

    Parameters
    ----------
    out : path
        The folder a command is about to create.

    Returns
    -------
    Path
        ``out`` as a path (it may exist as an empty folder).

    Raises
    ------
    InputError
        When ``out`` is a file or a folder with anything in it.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("output folder already exists and is not empty; choose another --out "
                         "(runs never overwrite each other)", file=str(out))
    return out


def check_new_file(path: str | os.PathLike) -> Path:
    """Refuse an existing, non-empty file (or a folder) as an output file.

    Parameters
    ----------
    path : path
        The file a command is about to write.

    Returns
    -------
    Path
        ``path`` as a path (it may exist as an empty file).

    Raises
    ------
    InputError
        When ``path`` is a folder or a file with anything in it.
    """
    path = Path(path)
    if path.is_dir() or (path.exists() and path.stat().st_size > 0):
        raise InputError("output file already exists; choose another --out (outputs are never "
                         "overwritten)", file=str(path))
    return path


def _safe_name(name: str) -> str:
    """``name`` reduced to letters, digits and ``. _ -`` (never a path)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "run"


def new_folder(name: str, parent: str | os.PathLike = "results", *, suffix: str = "") -> Path:
    """Claim a fresh ``<parent>/<name>-<timestamp>`` folder, with ``-2``, ``-3``... if taken.

    The folder ``<path><suffix>`` is created, empty, with :func:`os.mkdir` (atomic: of two
    processes asking in the same second, each gets its own name). A name counts as taken when
    either ``<path>`` or ``<path>.partial`` exists, so runs, recommendations and sweeps never
    share one.

    Parameters
    ----------
    name : str
        The scenario, plan or sweep name (anything but letters, digits and ``. _ -`` becomes
        ``_``).
    parent : path
        The folder to create it in (created if missing).
    suffix : str
        Create ``<path><suffix>`` instead of ``<path>`` (sweeps claim ``<path>.partial``).

    Returns
    -------
    Path
        The claimed name without ``suffix``; the caller owns the created folder and removes it
        if it writes nothing.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    base = f"{_safe_name(name)}-{timestamp()}"
    for k in itertools.count(1):
        path = parent / (base if k == 1 else f"{base}-{k}")
        claimed = path.with_name(path.name + suffix)
        try:
            claimed.mkdir()
        except FileExistsError:
            continue
        others = [p for p in (path, path.with_name(path.name + PARTIAL)) if p != claimed]
        if any(p.exists() for p in others):
            claimed.rmdir()
            continue
        return path
    raise AssertionError("unreachable")  # pragma: no cover


def _hidden_sibling(path: Path, tag: str, *, folder: bool) -> Path:
    """Create and return a new hidden ``.<name>.<tag>-<random>`` beside ``path``.

    Created with ordinary permissions (unlike :mod:`tempfile`, whose 0700/0600 would end up on
    the published output). A file keeps ``path``'s extension, so writers that infer the format
    from it (``np.save``, ``savefig``) still work.
    """
    while True:
        token = secrets.token_hex(4)
        if folder:
            tmp = path.with_name(f".{path.name}.{tag}-{token}")
        else:
            tmp = path.with_name(f".{path.stem}.{tag}-{token}{path.suffix}")
        try:
            if folder:
                tmp.mkdir()
            else:
                with open(tmp, "xb"):
                    pass
            return tmp
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue


def publish(tmp: str | os.PathLike, out: str | os.PathLike, *, replace: bool = False) -> Path:
    """Rename a finished temporary folder ``tmp`` to ``out`` in one step.

    Parameters
    ----------
    tmp : path
        The finished folder (a sibling of ``out``, same file system).
    out : path
        The target. It may be missing or an empty folder; with ``replace`` an existing folder is
        swapped out (moved aside, ``tmp`` renamed in, the old one deleted; moved back if the
        rename fails).
    replace : bool
        Allow replacing a non-empty ``out``.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    InputError
        When ``out`` was created by something else in the meantime (and ``replace`` is false).
    """
    tmp, out = Path(tmp), Path(out)
    if replace and out.is_dir() and any(out.iterdir()):
        old = _hidden_sibling(out, "old", folder=True)
        os.replace(out, old / out.name)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old / out.name, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return out
    try:
        # POSIX rename replaces an empty folder atomically and fails on a non-empty one.
        os.rename(tmp, out)
    except OSError:
        if out.is_dir() and not any(out.iterdir()):  # e.g. Windows: rename never replaces
            out.rmdir()
            os.rename(tmp, out)
        elif out.exists():
            raise InputError("output folder was created by something else while this command "
                             "ran; nothing was written (choose another --out)",
                             file=str(out)) from None
        else:
            raise
    return out


@dataclass
class Staging:
    """A folder being written: files go into ``tmp``, which becomes ``out`` at the end.

    Attributes
    ----------
    tmp : Path
        The hidden temporary folder beside ``out``.
    out : Path
        The final folder.
    """

    tmp: Path
    out: Path


@contextmanager
def atomic_folder(out: str | os.PathLike | None = None, *, name: str | None = None,
                  parent: str | os.PathLike = "results",
                  replace: bool = False) -> Iterator[Staging]:
    """Build an output folder under a hidden temporary name; rename it into place on success.

    Parameters
    ----------
    out : path, optional
        The folder to create; it must not exist or be empty (unless ``replace``). ``None``:
        claim a fresh default name with :func:`new_folder` (``name`` and ``parent``).
    name : str, optional
        The name of the default folder (required when ``out`` is ``None``).
    parent : path
        Where the default folder goes.
    replace : bool
        Swap out an existing ``out`` at the end instead of refusing it.

    Yields
    ------
    Staging
        ``.tmp``: the hidden folder to write into (beside ``out``); ``.out``: the final folder.

    Raises
    ------
    InputError
        On entry, when ``out`` exists and is not empty (and not ``replace``) or is a file.

    Notes
    -----
    On any exception (KeyboardInterrupt included) the temporary folder, and a default folder
    this call claimed, are removed: nothing is left that looks complete.
    """
    claimed = out is None
    if claimed:
        if name is None:
            raise TypeError("atomic_folder needs out or name")
        target = new_folder(name, parent)
    else:
        target = Path(out)
        if not replace:
            check_new(target)
        elif target.exists() and not target.is_dir():
            raise InputError("output exists and is not a folder", file=str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = _hidden_sibling(target, "tmp", folder=True)
        try:
            yield Staging(tmp, target)
            publish(tmp, target, replace=replace)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except BaseException:
        if claimed:
            try:
                target.rmdir()       # only if still empty
            except OSError:
                pass
        raise


@contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Write one file under a hidden temporary name; move it to ``path`` on success.

    Parameters
    ----------
    path : path
        The file to write (its folder is created if missing).
    overwrite : bool
        Replace an existing ``path`` (sweep chunks, back-test files). If false, an existing,
        non-empty ``path`` is refused, on entry and again (atomically, with a hard link) at the
        end.

    Yields
    ------
    Path
        A hidden temporary file beside ``path``, with the same extension, to write into.

    Raises
    ------
    InputError
        When ``overwrite`` is false and ``path`` exists and is not empty.

    Notes
    -----
    The file is flushed to disk before it is moved, so a crash leaves either the old file, the
    new one, or none -- never a truncated one. On any exception the temporary file is removed.
    """
    path = Path(path)
    if not overwrite:
        check_new_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _hidden_sibling(path, "tmp", folder=False)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _link_new(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless a non-empty ``path`` appeared meanwhile."""
    try:
        os.link(tmp, path)               # fails if path exists: no window for a race
    except FileExistsError:
        check_new_file(path)             # an empty file may be replaced
        os.replace(tmp, path)
    except OSError:                      # no hard links on this file system
        check_new_file(path)
        os.replace(tmp, path)
    else:
        tmp.unlink()
