"""Uncertainty draws: which effect values and which calibration posterior draw each draw uses.

Draw 0 is the point: the evidence library's point values (with the scenario's overrides) and the
calibration's point estimate. Draws ``1..R`` sample every effect from its distribution and take
one calibration posterior draw. Every value is keyed (:mod:`imsim.core.streams`): draw ``d`` of
effect ``X`` depends only on ``(seed, X, d)`` and the posterior draw of draw ``d`` only on
``(seed, d)``. So the first 100 draws of ``replicates: 200`` are exactly ``replicates: 100``, an
override changes no other effect's draws, and a run, a sweep and a portfolio search that ask for
the same seed and draw count evaluate exactly the same draws.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imsim.core.streams import uniforms


@dataclass(frozen=True)
class Draw:
    """One uncertainty draw.

    Attributes
    ----------
    index : int
        0 for the point, 1..R for samples.
    effects : dict of str to float
        The value of every evidence effect.
    calibration_draw : int or None
        Posterior draw of the calibration (None: its point estimate, or no calibration).
    """

    index: int
    effects: dict
    calibration_draw: int | None


def n_draws(replicates: int) -> int:
    """Return the number of draws a run evaluates: 1 (the point) or ``1 + replicates``.

    Parameters
    ----------
    replicates : int
        Uncertainty draws requested (1 or less: the point only).

    Returns
    -------
    int
        ``1`` if ``replicates <= 1``, else ``1 + replicates``.
    """
    return 1 if int(replicates) <= 1 else 1 + int(replicates)


def calibration_draws(calibration, seed: int, n: int) -> list[int | None]:
    """Return the calibration posterior draw used by each of the sampled draws ``1..n``.

    Draw ``d`` uses posterior draw ``floor(u_d * K)`` of a calibration with ``K`` posterior draws,
    ``u_d`` the ``d``-th uniform of the stream ``(seed, "calibration_draw", "posterior")``.

    Parameters
    ----------
    calibration : CalibratedTargets or None
        The calibration (its ``imr_draws`` is ``[K, 51, 5]``).
    seed : int
        The run's seed.
    n : int
        Number of sampled draws.

    Returns
    -------
    list of int or None
        ``n`` posterior draw indices in ``0..K-1`` (all None without a calibration).
    """
    if calibration is None:
        return [None] * n
    k = int(calibration.imr_draws.shape[0])
    return [posterior_index(u, k) for u in uniforms(seed, "calibration_draw", "posterior", n)]


def posterior_index(u: float, k: int) -> int:
    """Return the posterior draw ``floor(u * k)``, clipped to ``0..k-1``, of a uniform ``u``.

    The one mapping from a uniform to a calibration posterior draw: run draws
    (:func:`calibration_draws`) and the sweep parameter ``calibration`` both use it.

    Parameters
    ----------
    u : float
        A uniform in [0, 1).
    k : int
        Number of posterior draws of the calibration.

    Returns
    -------
    int
        The posterior draw index.
    """
    return int(min(max(np.floor(u * k), 0), k - 1))


def draw_plan(evidence, calibration, seed: int, replicates: int) -> list[Draw]:
    """Return the draws of a run: the point, then ``replicates`` samples when ``replicates > 1``.

    Parameters
    ----------
    evidence : EvidenceLibrary
        The evidence library with the scenario's overrides.
    calibration : CalibratedTargets or None
        The calibration the baseline reproduces (None: the direct fit).
    seed : int
        The run's seed.
    replicates : int
        Number of sampled draws (1: the point only).

    Returns
    -------
    list of Draw
        ``n_draws(replicates)`` draws, draw 0 the point.
    """
    draws = [Draw(0, evidence.point(), None)]
    if replicates > 1:
        sample = evidence.draws(seed, replicates)
        cal = calibration_draws(calibration, seed, replicates)
        for d in range(replicates):
            draws.append(Draw(d + 1, {k: float(v[d]) for k, v in sample.items()}, cal[d]))
    return draws
