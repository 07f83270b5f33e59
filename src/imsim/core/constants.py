"""Fixed vocabularies of the model: jurisdictions, race/Hispanic-origin groups, strategies, bands.

These ids are part of the documented interface (scenario files, output columns); never rename them.
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

#: Years with observed data; baseline period for calibration.
DATA_YEARS: tuple[int, ...] = (2013, 2014, 2015, 2016, 2017)
BASELINE_PERIOD: tuple[int, int] = (2013, 2015)
FIRST_YEAR = 2013
MAX_YEARS_AHEAD = 30  # relative to the current calendar year
