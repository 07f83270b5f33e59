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
* **One writer per folder.** :func:`check_new` also checks that the folder can be created (its
  parent is a writable folder, its name not too long) and takes an exclusive lock on it
  (:func:`claim`; the lock files live in a private folder of this user, not beside outputs)
  that the command holds until it publishes, so a second command on the same ``--out`` is
  refused before it does any work, naming the first one's pid. The operating system drops the
  lock when a process dies, however it dies.
* **Nothing stale.** Temporary names carry the pid of their process
  (``.<name>.tmp-<pid>-<random>``); the next command writing beside them removes those whose
  process is gone (:func:`clean_stale`), so a ``kill -9`` during a save leaves nothing behind for
  long. (Assumes one host writes a results folder: a pid is only meaningful on its own host.)
"""
from __future__ import annotations

import errno
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


def check_new(out: str | os.PathLike, *, lock: bool = True) -> Path:
    """Refuse an output folder that exists (non-empty), cannot be created or is being written.

    Parameters
    ----------
    out : path
        The folder a command is about to create.
    lock : bool
        Also take this process's exclusive lock on ``out`` (:func:`claim`), held until the
        folder is published (:func:`atomic_folder`) or :func:`release`.

    Returns
    -------
    Path
        ``out`` as a path (it may exist as an empty folder).

    Raises
    ------
    InputError
        When ``out`` is a file or a folder with anything in it, when it cannot be created (a
        file in its path, a parent that is not writable, a name too long for the file system)
        or when another process holds its lock.
    """
    out = Path(out)
    try:
        full = out.exists() and (not out.is_dir() or any(out.iterdir()))
    except OSError as exc:
        raise InputError(f"cannot use this output folder: {exc.strerror}", file=str(out)) from None
    if full:
        raise InputError("output folder already exists and is not empty; choose another --out "
                         "(runs never overwrite each other)", file=str(out))
    check_creatable(out)
    if lock:
        claim(out)
    return out


#: Bytes that hidden temporary siblings add to a name (``.<name>.tmp-<pid>-<8 hex>``).
_SIBLING_EXTRA = 32


def check_creatable(path: str | os.PathLike) -> Path:
    """Refuse a path that cannot be created as a file or folder, before any work is done.

    The nearest existing ancestor must be a folder this process can write into, and every name
    (with room for the hidden temporary siblings) must fit the file system's limits.

    Parameters
    ----------
    path : path
        The file or folder a command is about to create.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        One line naming ``path`` and the problem.
    """
    path = Path(path)
    anc = Path(os.path.abspath(path)).parent
    try:
        while not os.path.lexists(anc) and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise InputError(f"cannot create it: {anc} is a file, not a folder", file=str(path))
        try:
            name_max = os.pathconf(anc, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):  # pragma: no cover - no pathconf
            name_max = 255
        parts = Path(os.path.abspath(path)).relative_to(anc).parts
        for k, part in enumerate(parts):
            limit = name_max - (_SIBLING_EXTRA if k == len(parts) - 1 else 0)
            if len(os.fsencode(part)) > limit:
                raise InputError(f"name too long: {len(os.fsencode(part))} bytes (at most "
                                 f"{limit} here)", file=str(path)[:120] + "...")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise InputError(f"cannot create it: {anc} is not writable", file=str(path))
    except OSError as exc:
        raise InputError(f"cannot create it: {exc.strerror}", file=str(path)) from None
    return path


# ---------------------------------------------------------------------------------------------
# One writer per output: an exclusive lock, dropped by the OS when its process dies
# ---------------------------------------------------------------------------------------------

#: Locks this process holds: lock file -> (open file descriptor, the output it locks).
_HELD: dict[str, tuple[int, str]] = {}


def _lock_dir() -> Path | None:
    """This user's lock folder (``<tmp>/imsim-locks-<uid>``, mode 0700), or None if unusable."""
    import stat
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else 0
    d = Path(tempfile.gettempdir()) / f"imsim-locks-{uid}"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        st = d.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != uid):
        return None                          # not ours: do without locks
    return d


def lock_path(out: str | os.PathLike) -> Path | None:
    """The lock file of output ``out`` (keyed by its real path), or None where locks are off.

    Lock files live in this user's lock folder (:func:`_lock_dir`), never beside the outputs,
    so a command that fails or dies leaves nothing in the user's folders.
    """
    import hashlib

    d = _lock_dir()
    if d is None:
        return None
    out = Path(out)
    full = os.path.join(os.path.realpath(out.parent), out.name)
    return d / (hashlib.sha256(os.fsencode(full)).hexdigest()[:40] + ".lock")


def claim(out: str | os.PathLike) -> bool:
    """Take the exclusive lock of output ``out`` for this process (re-entrant).

    The lock (``flock`` on :func:`lock_path`, which records the holder's pid) is held until
    :func:`release`, :func:`release_all` or the process's end -- the operating system drops it
    when a process dies, even by SIGKILL, so a stale lock never blocks anyone. A no-op where
    ``fcntl`` or a private lock folder is missing (Windows; a shared ``/tmp`` taken by another
    user): atomic renames still let only one writer publish.

    Parameters
    ----------
    out : path
        The output folder (or sweep) to claim.

    Returns
    -------
    bool
        True if this call took the lock, False if this process already held it (or locks are
        off).

    Raises
    ------
    InputError
        When another process holds it (its pid is named).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    path = lock_path(out)
    if path is None or str(path) in _HELD:
        return False
    key = str(path)
    while True:
        try:
            fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:  # pragma: no cover - lock folder unusable: do without
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise InputError(f"another imsim command (pid {holder}) is writing this output "
                             "right now; wait for it to finish or choose another --out",
                             file=str(out)) from None
        try:                                    # the file we locked is still the lock file?
            same = os.path.samestat(os.fstat(fd), os.stat(key))
        except FileNotFoundError:
            same = False
        if not same:                            # its holder released (unlinked) it meanwhile
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[key] = (fd, str(out))
        return True


def holds(out: str | os.PathLike) -> bool:
    """Whether this process holds the lock of output ``out`` (:func:`claim`).

    Parameters
    ----------
    out : path
        The output folder.

    Returns
    -------
    bool
        True if this process holds it.
    """
    path = lock_path(out)
    return path is not None and str(path) in _HELD


def release(out: str | os.PathLike) -> None:
    """Give up this process's lock of ``out`` (and remove the lock file); a no-op if not held.

    Parameters
    ----------
    out : path
        The output claimed with :func:`claim`.
    """
    path = lock_path(out)
    held = _HELD.pop(str(path), None) if path is not None else None
    if held is None:
        return
    try:
        os.unlink(path)                         # while still holding it
    except OSError:
        pass
    os.close(held[0])


def release_all() -> None:
    """Give up every lock this process holds (the command line calls it on exit)."""
    for key in list(_HELD):
        fd, _out = _HELD.pop(key)
        try:
            os.unlink(key)
        except OSError:
            pass
        os.close(fd)


#: Hidden temporary names: ``.<name>.<tag>-<pid>-<8 hex>[.ext]`` (see :func:`_hidden_sibling`).
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<tag>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}(\.[^.]*)?$")


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":   # Windows: os.kill(pid, 0) is not a probe
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                             # e.g. another user's process: it exists
        return True
    return True


def clean_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove what dead imsim processes left in ``folder``: their temporary files and folders.

    A hidden temporary file or folder (``.<name>.tmp-<pid>-<random>``, ``.<name>.old-...``)
    whose process no longer exists is removed, and with it its target ``<name>`` if that is an
    empty folder (a default name claimed by the dead process). Anything of a live process is
    left alone.

    Parameters
    ----------
    folder : path
        The folder to tidy (missing: nothing to do).

    Returns
    -------
    list of Path
        What was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_NAME.match(e.name)
        if m is None or _alive(int(m.group("pid"))):
            continue
        path = Path(e.path)
        if e.is_dir(follow_symlinks=False):
            if m.group("tag") == "old":        # a swapped-out folder: old/<name>, the previous
                inner = path / m.group("name")  # version, if the swap did not finish
                target = folder / m.group("name")
                if inner.is_dir() and not os.path.lexists(target):
                    os.replace(inner, target)
            shutil.rmtree(path, ignore_errors=True)
            target = folder / m.group("name")
            try:
                if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
                    target.rmdir()
            except OSError:
                pass
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


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
        token = f"{os.getpid()}-{secrets.token_hex(4)}"    # the pid: see clean_stale
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
        check_creatable(Path(parent) / "x")
        clean_stale(parent)
        target = new_folder(name, parent)
        took = False
    else:
        target = Path(out)
        if not replace:
            took = not holds(target)
            check_new(target)
        else:
            if target.exists() and not target.is_dir():
                raise InputError("output exists and is not a folder", file=str(target))
            check_creatable(target)
            took = claim(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            release(target)
            raise InputError(f"cannot create it: {exc.strerror}", file=str(target)) from None
        clean_stale(target.parent)
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
        elif took:
            release(target)
        raise
    release(target)                  # published: the next writer is refused as "exists"


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
