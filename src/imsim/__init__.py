"""imsim: microsimulation of strategies against U.S. infant mortality.

The public API is small: load a scenario, run it, read or save the result.

>>> import imsim
>>> scenario = imsim.load_scenario("scenarios/baseline.yaml")
>>> result = imsim.run(scenario, engine="expected")
>>> result.summary.head()

Heavy modules are imported lazily so that ``imsim --help`` stays instant.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_scenario", "run", "__version__"]


def load_scenario(path):
    """Load and validate a scenario file; see :func:`imsim.config.scenario.load_scenario`."""
    from imsim.config.scenario import load_scenario as _load

    return _load(path)


def run(scenario, engine=None, seed=None, replicates=None, **kwargs):
    """Run a scenario; see :func:`imsim.analysis.runner.run`."""
    from imsim.analysis.runner import run as _run

    return _run(scenario, engine=engine, seed=seed, replicates=replicates, **kwargs)
