"""Content digests of arrays: the keys of every cache that must never serve stale values.

A cache keyed by an object's identity or by a path can hand out a result computed from other
data; a digest of the arrays themselves cannot.
"""
from __future__ import annotations

import hashlib

import numpy as np


def array_digest(*arrays) -> str:
    """Return a 128-bit hex digest of the shapes and float64 contents of ``arrays``.

    Parameters
    ----------
    *arrays : array_like
        Arrays (or scalars), hashed in order as C-contiguous float64.

    Returns
    -------
    str
        32 hex characters; equal for equal shapes and values.
    """
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        a = np.ascontiguousarray(arr, dtype=float)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()
