"""The calibrated targets: what a run loads from a calibration folder.

:class:`CalibratedTargets` holds the calibrated IMR of every state x race cell (point, interval and
joint posterior draws), the cause shares per race and the gestational-age shift;
:func:`imsim.inputs.fit.direct_fit` with ``targets=`` solves the per-cell multipliers that make the
expected engine reproduce them. :func:`load_calibration` finds and reads a saved fit. Fitting one
is :mod:`imsim.calibration.calibrate`.
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from imsim.calibration.observations import N_R, N_S, R_INDEX, S_INDEX
from imsim.core.constants import RACES, STATES
from imsim.core.errors import InputError


#: Files that make a loadable calibration (the rest of a fit folder is its report).
FIT_FILES = ("calibration.json", "cells.csv", "races.csv", "states.csv", "imr_draws.csv",
             "trend.json")
#: Files a fit folder also holds (reports).
REPORT_FILES = ("fit_report.csv", "fit_report.png", "backtest.csv", "backtest.png")


# =============================================================================================
# The calibrated targets: what a run loads
# =============================================================================================

@dataclass
class CalibratedTargets:
    """Calibrated targets on the 51 x 5 grid that :func:`imsim.inputs.fit.direct_fit` reproduces.

    Attributes
    ----------
    imr : numpy.ndarray
        float64 ``[51, 5]``: point IMR per 1,000 live births of every state x race cell
        (``exp`` of the posterior mode of the log rate; the mean of the draws).
    imr_lo, imr_hi : numpy.ndarray
        float64 ``[51, 5]``: its 95% posterior interval, per 1,000.
    imr_draws : numpy.ndarray
        float64 ``[K, 51, 5]``: joint posterior draws, per 1,000.
    cause_share : numpy.ndarray
        float64 ``[5, 3]``: share of deaths by cause per race (neonatal, SUID, other
        postneonatal); rows sum to 1.
    ga_shift : numpy.ndarray
        float64 ``[51, 5]``: log-odds shift of every GA cut.
    cells : pandas.DataFrame
        One row per cell (observation, tier, births, pooled estimate...).
    meta : dict
        Name, data and targets hashes, settings, sigmas; ``race_columns``/``state_columns``
        hold extra per-race/per-state columns.
    path : str or None
        Where it was loaded from.
    """

    imr: np.ndarray
    imr_lo: np.ndarray
    imr_hi: np.ndarray
    imr_draws: np.ndarray
    cause_share: np.ndarray
    ga_shift: np.ndarray
    cells: pd.DataFrame
    meta: dict
    path: str | None = None
    trend: object | None = None       # TrendModel (imsim.calibration.trend); None: a level model

    @property
    def name(self) -> str:
        """The calibration's name (``meta["name"]``, default ``"calibration"``)."""
        return str(self.meta.get("name", "calibration"))

    @property
    def n_draws(self) -> int:
        """Number of posterior draws ``K``."""
        return int(self.imr_draws.shape[0])

    def cell_imr(self, draw: int | None = None) -> np.ndarray:
        """Return the IMR per 1,000 live births of every cell: the point or one posterior draw.

        Parameters
        ----------
        draw : int or None
            Posterior draw, taken modulo ``K`` (None: the point).

        Returns
        -------
        numpy.ndarray
            float64 ``[51, 5]`` (not a copy).
        """
        if draw is None:
            return self.imr
        return self.imr_draws[int(draw) % self.n_draws]

    def ga_shift_cuts(self) -> np.ndarray:
        """Return the GA shift repeated on every cut: float64 ``[51, 5, 5]`` (log odds).

        This is the form :class:`imsim.inputs.fit.Fit` holds.
        """
        return np.repeat(self.ga_shift[:, :, None], 5, axis=2)

    @property
    def content_hash(self) -> str:
        """A hash (32 hex digits) of everything a fit reads from this calibration.

        Caches of fits key on it.
        """
        parts = [self.imr, self.imr_draws, self.cause_share, self.ga_shift]
        # Kept with the very objects it was computed from (held, so compared by identity): a
        # replaced array, or a new object from dataclasses.replace, gets a new hash; arrays are
        # never edited in place.
        objs = (*parts, self.trend)
        memo = self.__dict__.get("_hash_memo")
        if memo is not None and all(a is b for a, b in zip(memo[0], objs)):
            return memo[1]
        h = self._content_hash(parts)
        self.__dict__["_hash_memo"] = (objs, h)
        return h

    def _content_hash(self, parts) -> str:
        from imsim.core.digest import array_digest

        if self.trend is not None:
            parts.append(np.frombuffer(self.trend.digest.encode(), dtype=np.uint8))
        return array_digest(*parts)

    @property
    def stale(self) -> bool:
        """True when the packaged data changed since this fit (its data hash differs)."""
        from imsim.inputs.data import data_hash

        return self.meta.get("data_hash") != data_hash()

    # -- persistence --------------------------------------------------------------------------
    def save(self, out: str | os.PathLike) -> Path:
        """Write the fit files (:data:`FIT_FILES`) into folder ``out`` (created if needed).

        Parameters
        ----------
        out : str or path
            The folder; existing fit files in it are overwritten.

        Returns
        -------
        Path
            ``out``.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        cells = self.cells.copy()
        cells.to_csv(out / "cells.csv", index=False, float_format="%.6g")
        races = pd.DataFrame({"race": RACES, "share_neonatal": self.cause_share[:, 0],
                              "share_suid": self.cause_share[:, 1],
                              "share_other_postneonatal": self.cause_share[:, 2]})
        for k, v in self.meta.get("race_columns", {}).items():
            races[k] = v
        races.to_csv(out / "races.csv", index=False, float_format="%.6g")
        states = pd.DataFrame({"state": STATES})
        for k, v in self.meta.get("state_columns", {}).items():
            states[k] = v
        states.to_csv(out / "states.csv", index=False, float_format="%.6g")
        cols = [f"{s}.{r}" for s in STATES for r in RACES]
        draws = pd.DataFrame(self.imr_draws.reshape(self.n_draws, -1), columns=cols)
        draws.insert(0, "draw", np.arange(self.n_draws))
        draws.to_csv(out / "imr_draws.csv", index=False, float_format="%.5g")
        if self.trend is not None:
            (out / "trend.json").write_text(json.dumps(self.trend.to_dict(), indent=1) + "\n",
                                            encoding="utf-8")
        meta = {k: v for k, v in self.meta.items() if k not in ("race_columns", "state_columns")}
        (out / "calibration.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n",
                                              encoding="utf-8")
        return out

    @classmethod
    def load(cls, folder) -> CalibratedTargets:
        """Read a fit folder.

        Parameters
        ----------
        folder : path or importlib.resources.abc.Traversable
            A folder holding :data:`FIT_FILES`.

        Returns
        -------
        CalibratedTargets
            The calibration, ``path`` set to ``str(folder)``.

        Raises
        ------
        InputError
            If a file is missing or unreadable, a column is missing, or a cell is missing or
            not positive.
        """
        folder_s = str(folder)
        key = _files_key(folder)
        hit = _LOADED.get(folder_s) if key is not None else None
        if hit is not None and hit[0] == key:
            # Unchanged files (same size, mtime and inode): a shallow copy of the parsed fit
            # (its arrays are never edited in place; ``path``/``meta`` may be set per copy).
            cal = copy.copy(hit[1])
            cal.meta = dict(cal.meta)
            return cal
        cal = cls._read(folder, folder_s)
        if key is not None:
            _LOADED[folder_s] = (key, cal)
            cal = copy.copy(cal)
            cal.meta = dict(cal.meta)
        return cal

    @classmethod
    def _read(cls, folder, folder_s) -> CalibratedTargets:
        """Parse a fit folder (see :meth:`load`)."""

        def read_csv(name):
            with folder.joinpath(name).open("r", encoding="utf-8") as fh:
                return pd.read_csv(fh, keep_default_na=False, na_values=[""])

        try:
            meta = json.loads(folder.joinpath("calibration.json").read_text(encoding="utf-8"))
            cells = read_csv("cells.csv")
            races = read_csv("races.csv")
            states = read_csv("states.csv")
            draws = read_csv("imr_draws.csv")
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise InputError(f"not a readable calibration folder ({exc}); expected "
                             f"{', '.join(FIT_FILES)}", file=folder_s) from None
        try:
            idx_s = cells["state"].map(S_INDEX).to_numpy()
            idx_r = cells["race"].map(R_INDEX).to_numpy()
            grid = {}
            for col in ("imr", "imr_lo", "imr_hi", "ga_shift"):
                g = np.full((N_S, N_R), np.nan)
                g[idx_s, idx_r] = cells[col].to_numpy(float)
                grid[col] = g
            cols = [f"{s}.{r}" for s in STATES for r in RACES]
            d = draws[cols].to_numpy(float).reshape(len(draws), N_S, N_R)
            races = races.set_index("race").loc[list(RACES)]
            share = races[["share_neonatal", "share_suid", "share_other_postneonatal"]].to_numpy(float)
        except (KeyError, ValueError) as exc:
            raise InputError(f"calibration folder is incomplete or malformed ({exc})",
                             file=folder_s) from None
        if any(np.isnan(v).any() for v in grid.values()) or np.isnan(d).any() or (d <= 0).any():
            raise InputError("calibration has missing or non-positive cells", file=folder_s)
        trend = None
        tf = folder.joinpath("trend.json")
        if tf.is_file():                     # older fits (level models) have none
            from imsim.calibration.trend import TrendModel

            try:
                trend = TrendModel.from_dict(json.loads(tf.read_text(encoding="utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"trend.json is malformed ({exc})", file=folder_s) from None
        meta["race_columns"] = {c: races[c].to_numpy() for c in races.columns
                                if not c.startswith("share_")}
        meta["state_columns"] = {c: states[c].to_numpy() for c in states.columns if c != "state"}
        return cls(grid["imr"], grid["imr_lo"], grid["imr_hi"], d, share, grid["ga_shift"], cells,
                   meta, path=folder_s, trend=trend)


#: Parsed fit folders by path: (file key, CalibratedTargets). A re-fit changes the key.
_LOADED: dict = {}


def _files_key(folder):
    """(size, mtime, inode) of every file of a fit folder, or None when one cannot be stat'ed
    (then nothing is cached)."""
    key = []
    for name in FIT_FILES:
        try:
            st = os.stat(str(folder.joinpath(name)))
        except (OSError, TypeError, ValueError):
            if name == "trend.json":
                key.append(None)
                continue
            return None
        key.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(key)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _packaged_default():
    from importlib import resources

    return resources.files("imsim.inputs.data").joinpath("calibration").joinpath("default")


def load_calibration(name_or_path: str | os.PathLike | None = None,
                     scenario_dir: str | os.PathLike | None = None) -> CalibratedTargets | None:
    """Find and load a calibration.

    A fit made from other packaged data loads with a warning (``.stale`` is True).

    Parameters
    ----------
    name_or_path : str or path, optional
        ``None`` or ``"default"``: ``./calibration/default/`` when the working directory has
        one, else the copy packaged with imsim (``imsim/inputs/data/calibration/default``).
        ``"none"`` or ``"direct"`` (any case): no calibration. Otherwise the first folder with a
        ``calibration.json`` in :func:`calibration_candidates` order: the name relative to the
        working directory, ``./calibration/<name>``, the name relative to ``scenario_dir``,
        then ``calibration/<name>`` in the nearest parent folder (of the working directory,
        then of ``scenario_dir``) that has it -- the repository's ``calibration/`` when run
        from inside the repository.
    scenario_dir : str or path, optional
        The folder of the scenario file that names the calibration.

    Returns
    -------
    CalibratedTargets or None
        None for ``"none"``/``"direct"`` (the caller uses the direct fit), and also for the
        default when no packaged default exists.

    Raises
    ------
    InputError
        If the folder is missing (the message lists every place searched) or malformed.
    """
    if name_or_path is not None and str(name_or_path).lower() in ("none", "direct"):
        return None
    if name_or_path is None or str(name_or_path) == "default":
        local = Path("calibration") / "default"
        if (local / "calibration.json").is_file():
            cal = CalibratedTargets.load(local)
        else:
            pkg = _packaged_default()
            if not pkg.joinpath("calibration.json").is_file():
                return None
            cal = CalibratedTargets.load(pkg)
            cal.path = "packaged:imsim/inputs/data/calibration/default"
    else:
        tried = calibration_candidates(name_or_path, scenario_dir)
        found = [p for p in tried if (p / "calibration.json").is_file()]
        if not found:
            raise InputError("no calibration found (a folder with calibration.json written by "
                             "'imsim calibrate'); looked in: "
                             + ", ".join(str(p) for p in tried), file=str(name_or_path))
        cal = CalibratedTargets.load(found[0])
    if cal.stale:
        warnings.warn(f"calibration {cal.path} was fitted to other data (data hash "
                      f"{cal.meta.get('data_hash')}); refit with 'imsim calibrate'", stacklevel=2)
    return cal


def calibration_candidates(name: str | os.PathLike,
                           scenario_dir: str | os.PathLike | None = None) -> list[Path]:
    """Return the folders :func:`load_calibration` searches for a calibration name, in order.

    1. ``name`` relative to the working directory (or absolute);
    2. ``calibration/<name>`` under the working directory;
    3. ``name`` relative to ``scenario_dir`` (the scenario file's folder);
    4. ``calibration/<name>`` in each parent folder of the working directory, nearest first,
       then in ``scenario_dir`` and its parents (the repository's ``calibration/`` when run
       from inside the repository, or when the scenario file is in it).

    Parameters
    ----------
    name : str or path
        The calibration name or folder.
    scenario_dir : str or path, optional
        The folder of the scenario file.

    Returns
    -------
    list of Path
        Distinct candidate folders (absolute names an absolute ``name`` only once).
    """
    name = Path(name)
    cwd = Path.cwd()
    out = [name, Path("calibration") / name]
    if name.is_absolute():
        return [name]
    if scenario_dir is not None:
        out.append(Path(scenario_dir) / name)
    parents = list(cwd.parents)
    if scenario_dir is not None:
        sd = Path(scenario_dir).resolve()
        parents += [sd, *sd.parents]
    out += [d / "calibration" / name for d in parents]
    seen, unique = set(), []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique
