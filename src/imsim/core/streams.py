"""Keyed randomness: every random quantity is a pure function of (seed, a named stream, an index).

Why
---
imsim answers "how many deaths does *this* change avert?", so what matters is the difference
between two worlds that share every piece of luck except the change itself (common random
numbers). That holds only if a random number is addressed by *what it is for*, not by *when it
was drawn*. If draws come one after another from a single generator, draw ``d`` of an effect
depends on how many replicates were asked for and on every other effect drawn before it: adding
an effect, or asking for 200 replicates instead of 100, silently reshuffles everything, and two
analyses of the same portfolio (a run and a portfolio search) disagree for no reason.

So every random quantity in imsim is keyed:

* a **seed** (the user's),
* a **named stream** -- one of :data:`STREAMS` below, which says what the numbers are for, and
* an **index** -- which quantity within the stream (an effect id, a draw number, a state and
  strategy, a quarter...).

From the key a counter-based generator (Philox, via NumPy's ``SeedSequence``) yields the numbers.
Consequences, each tested:

* the first 100 draws of ``replicates: 200`` are exactly ``replicates: 100`` (both engines);
* overriding or adding one effect changes no other effect's draws;
* ``recommend`` evaluates a portfolio on exactly the draws ``imsim run`` uses for it;
* results are the same on any number of threads, processes or Dask workers.

The microsimulation kernel uses the same idea inside Numba (:mod:`imsim.birth.kernels`): a birth's
uniforms are ``philox4x32_7(counter = (birth index, cell uid, block, replicate), key = seed)``, so a
birth meets the same luck in the baseline and the scenario arm, on any thread. Its stream
(``microsim``) is listed here for completeness; its counter layout is documented in the kernel.

Nothing in imsim calls ``np.random.<function>``, ``random.<function>`` or an unseeded generator.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

#: Every named stream, and what it is for. A stream's numeric id is the CRC-32 of its name, so it
#: never changes when streams are added or reordered.
STREAMS: dict[str, str] = {
    "effects": "uncertainty draw d of evidence effect X (index: effect id; one uniform per draw, "
               "mapped through the effect's quantile function)",
    "calibration_draw": "which calibration posterior draw uncertainty draw d uses (one uniform "
                        "per draw, scaled to the number of posterior draws)",
    "microsim": "per-birth luck in the microsimulation kernel (counter-based inside Numba; key = "
                "seed, counter = birth index, cell uid, block, replicate)",
    "collaborative_stalls": "whether a state team stalls in a quarter (index: state, strategy; "
                            "one uniform per quarter)",
    "collaborative_assignment": "the illustrative CoIIN-like assignment of strategies to states",
    "decision_random_allocation": "random allocation j compared with the optimal national "
                                  "allocation (index: j)",
    "sweep_psa": "probabilistic sweep samples (index: parameter id; one uniform per sample)",
    "sweep_sobol": "scrambling of SALib's Sobol sequence",
    "ratemodel_posterior": "posterior draw k of the calibration's rate model (index: k)",
    "backtest": "posterior-predictive draws of the back-test (index: draw)",
    "births_projection": "uncertainty draw d of projected births (index: d; one standard normal "
                         "per state times the state's trend-slope standard error)",
    "trend": "draw k of the IMR trend model: national path, state and race slopes (index: the "
             "calibration posterior draw k)",
    "cost_draw": "uncertainty draw d of a strategy's cost per birth reached from the cost library "
                 "(index: strategy id; one uniform per draw, mapped through the triangular "
                 "low-value-high quantile function)",
    "replay": "Poisson noise of the observed deaths in the replay's predictive interval of the "
              "observed 2013-2017 change (index: uncertainty draw d)",
}


def stream_id(stream: str) -> int:
    """Return the stable 32-bit id of a named stream.

    Parameters
    ----------
    stream : str
        A key of :data:`STREAMS`.

    Returns
    -------
    int
        The CRC-32 of the stream's name, in ``[0, 2**32)``.

    Raises
    ------
    KeyError
        If the stream is not registered (every stream must be declared above, with its purpose).
    """
    if stream not in STREAMS:
        raise KeyError(f"unknown random stream {stream!r}; declare it in imsim.core.streams.STREAMS")
    return zlib.crc32(stream.encode())


def _index_words(index: Iterable) -> list[int]:
    words: list[int] = []
    for part in index:
        if isinstance(part, (bool, np.bool_)):
            words.append(int(part))
        elif isinstance(part, (int, np.integer)):
            v = int(part)
            if v < 0:
                raise ValueError(f"stream index must be non-negative, got {v}")
            # Split into 32-bit words so any non-negative integer is a distinct key.
            words.append(v & 0xFFFFFFFF)
            words.append(v >> 32)
        else:
            words.append(zlib.crc32(str(part).encode()))
    return words


def generator(seed: int, stream: str, *index) -> np.random.Generator:
    """Return the generator of ``(seed, stream, index...)``.

    Parameters
    ----------
    seed : int
        Non-negative integer seed (the user's).
    stream : str
        A key of :data:`STREAMS`.
    *index : int or str
        Which quantity within the stream (strings are hashed with CRC-32).

    Returns
    -------
    numpy.random.Generator
        A Philox generator that depends on nothing but the key.

    Raises
    ------
    ValueError
        For a negative seed or a negative integer index.
    KeyError
        For an unregistered stream.
    """
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    entropy = [seed & 0xFFFFFFFF, seed >> 32, stream_id(stream), *_index_words(index)]
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(entropy)))


def uniforms(seed: int, stream: str, index, n: int) -> np.ndarray:
    """Return the first ``n`` uniforms in [0, 1) of ``(seed, stream, index)``.

    The first ``m < n`` values are the same whatever ``n`` is (a prefix property), so draw ``d``
    does not depend on how many draws were asked for.

    Parameters
    ----------
    seed : int
        Non-negative integer seed.
    stream : str
        A key of :data:`STREAMS`.
    index : int or str or tuple
        Which quantity within the stream (a tuple gives several index parts).
    n : int
        Number of uniforms.

    Returns
    -------
    numpy.ndarray
        float64 ``[n]``.
    """
    if not isinstance(index, tuple):
        index = (index,)
    return generator(seed, stream, *index).random(int(n))
