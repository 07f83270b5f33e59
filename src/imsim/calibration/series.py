"""The single-year state IMR series 2007-2017 the back-test forecasts from and is scored on.

Two sources, one schema (``state, year, deaths, births, observed, observed_lo, observed_hi,
source``; IMR per 1,000 live births, ``observed_lo/hi`` the exact Poisson 95% interval of the
observed rate):

* 2007-2012: the packaged derived table ``state_imr_series.csv`` (next to the other packaged
  tables), built by ``python -m imsim.calibration.series [SHARED_DATA_DIR]`` from the CDC WONDER
  Linked Birth/Infant Death exports ``external/dysart__20NN_All_Infant_Death_By_State.txt`` of
  ``../shared/data`` (deaths and births by state, period files keyed by year of death; parsed with
  :func:`imsim.inputs.wonder.parse_wonder`). The year of each file is read from its footer, not its
  name: the file named 2015 is a 2016 query and is not used. Only years before 2013 are kept;
  the table is not part of the calibration's data hash (the calibration never reads it).
* 2013-2017: the ``imr_year`` rows of the observations (packaged ``targets.csv``, or a user's
  targets file), the same rows the calibration and the old back-test used.

There is no race dimension: the single-year state files have none, and the state x race targets
are 2013-2015 pooled only, so the back-test is by state (all races).
"""
from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from imsim.core.constants import ALL, STATES

SERIES_FILE = "state_imr_series.csv"
SERIES_COLUMNS = ("state", "year", "deaths", "births", "observed", "observed_lo", "observed_hi",
                  "source")
FIRST_TARGET_YEAR = 2013          # the targets' imr_year rows start here
_PATTERN = "dysart__*_All_Infant_Death_By_State.txt"
_SOURCE = ("CDC WONDER Linked Birth/Infant Death export, deaths and births by state, year of "
           "death {year} (GitHub dysartk/BMIN503_Final_Project; shared external/{file})")


def derive_series(shared_dir: str | Path) -> pd.DataFrame:
    """Derive the 2007-2012 state series from the shared CDC WONDER exports.

    Parameters
    ----------
    shared_dir : str or path
        The shared data folder (``../shared/data``); its ``external/`` holds the exports.

    Returns
    -------
    pandas.DataFrame
        :data:`SERIES_COLUMNS`, one row per state and year before :data:`FIRST_TARGET_YEAR`.
    """
    from scipy.stats import chi2

    from imsim.inputs.wonder import STATE_FIPS, parse_wonder

    fips_state = {v: k for k, v in STATE_FIPS.items()}
    rows, seen = [], {}
    for path in sorted(Path(shared_dir, "external").glob(_PATTERN)):
        t = parse_wonder(path)
        years = t.meta.get("years") or []
        if len(years) != 1:
            raise ValueError(f"{path.name}: expected one year in the footer, found {years}")
        year = int(years[0])
        if year >= FIRST_TARGET_YEAR:
            continue
        if year in seen:
            raise ValueError(f"{path.name}: year {year} already read from {seen[year]}")
        seen[year] = path.name
        for d in t.data.to_dict("records"):
            s = fips_state.get(str(d["State Code"]).zfill(2))
            if s is None or np.isnan(d["Deaths"]) or np.isnan(d["Births"]):
                continue
            rows.append({"state": s, "year": year, "deaths": int(d["Deaths"]),
                         "births": int(d["Births"]),
                         "source": _SOURCE.format(year=year, file=path.name)})
    df = pd.DataFrame(rows)
    d, b = df["deaths"].to_numpy(float), df["births"].to_numpy(float)
    df["observed"] = 1000.0 * d / b
    # exact (Garwood) 95% Poisson interval of the count, as the targets' intervals
    df["observed_lo"] = 1000.0 * np.where(d > 0, chi2.ppf(0.025, 2 * d) / 2, 0.0) / b
    df["observed_hi"] = 1000.0 * chi2.ppf(0.975, 2 * (d + 1)) / 2 / b
    return df[list(SERIES_COLUMNS)].sort_values(["year", "state"]).reset_index(drop=True)


def packaged_series() -> pd.DataFrame:
    """Return the packaged 2007-2012 table (:data:`SERIES_COLUMNS`), or an empty one."""
    f = resources.files("imsim.inputs.data").joinpath(SERIES_FILE)
    if not f.is_file():
        return pd.DataFrame(columns=list(SERIES_COLUMNS))
    with f.open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def state_series(obs=None) -> pd.DataFrame:
    """Return the state IMR series from 2007 (:data:`SERIES_COLUMNS`), states only.

    Parameters
    ----------
    obs : Observations, optional
        Its ``imr_year`` rows give 2013-2017 and every single year a user's targets add (they
        replace packaged rows of the same state-year) (default: the packaged observations).

    Returns
    -------
    pandas.DataFrame
        One row per state and year, sorted by year and state.
    """
    if obs is None:
        from imsim.calibration.observations import load_observations

        obs = load_observations()
    yr = obs.imr_year[(obs.imr_year["state"] != ALL) & obs.imr_year["value"].notna()]
    recent = pd.DataFrame({"state": yr["state"], "year": yr["year"].astype(int),
                           "deaths": yr["deaths"], "births": yr["births"],
                           "observed": yr["value"], "observed_lo": yr["lo"],
                           "observed_hi": yr["hi"], "source": yr["source"]})
    old = packaged_series()
    old = old[old["year"] < FIRST_TARGET_YEAR]
    # A user's single year of a state replaces the packaged row of that state-year.
    given = set(zip(recent["state"], recent["year"]))
    old = old[[(s, int(y)) not in given for s, y in zip(old["state"], old["year"])]]
    out = pd.concat([old, recent], ignore_index=True)
    out = out[out["state"].isin(STATES)]
    return out.sort_values(["year", "state"]).reset_index(drop=True)


def main(argv=None) -> int:
    """Write the packaged table: ``python -m imsim.calibration.series [SHARED_DATA_DIR]``."""
    argv = sys.argv[1:] if argv is None else argv
    shared = Path(argv[0]) if argv else Path(__file__).parents[4] / "shared" / "data"
    df = derive_series(shared)
    dst = Path(__file__).parents[1] / "inputs" / "data" / SERIES_FILE
    from imsim.core.folders import atomic_file

    with atomic_file(dst) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    print(f"wrote {dst} ({len(df)} rows, years {df.year.min()}-{df.year.max()})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
