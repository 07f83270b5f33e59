"""Replaying the past: 2013-2017 as the model sees it, against the observed change in IMR.

A validation, not a fit: nothing here is adjusted to the observed change.

What the replay puts in (every piece already in the model):

* **Rates**: the calibration's 2013-2015 level with a trend model. ``trend="origin2012"``
  (default) refits the trend model on data through 2012 only (national level on the 2007-2012
  national series, state levels and slopes on the 2007-2012 single-year state series, race
  slopes as packaged: they are fitted to 2018-2023 national blocks, outside 2013-2017): the
  modelled change is then a forecast, as in the back-test. ``trend="packaged"`` uses the
  calibration's own trend model, whose national level (2007-2023) and state slopes (2008-2017)
  were fitted to data that include 2013-2017: in-sample, shown for comparison only.
* **Exposures**: their published national trends (``exposure_trends.csv``: smoking during
  pregnancy by race, NCHS Data Brief 458, 2016-2021, applied from 2014). In the baseline arm
  they change the structure (which deaths) but the total follows the trend model
  (:meth:`imsim.inputs.baseline.Baseline.params`), so their effect on the change is the trend's.
* **Medicaid expansion**: each state's own expansion year (``states.csv``, KFF;
  :attr:`Baseline.expansion_year`): from that year, every low-income birth of an expanding state
  is reached (``social_determinants`` at coverage 1 with ``policy: medicaid_expansion``; its effect
  per birth reached is the Wiggins 2020 difference-in-differences over the Medicaid share, so
  coverage 1 applies the whole published DiD). The trend refitted through 2012 knows nothing of
  the expansions, so they are not counted twice; with the packaged trend they partly are.
* **The CoIIN**: the learning-collaborative ABM (:mod:`imsim.collaborative`) with the published
  team counts per strategy (``teams: coiin_2013_2017``: 37 safe sleep, 29 pre/interconception,
  21 smoking cessation, 21 preterm, 14 risk-appropriate care; which states chose which is not
  published: a seeded assignment matching the counts), support 2013-2017, its other parameters
  the documented defaults of ``scenarios/collaborative_coiin.yaml`` (ASSUMPTIONS). The CoIIN's
  social-determinants teams (23) are not modelled: the model's social-determinants levers are
  Medicaid expansion and income support, which those teams did not deliver.

What it compares: the observed change of the IMR from 2013 to 2017 by state (all races; the
single-year state series, :func:`imsim.calibration.series.state_series`), nationally (NVSR) and
nationally by race (America's Children table HEALTH2, one decimal; :data:`NATIONAL_RACE`), with
the modelled change of the scenario arm (rates, exposures, expansion and CoIIN together). The
interval ``modelled_lo``-``modelled_hi`` is a 95% *predictive* interval of the observed change:
the model's uncertainty draws (evidence, calibration posterior, trend) plus the Poisson noise of
each year's deaths among the observed births (stream ``replay``). ``within`` says whether the
observed change lies inside it. ``replay_parts.csv`` splits the point change into the baseline
arm's (trend) and the levers' (expansion + CoIIN) parts.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from imsim.core.constants import ALL, RACES, STATES, STRATEGIES

#: The replay scenario (also ``scenarios/replay_2013_2017.yaml``; a test keeps them equal).
REPLAY_SCENARIO = {
    "name": "replay_2013_2017",
    "description": "2013-2017 as it happened in the model: Medicaid expansion by state and year, "
                   "the smoking trend, and the CoIIN collaborative (published team counts); "
                   "compared with the observed change (imsim replay)",
    "years": [2013, 2017],
    "states": "all",
    "seed": 20130101,
    "engine": "expected",
    "replicates": 200,
    "collaborative": {
        "start": 2013, "support_ends": 2017, "teams": "coiin_2013_2017",
        "peer_learning": 0.3, "capacity": {"default": 0.5},
        "ceiling": {"safe_sleep": 0.8, "smoking_cessation": 0.5, "preterm_prevention": 0.6,
                    "preconception_care": 0.5, "risk_appropriate_care": 0.9,
                    "social_determinants": 0.4},
        "starting_coverage": 0.0, "base_rate": 0.10, "stall_probability": 0.10,
        "decay_rate": 0.05, "sessions_per_year": 2, "session_boost": 0.5,
    },
}

#: Observed national IMR by race of mother, 2013 and 2017, per 1,000 (one decimal). Source:
#: America's Children: Key National Indicators of Well-Being, Table HEALTH2 (NCHS linked files),
#: http://childstats.gov/americaschildren/tables/health2.asp, as compiled in
#: ../shared/data/observed/national_linked_stats.csv (rows named). NH API is left out: its 2017
#: row is single-race Asian and NHOPI separately, not the 2013 bridged group.
NATIONAL_RACE = {
    "nh_white": (5.1, 4.7, "national_linked_stats.csv rows 7, 11"),
    "nh_black": (11.1, 11.0, "national_linked_stats.csv rows 12, 16"),
    "hispanic": (5.0, 5.1, "national_linked_stats.csv rows 28, 32"),
    "nh_aian": (7.7, 9.2, "national_linked_stats.csv rows 17, 21 (2017: single race)"),
}
HEALTH2 = ("America's Children, Table HEALTH2, http://childstats.gov/americaschildren/tables/"
           "health2.asp (../shared/data/observed/")

COLUMNS = ["state", "race", "observed_2013", "observed_2017", "observed_change",
           "modelled_change", "modelled_lo", "modelled_hi", "within"]
TRENDS = ("origin2012", "packaged")


def replay_scenario():
    """The validated replay scenario (:data:`REPLAY_SCENARIO`)."""
    from imsim.config.scenario import parse_scenario

    return parse_scenario(dict(REPLAY_SCENARIO), file="replay_2013_2017")


def origin_trend(cal, origin: int = 2012):
    """``cal`` with its trend model refitted on data through ``origin`` (a new object)."""
    from imsim.calibration.series import state_series
    from imsim.calibration.trend import fit_trend_model, national_series

    series = state_series()
    nat = national_series()
    seed = getattr(cal.trend, "seed", 20240601) if cal.trend is not None else 20240601
    model = fit_trend_model(series[series["year"] <= origin], nat[nat["year"] <= origin],
                            seed=seed)
    return dataclasses.replace(cal, trend=model)


@dataclasses.dataclass
class ReplayResult:
    """``table`` (replay.csv), ``parts`` (replay_parts.csv), ``summary`` (dict), ``trend``."""

    table: pd.DataFrame
    parts: pd.DataFrame
    summary: dict
    trend: str


def run_replay(replicates: int = 200, seed: int | None = None, trend: str = "origin2012",
               calibration=None, scenario=None) -> ReplayResult:
    """Replay 2013-2017 and compare the modelled with the observed change (module docstring).

    Parameters
    ----------
    replicates : int
        Uncertainty draws (0: the point only; then no interval and ``within`` is empty).
    seed : int, optional
        Default: the scenario's.
    trend : {"origin2012", "packaged"}
        The trend model (module docstring).
    calibration : optional
        As :func:`imsim.analysis.runner.get_calibration` (default: the default fit).
    scenario : Scenario, optional
        Default: :func:`replay_scenario`.

    Returns
    -------
    ReplayResult
    """
    from imsim.analysis.runner import get_calibration
    from imsim.analysis.target import CoverageProblem, births_of, deaths_of
    from imsim.birth.strategies import Levers
    from imsim.calibration.observations import load_observations
    from imsim.calibration.series import state_series
    from imsim.core.errors import InputError
    from imsim.core.streams import generator

    if trend not in TRENDS:
        raise InputError(f"--trend {trend} is unknown; allowed: {', '.join(TRENDS)}")
    sc = replay_scenario() if scenario is None else scenario
    seed = sc.seed if seed is None else int(seed)
    cal = get_calibration(calibration)
    if cal is None:
        raise InputError("the replay needs a calibration with a trend model, not 'direct'")
    if trend == "origin2012":
        cal = origin_trend(cal, 2012)
    pb = CoverageProblem(sc, sc.state_list, 2017, [2013, 2017], cal, seed, replicates,
                  years=(2013, 2017))
    bl = pb.inputs.baseline
    # Medicaid expansion from each state's own year; the ABM's social-determinants teams dropped.
    exp_year = bl.expansion_year[pb.cells.s_idx]
    cov = {k: pb.levers.coverage[k].copy() for k in STRATEGIES}
    cov["social_determinants"] = (pb.cells.year >= exp_year).astype(float)
    idx = dict(pb.levers.option_index)
    opts = dict(pb.levers.options)
    idx["social_determinants"] = np.zeros(pb.n, dtype=np.int64)
    opts["social_determinants"] = [{"policy": "medicaid_expansion"}]
    attrs = dataclasses.replace(pb.levers.cells,
                                medicaid_expanded=np.zeros(pb.n, dtype=bool))
    pb.levers = Levers(cov, idx, opts, attrs, [])
    draws = list(range(len(pb.plan)))
    out_b, out_s = pb.outcomes([cov], draws, exposures=False)
    ob, os_ = out_b[0], out_s[0]                      # [D, n, K]
    B = births_of(os_)                                   # [D, n] (births are the same in both arms)
    Ds, Db = deaths_of(os_), deaths_of(ob)
    yr = pb.cells.year

    def group(state, race):
        m = np.ones(pb.n, bool)
        if state != ALL:
            m &= pb.state == state
        if race != ALL:
            m &= pb.race == race
        return m

    # Observed.
    ser = state_series().set_index(["state", "year"])
    obs = load_observations().imr_year
    nat = obs[(obs.state == ALL) & (obs.race == ALL)].set_index("year")
    rows, parts = [], []
    groups = [(s, ALL) for s in sc.state_list] + [(ALL, ALL)] + [(ALL, r) for r in RACES]
    n_d = len(draws)
    noise = {}
    for d in draws[1:]:
        noise[d] = generator(seed, "replay", d)
    for state, race in groups:
        m = group(state, race)
        if state != ALL:
            o13 = float(ser.loc[(state, 2013), "observed"])
            o17 = float(ser.loc[(state, 2017), "observed"])
            src = "state_series"
        elif race == ALL:
            o13, o17 = float(nat.loc[2013, "value"]), float(nat.loc[2017, "value"])
            src = "NVSR"
        elif race in NATIONAL_RACE:
            o13, o17, src = NATIONAL_RACE[race]
        else:
            o13 = o17 = np.nan
            src = "not observed comparably (2017 single-race groups)"
        rates = {}
        for y in (2013, 2017):
            my = m & (yr == y)
            b = B[:, my].sum(-1)
            rates[y] = (1000 * Ds[:, my].sum(-1) / b, 1000 * Db[:, my].sum(-1) / b, b)
        change = rates[2017][0] - rates[2013][0]
        base_change = rates[2017][1] - rates[2013][1]
        lo = hi = np.nan
        if n_d > 1:
            sims = []
            for d in draws[1:]:
                g = noise[d]
                r = []
                for y in (2013, 2017):
                    lam = rates[y][0][d] * rates[y][2][d] / 1000.0
                    r.append(1000.0 * g.poisson(lam) / rates[y][2][d])
                sims.append(r[1] - r[0])
            lo, hi = np.percentile(sims, [2.5, 97.5])
        oc = o17 - o13
        rows.append({"state": state, "race": race, "observed_2013": o13, "observed_2017": o17,
                     "observed_change": oc, "modelled_change": float(change[0]),
                     "modelled_lo": lo, "modelled_hi": hi,
                     "within": (bool(lo <= oc <= hi) if np.isfinite(oc) and np.isfinite(lo)
                                else None)})
        parts.append({"state": state, "race": race, "modelled_2013": float(rates[2013][0][0]),
                      "modelled_2017": float(rates[2017][0][0]),
                      "trend_change": float(base_change[0]),
                      "levers_change": float(change[0] - base_change[0]),
                      "births_2017": float(rates[2017][2][0]), "observed_source": src})
    table = pd.DataFrame(rows, columns=COLUMNS)
    parts = pd.DataFrame(parts)
    st = table[table.state != ALL]
    ok = st.within.dropna().astype(bool)
    err = st.modelled_change - st.observed_change
    corr = float(np.corrcoef(st.modelled_change, st.observed_change)[0, 1])
    summary = {
        "trend": trend, "draws": n_d - 1, "seed": seed,
        "states_within": int(ok.sum()), "states": int(len(st)),
        "state_change_mae": float(np.abs(err).mean()),
        "state_change_mae_no_change": float(np.abs(st.observed_change).mean()),
        "state_change_corr": corr,
        "national_observed_change": float(table[(table.state == ALL) & (table.race == ALL)]
                                          .observed_change.iloc[0]),
        "national_modelled_change": float(table[(table.state == ALL) & (table.race == ALL)]
                                          .modelled_change.iloc[0]),
        "national_levers_change": float(parts[(parts.state == ALL) & (parts.race == ALL)]
                                        .levers_change.iloc[0]),
    }
    return ReplayResult(table, parts, summary, trend)
