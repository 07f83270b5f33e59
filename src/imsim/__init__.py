"""imsim: microsimulation of strategies against U.S. infant mortality.

The public API is small: load a scenario, run it, read or save the result (:mod:`imsim.api`).

>>> import imsim
>>> scenario = imsim.load_scenario("scenarios/baseline.yaml")
>>> result = imsim.run(scenario, engine="expected")
>>> result.summary.head()
>>> result.save("results/my-run")

``run``, ``load_scenario`` and ``RunResult`` come from :mod:`imsim.api`, imported on first use so
that ``import imsim`` (and ``imsim --help``) stays instant.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from imsim.core.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from imsim.api import RunResult, load_scenario, run

__all__ = ["RunResult", "load_scenario", "run", "__version__"]

_API = frozenset({"RunResult", "load_scenario", "run"})


def __getattr__(name: str):
    """Import :mod:`imsim.api` when one of its names is first used."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module("imsim.api"), name)
    raise AttributeError(f"module 'imsim' has no attribute {name!r}")
