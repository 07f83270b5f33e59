"""Fixed vocabularies of the model: jurisdictions, race/Hispanic-origin groups, strategies, bands.

These ids are part of the documented interface (scenario files, output columns); never rename them.
Every list of allowed values (strategy options, engines, sweep methods, distributions) is defined
here once; validation, the model and the analyses import it rather than repeat the strings.
"""
from __future__ import annotations

#: 50 states + DC, USPS codes, in a fixed order used for array indices.
STATES: tuple[str, ...] = (
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN",
    "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH",
    "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT",
    "VT", "VA", "WA", "WV", "WI", "WY",
)
STATE_NAMES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
}
ALL = "ALL"

#: Race/Hispanic origin of the mother.
RACES: tuple[str, ...] = ("nh_white", "nh_black", "hispanic", "nh_api", "nh_aian")
RACE_LABELS: dict[str, str] = {
    "nh_white": "non-Hispanic white",
    "nh_black": "non-Hispanic black",
    "hispanic": "Hispanic",
    "nh_api": "non-Hispanic Asian or Pacific Islander",
    "nh_aian": "non-Hispanic American Indian or Alaska Native",
}

#: The six strategy areas of the 2013-2017 Infant Mortality CoIIN.
STRATEGIES: tuple[str, ...] = (
    "safe_sleep",
    "smoking_cessation",
    "preterm_prevention",
    "preconception_care",
    "risk_appropriate_care",
    "social_determinants",
)

#: Gestational-age bands, weeks.
GA_BANDS: tuple[str, ...] = ("<28", "28-31", "32-33", "34-36", "37-38", "39+")
#: Causes of death (competing).
CAUSES: tuple[str, ...] = ("neonatal", "suid", "other_postneonatal")
#: Per-birth exposures.
EXPOSURES: tuple[str, ...] = (
    "low_income", "smoking", "prior_preterm", "short_ipi", "elective_early_term", "unsafe_sleep",
)

#: Years with births data (births.csv: 2013-2017 NVSR totals, 2018-2023 CDC WONDER totals; race split
#: estimated); later years are projected (births_trend.csv). Baseline period for calibration.
DATA_YEARS: tuple[int, ...] = tuple(range(2013, 2024))
BASELINE_PERIOD: tuple[int, int] = (2013, 2015)
FIRST_YEAR = 2013
MAX_YEARS_AHEAD = 30  # relative to the current calendar year

# -- options of the strategies (scenario keys) ---------------------------------------------------
#: ``smoking_cessation.program``; the first is the default.
SMOKING_PROGRAMS: tuple[str, ...] = ("counselling", "incentives", "feedback", "education")
#: ``preterm_prevention.components`` (17-OHPC is ``ohpc``).
PRETERM_COMPONENTS: tuple[str, ...] = ("hard_stop", "vaginal_progesterone", "ohpc")
#: ``preterm_prevention.components`` when the key is omitted.
PRETERM_DEFAULT_COMPONENTS: tuple[str, ...] = ("hard_stop", "vaginal_progesterone")
#: ``preterm_prevention.ohpc_effect``: no effect (base case, after PROLONG and the 2023 FDA
#: withdrawal) or the Meis trial effect (sensitivity); the first is the default.
OHPC_EFFECTS: tuple[str, ...] = ("none", "meis")
#: ``social_determinants.policy``; the first is the default.
SD_POLICIES: tuple[str, ...] = ("medicaid_expansion", "income_support")

# -- engines, analyses and distributions ----------------------------------------------------------
#: Engines over the one model: exact expected counts, or a microsimulation of every birth.
ENGINES: tuple[str, ...] = ("expected", "microsim")
#: Methods of a sensitivity sweep (``method:`` of a sweep file).
METHODS: tuple[str, ...] = ("sobol", "morris", "psa")
#: Distributions of the evidence library (``dist`` column of ``evidence.csv``).
DISTRIBUTIONS: tuple[str, ...] = ("lognormal", "normal", "uniform", "triangular", "fixed")
#: Distributions a sweep file may give a parameter, each with the keys it takes.
SWEEP_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high"),
    "triangular": ("low", "mode", "high"),
    "normal": ("mean", "sd"),
    "lognormal": ("median", "sdlog"),
}
#: Names accepted for them in sweep files (SciPy's short names included) -> the distribution.
DISTS: dict[str, str] = {
    "unif": "uniform", "uniform": "uniform", "triang": "triangular", "triangular": "triangular",
    "norm": "normal", "normal": "normal", "lognorm": "lognormal", "lognormal": "lognormal",
}
#: Distributions without bounds (mapped to their 95% range where a grid needs bounds).
UNBOUNDED_DISTRIBUTIONS: tuple[str, ...] = ("normal", "lognormal")
#: Scales of an evidence effect: a ratio (> 0) or a probability (0..1).
EFFECT_SCALES: tuple[str, ...] = ("ratio", "probability")
