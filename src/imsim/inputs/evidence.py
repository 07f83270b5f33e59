"""The evidence library: every effect the model uses, with its uncertainty and citation.

Effects live in the packaged table ``data/evidence.csv`` (built by ``scripts/build_data.py`` from
``../shared/data/evidence``). Each has an ``id``, a point value and a distribution for uncertainty
analysis:

* ``lognormal`` -- a ratio with a 95% CI: ``log(x) ~ Normal(log(point), (log hi - log lo) / 3.92)``;
* ``normal`` -- ``Normal(point, (hi - lo) / 3.92)``;
* ``uniform`` -- ``Uniform(lo, hi)``; ``triangular`` -- ``Triangular(lo, point, hi)``;
* ``fixed`` -- no uncertainty (a base-case switch such as 17-OHPC's null effect).

Scenario files may override any effect by id (``effects: {unsafe_sleep_suid_or: 2.6}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from imsim.inputs.data import load_table
from imsim.core.constants import DISTRIBUTIONS  # noqa: F401  (re-exported)
from imsim.core.errors import InputError, did_you_mean

_Z95 = 3.919927969080108  # 2 x 1.959964


@dataclass(frozen=True)
class Effect:
    """One row of the evidence library.

    Attributes
    ----------
    id : str
        Effect id (e.g. ``unsafe_sleep_suid_or``).
    point : float
        Point value, on the effect's scale.
    dist : str
        Distribution, one of :data:`imsim.core.constants.DISTRIBUTIONS`.
    lo, hi : float
        95% range (NaN if none; the effect is then fixed at ``point``).
    scale : str
        ``"ratio"`` (odds or risk ratio, > 0) or ``"probability"`` (0..1).
    description : str
        What the effect is.
    citation : str
        Its source ("" if none).
    assumption : bool
        True for a modelling assumption rather than a published estimate.
    """

    id: str
    point: float
    dist: str
    lo: float
    hi: float
    scale: str
    description: str
    citation: str
    assumption: bool

    def ppf(self, q):
        """Return the quantiles of the effect's distribution at probabilities ``q``.

        Parameters
        ----------
        q : array_like of float
            Probabilities in (0, 1), any shape.

        Returns
        -------
        numpy.ndarray
            float64, the shape of ``q``, on the effect's scale; ``point`` everywhere for a
            ``fixed`` effect or one without a finite, non-empty range.

        Raises
        ------
        ValueError
            For an unknown distribution.
        """
        from scipy import stats

        q = np.asarray(q, dtype=float)
        if self.dist == "fixed" or not np.isfinite(self.lo) or not np.isfinite(self.hi) \
                or self.lo == self.hi:
            return np.full(q.shape, self.point)
        if self.dist == "lognormal":
            sd = (np.log(self.hi) - np.log(self.lo)) / _Z95
            return np.exp(stats.norm.ppf(q, loc=np.log(self.point), scale=sd))
        if self.dist == "normal":
            return stats.norm.ppf(q, loc=self.point, scale=(self.hi - self.lo) / _Z95)
        if self.dist == "uniform":
            return self.lo + q * (self.hi - self.lo)
        if self.dist == "triangular":
            c = (self.point - self.lo) / (self.hi - self.lo)
            return stats.triang.ppf(q, c, loc=self.lo, scale=self.hi - self.lo)
        raise ValueError(f"unknown distribution {self.dist!r} for effect {self.id}")

    def bounds(self) -> tuple[float, float]:
        """Return a (low, high) range for sensitivity analysis: the 2.5% and 97.5% quantiles.

        Returns
        -------
        tuple of float
            ``(point, point)`` for a ``fixed`` effect.
        """
        if self.dist == "fixed":
            return (self.point, self.point)
        lo, hi = self.ppf([0.025, 0.975])
        return (float(lo), float(hi))


class EvidenceLibrary:
    """All effects by id, with optional scenario overrides.

    Parameters
    ----------
    effects : dict of str to Effect
        The effects, by id.
    overrides : dict of str to float, optional
        Values that replace the point value (and every draw) of some effects.
    """

    def __init__(self, effects: dict[str, Effect], overrides: dict[str, float] | None = None):
        self.effects = effects
        self.overrides = dict(overrides or {})

    @classmethod
    def load(cls) -> EvidenceLibrary:
        """Return the packaged library (``evidence.csv``, read once), without overrides."""
        return cls(_load_effects())

    @property
    def ids(self) -> list[str]:
        """Every effect id, sorted."""
        return sorted(self.effects)

    def check_id(self, effect_id: str, file=None, where=None) -> None:
        """Raise :class:`InputError` unless ``effect_id`` is in the library.

        Parameters
        ----------
        effect_id : str
            The id to check.
        file : str, optional
            The file to name in the error.
        where : str, optional
            The key path to name in the error.

        Raises
        ------
        InputError
            For an unknown id, with the closest id ("did you mean ...?").
        """
        if effect_id not in self.effects:
            raise InputError(
                f"unknown effect id '{effect_id}'{did_you_mean(effect_id, self.effects)}; "
                f"see `imsim data evidence` for the {len(self.effects)} ids",
                file=file, where=where)

    def with_overrides(self, overrides: dict[str, float]) -> EvidenceLibrary:
        """Return a new library with ``overrides`` added (later values win).

        Parameters
        ----------
        overrides : dict of str to float
            Effect id -> value, on the effect's scale (values are not range-checked here).

        Returns
        -------
        EvidenceLibrary
            A new object sharing the effects; this one is unchanged.

        Raises
        ------
        InputError
            For an unknown effect id.
        """
        for k in overrides:
            self.check_id(k)
        return EvidenceLibrary(self.effects, {**self.overrides, **overrides})

    def point(self) -> dict[str, float]:
        """Return the point value of every effect, by id (overrides applied)."""
        vals = {k: e.point for k, e in self.effects.items()}
        vals.update(self.overrides)
        return vals

    def draws(self, seed: int, n: int) -> dict[str, np.ndarray]:
        """Return uncertainty draws ``1..n`` of every effect, keyed.

        Draw ``d`` of effect ``X`` is the effect's quantile function at the ``d``-th uniform of
        the stream ``(seed, "effects", X)`` (:mod:`imsim.core.streams`): it depends on nothing
        else, so asking for more draws extends the list without changing the first ones, and
        overriding or adding an effect changes no other effect's draws. Overridden and
        ``fixed`` effects stay at their value.

        Parameters
        ----------
        seed : int
            The run's seed.
        n : int
            Number of draws.

        Returns
        -------
        dict of str to numpy.ndarray
            Effect id -> float ``[n]``.
        """
        from imsim.core.streams import uniforms

        out = {}
        for k in sorted(self.effects):
            if k in self.overrides:
                out[k] = np.full(n, float(self.overrides[k]))
            else:
                out[k] = self.effects[k].ppf(uniforms(seed, "effects", k, n))
        return out


@lru_cache(maxsize=1)
def _load_effects() -> dict[str, Effect]:
    df = load_table("evidence")
    effects = {}
    for row in df.itertuples(index=False):
        effects[row.id] = Effect(
            id=row.id, point=float(row.point), dist=str(row.dist),
            lo=float(row.lo) if pd.notna(row.lo) else np.nan,
            hi=float(row.hi) if pd.notna(row.hi) else np.nan,
            scale=str(row.scale), description=str(row.description),
            citation=str(row.citation) if pd.notna(row.citation) else "",
            assumption=bool(row.assumption),
        )
    return effects
