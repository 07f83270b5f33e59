"""Tests of the CDC WONDER export importer (imsim.inputs.wonder)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from imsim.core.errors import InputError
from imsim.inputs.wonder import (TARGET_COLUMNS, import_wonder, parse_wonder, validate_targets,
                          write_targets)

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO.parent / "shared" / "data" / "external"

FOOTER = (
    '"---"\n"Dataset: {dataset}"\n"Query Parameters:"\n"Title: t"\n{params}"Group By: {group}"\n'
    '"Show Totals: {totals}"\n"Show Zero Values: False"\n"Show Suppressed: {supp}"\n'
    '"Calculate Rates Per: 1,000"\n"---"\n"Help: See http://wonder.cdc.gov/wonder/help/lbd.html."\n'
    '"---"\nCaveats:\n"1. \'Unreliable\' appears for rates when there are fewer than 20 deaths in the"\n'
    '"numerator."'
)
LINKED = "Linked Birth / Infant Death Records, 2007-2017"


def export(tmp_path, name, header, rows, *, dataset=LINKED, params='"Year of Death: 2013; 2014; 2015"\n',
           group="State", totals="True", supp="False", newline="\n", bom=False):
    """Write a small WONDER-style export; header/rows are lists of already-quoted fields."""
    lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
    text = "\n".join(lines) + "\n" + FOOTER.format(dataset=dataset, params=params, group=group,
                                                  totals=totals, supp=supp)
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.replace("\n", newline).encode())
    return path


STATE_HDR = ['"Notes"', '"State"', '"State Code"', "Deaths", "Births", "Death Rate"]


def state_rows():
    return [["", '"Alabama"', '"01"', "500", "58167", "8.60"],
            ["", '"Alaska"', '"02"', "Suppressed", "11446", "Suppressed"],
            ["", '"Vermont"', '"50"', "16", "6000", "2.67 (Unreliable)"],
            ['"Total"', "", "", "23446", "3932181", "5.96"]]


def q(*values):
    return [f'"{v}"' for v in values]


# ------------------------------------------------------------------ fixtures written here
@pytest.mark.parametrize("newline,bom", [("\n", False), ("\r\n", False), ("\r\n", True), ("\n", True)])
def test_state_fixture_markers_line_endings_bom(tmp_path, newline, bom):
    p = export(tmp_path, "s.txt", STATE_HDR, state_rows(), group="State", newline=newline, bom=bom)
    t = parse_wonder(p)
    assert t.group_by == ["State"] and t.measures == ["Deaths", "Births", "Death Rate"]
    assert list(t.data["State Code"]) == ["01", "02", "50"]          # leading zeros kept
    assert len(t.totals) == 1 and t.totals["Deaths"].iloc[0] == 23446
    assert t.data["Deaths marker"].tolist() == ["", "suppressed", ""]
    assert t.data["Death Rate marker"].tolist() == ["", "suppressed", "unreliable"]
    assert t.data["Death Rate"].iloc[2] == pytest.approx(2.67)
    assert t.meta["dataset"] == LINKED and t.meta["years"] == [2013, 2014, 2015]
    assert t.meta["group_by"] == ["State"] and t.meta["show_suppressed"] is False
    assert t.meta["rates_per"] == 1000 and t.meta["show_totals"] == "True"
    assert t.meta["caveats"][0].endswith("in the numerator.")          # wrapped caveat joined

    df = import_wonder(p)
    assert list(df.columns[:9]) == list(TARGET_COLUMNS)
    assert len(df) == 52                                                # 51 states + national
    by = df.set_index("state")
    assert (df.year_start == 2013).all() and (df.year_end == 2015).all()
    assert by.loc["AL", "flag"] == "ok" and by.loc["AL", "rate"] == pytest.approx(500 / 58167 * 1000)
    assert by.loc["AK", "flag"] == "suppressed" and pd.isna(by.loc["AK", "deaths"])
    assert by.loc["AK", "births"] == 11446
    assert by.loc["VT", "flag"] == "unreliable"
    assert by.loc["CA", "flag"] == "suppressed" and pd.isna(by.loc["CA", "births"])  # absent row
    assert by.loc["ALL", "deaths"] == 23446 and by.loc["ALL", "flag"] == "ok"


def test_missing_rows_with_show_suppressed_true_are_missing_not_suppressed(tmp_path):
    p = export(tmp_path, "s.txt", STATE_HDR, state_rows()[:1], group="State", supp="True")
    by = import_wonder(p).set_index("state")
    assert by.loc["AK", "flag"] == "missing" and by.loc["AL", "flag"] == "ok"


def test_bridged_race_by_hispanic_origin_maps_and_drops_unknown(tmp_path):
    hdr = ['"Notes"', '"State"', '"State Code"', '"Mother\'s Bridged Race"', '"Mother\'s Bridged Race Code"',
           '"Mother\'s Hispanic Origin"', '"Mother\'s Hispanic Origin Code"', "Deaths", "Births", "Death Rate"]
    al = ['', '"Alabama"', '"01"']
    rows = [al + q("White", "2106-3", "Hispanic or Latino", "2135-2") + ["30", "6000", "5.00"],
            al + q("White", "2106-3", "Not Hispanic or Latino", "2186-2") + ["300", "40000", "7.50"],
            al + q("White", "2106-3", "Unknown or Not Stated", "9") + ["Suppressed", "100", "Suppressed"],
            al + q("Black or African American", "2054-5", "Hispanic or Latino", "2135-2") + ["5", "500", "10.00 (Unreliable)"],
            al + q("Black or African American", "2054-5", "Not Hispanic or Latino", "2186-2") + ["250", "19000", "13.16"],
            ['"Total"', '"Alabama"', '"01"', "", "", "", "", "590", "65600", "8.99"],
            ['"Total"', "", "", "", "", "", "", "600", "70000", "8.57"]]
    p = export(tmp_path, "r.txt", hdr, rows, group="State; Mother's Bridged Race; Mother's Hispanic Origin")
    df = import_wonder(p)
    assert any("dropped 1 row(s) with unknown" in w for w in df.attrs["warnings"])
    al = df[df.state == "AL"].set_index("race")
    assert al.loc["hispanic", "deaths"] == 35 and al.loc["hispanic", "births"] == 6500
    assert al.loc["hispanic", "flag"] == "ok"                 # 35 deaths: reliable once pooled
    assert al.loc["nh_white", "deaths"] == 300 and al.loc["nh_black", "births"] == 19000
    assert al.loc["ALL", "deaths"] == 590                     # state subtotal line
    assert set(df.race) == {"hispanic", "nh_white", "nh_black", "ALL"}
    assert df.set_index(["state", "race"]).loc[("ALL", "ALL"), "births"] == 70000
    ak = df[df.state == "AK"].set_index("race")
    assert (ak.loc[["hispanic", "nh_white", "nh_black"], "flag"] == "suppressed").all()


def test_natality_not_available_and_not_applicable(tmp_path):
    hdr = ['"Notes"', '"Mother\'s Hispanic Origin"', '"Mother\'s Hispanic Origin Code"',
           '"Year"', '"Year Code"', "Births", "Female Population", "Fertility Rate"]
    rows = [[""] + q("Hispanic", "H", "2014", "2014") + ["900", "Not Applicable", "Not Applicable"],
            [""] + q("Non-Hispanic White", "NHW", "2014", "2014") + ["2000", "40000", "50.00"],
            [""] + q("Origin unknown or not stated", "NS", "2014", "2014") + ["15", "Not Available", "Not Available"]]
    p = export(tmp_path, "n.txt", hdr, rows, dataset="Natality, 2007-2015", params='"Year: 2014"\n',
               group="Mother's Hispanic Origin; Year", totals="False")
    t = parse_wonder(p)
    assert t.data["Female Population marker"].tolist() == ["not_applicable", "", "not_available"]
    df = import_wonder(p).set_index("race")
    assert (df.measure == "births").all() and df["rate"].isna().all() and df["deaths"].isna().all()
    assert df.loc["hispanic", "births"] == 900 and df.loc["nh_white", "births"] == 2000
    assert df.loc["hispanic", "year_start"] == 2014 == df.loc["hispanic", "year_end"]


def test_county_labels_aggregate_to_state(tmp_path):
    hdr = ['"Notes"', '"County"', '"County Code"', '"Year of Death"', '"Year of Death Code"',
           "Deaths", "Births", "Death Rate"]
    rows = [[""] + q("Jefferson County, AL", "01073", "2014", "2014") + ["93", "8925", "10.42"],
            [""] + q("Unidentified Counties, AL", "01999", "2014", "2014") + ["400", "50000", "8.00"],
            [""] + q("Marin County, CA", "06041", "2014", "2014") + ["Suppressed", "2401", "Suppressed"],
            [""] + q("Pinal County, AZ", "04021", "2014", "2014") + ["Missing County"] * 3,
            [""] + q("Unidentified Counties, AZ", "04999", "2014", "2014") + ["100", "20000", "5.00"],
            [""] + q("Unidentified Counties, CA", "06999", "2014", "2014") + ["900", "200000", "4.50"]]
    p = export(tmp_path, "c.txt", hdr, rows, params="", group="County; Year of Death", totals="Disabled",
               supp="True")
    by = import_wonder(p).set_index("state")
    assert by.loc["AL", "deaths"] == 493 and by.loc["AL", "births"] == 58925
    assert by.loc["AZ", "deaths"] == 100 and by.loc["AZ", "flag"] == "ok"   # Missing County = 0
    assert by.loc["CA", "flag"] == "suppressed" and by.loc["CA", "births"] == 202401
    assert (by.year_start == 2014).all()


# ------------------------------------------------------------------ refusals
def _refused(path, *words, **kw):
    with pytest.raises(InputError) as info:
        import_wonder(path, **kw)
    msg = str(info.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_refuses_multiple_cause_of_death(tmp_path):
    hdr = ['"Notes"', '"Year"', '"Year Code"', "Deaths", "Population", "Crude Rate"]
    p = export(tmp_path, "m.txt", hdr, [[""] + q("2013", "2013") + ["23440", "3900000", "Unreliable"]],
               dataset="Multiple Cause of Death, 1999-2020", group="Year")
    _refused(p, "not a linked birth/infant death or natality export", "footer line")


def test_refuses_no_deaths_no_births(tmp_path):
    hdr = ['"Notes"', '"State"', '"State Code"', "Death Rate"]
    p = export(tmp_path, "d.txt", hdr, [["", '"Alabama"', '"01"', "8.60"]], group="State")
    _refused(p, "no Deaths and no Births column")


@pytest.mark.parametrize("label,value", [("Census Region", "Census Region 1: Northeast"),
                                         ("County", "Jefferson County")])
def test_refuses_unusable_grouping(tmp_path, label, value):
    hdr = ['"Notes"', f'"{label}"', f'"{label} Code"', "Deaths", "Births", "Death Rate"]
    p = export(tmp_path, "g.txt", hdr, [["", f'"{value}"', '"X1"', "50", "9000", "5.56"]], group=label)
    _refused(p, label)


@pytest.mark.parametrize("content,words", [
    ("", "empty file"), ("\r\n\r\n", "empty file"),
    ('"---"\n"Dataset: Natality, 2007-2015"\n', "no table"),
    ("just some text\n", "no table"),
])
def test_refuses_empty_or_no_table(tmp_path, content, words):
    p = tmp_path / "e.txt"
    p.write_text(content)
    _refused(p, words)


def test_refuses_header_mismatch(tmp_path):
    rows = state_rows()
    rows[1] = rows[1][:-1]
    p = export(tmp_path, "h.txt", STATE_HDR, rows, group="State")
    _refused(p, "header mismatch", "row 3")
    p2 = export(tmp_path, "h2.txt", STATE_HDR, state_rows(), group="County")
    _refused(p2, "header mismatch", "Group By")


@pytest.mark.parametrize("cell,words", [("n/a", "is not a number"), ("-5", "negative"),
                                        ("12 (Suppressed)", "is not a number")])
def test_refuses_bad_counts(tmp_path, cell, words):
    rows = state_rows()
    rows[0][3] = cell
    p = export(tmp_path, "b.txt", STATE_HDR, rows, group="State")
    _refused(p, words, "row 2", "Deaths")


def test_refuses_duplicate_rows_and_race_without_hispanic(tmp_path):
    rows = state_rows()
    rows.insert(1, list(rows[0]))
    _refused(export(tmp_path, "dup.txt", STATE_HDR, rows, group="State"), "duplicate row", "row 3")
    hdr = STATE_HDR[:3] + ['"Race"', '"Race Code"'] + STATE_HDR[3:]
    p = export(tmp_path, "race.txt", hdr, [["", '"Alabama"', '"01"', '"White"', '"2106-3"', "361", "43885", "8.23"]],
               group="State; Race")
    _refused(p, "without Hispanic origin", "bridged_race_as_non_hispanic")
    df = import_wonder(p, bridged_race_as_non_hispanic=True)
    assert df.set_index("state").loc["AL", "race"] == "nh_white" and df.attrs["warnings"]


# ------------------------------------------------------------------ targets CSV
def test_round_trip_write_validate(tmp_path):
    src = export(tmp_path, "s.txt", STATE_HDR, state_rows(), group="State")
    df = import_wonder(src)
    out = write_targets(df, tmp_path / "targets.csv")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    back = validate_targets(out)
    assert len(back) == len(df)
    pd.testing.assert_series_equal(back["deaths"], df["deaths"])
    pd.testing.assert_series_equal(back["flag"], df["flag"])
    assert back["rate"].round(4).equals(df["rate"].round(4))


@pytest.mark.parametrize("col,value,words", [
    ("state", "Alabama", "did you mean 'AL'"), ("state", "TXX", "unknown state"),
    ("race", "nh_whit", "did you mean 'nh_white'"), ("deaths", "-3", "negative"),
    ("rate", "1200", "out of range"), ("year_start", "2020", "after year_end"),
    ("flag", "fine", "unknown flag"),
])
def test_validate_targets_refuses(tmp_path, col, value, words):
    good = ("state,race,year_start,year_end,measure,deaths,births,rate,flag\n"
            "AL,nh_black,2013,2015,imr,800,58000,13.79,ok\nALL,ALL,2013,2015,imr,,,,suppressed\n")
    p = tmp_path / "t.csv"
    p.write_text(good)
    assert len(validate_targets(p)) == 2
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    df.loc[0, col] = value
    df.to_csv(p, index=False)
    with pytest.raises(InputError) as info:
        validate_targets(p)
    assert str(p) in str(info.value) and "row 2" in str(info.value) and words in str(info.value)


def test_write_targets_writes_nothing_on_error(tmp_path):
    df = pd.DataFrame([{"state": "XX", "race": "ALL", "year_start": 2013, "year_end": 2013,
                        "measure": "imr", "deaths": 1, "births": 100, "rate": 10.0, "flag": "ok"}])
    with pytest.raises(InputError):
        write_targets(df, tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ real exports
def real(name):
    p = EXTERNAL / name
    if not p.exists():
        pytest.skip(f"real WONDER export not available: {p}")
    return p


def test_real_2016_states_match_total():
    p = real("dysart__2016_All_Infant_Death_By_State.txt")
    df = import_wonder(p)
    states = df[df.state != "ALL"]
    total = parse_wonder(p).totals.iloc[0]
    assert len(states) == 51 and (states.flag == "ok").all()
    assert (df.year_start == 2016).all() and (df.year_end == 2016).all()
    assert states.births.sum() == total["Births"] == 3945875
    assert abs(states.deaths.sum() - total["Deaths"]) <= 3     # weighted deaths: rounding only
    assert df.set_index("state").loc["ALL", "deaths"] == 23157


def test_real_2015_file_is_really_2016_and_duplicate_is_refused():
    p15, p16 = real("dysart__2015_All_Infant_Death_By_State.txt"), real("dysart__2016_All_Infant_Death_By_State.txt")
    assert (import_wonder(p15).year_start == 2016).all()
    with pytest.raises(InputError, match="duplicates the targets"):
        import_wonder([p15, p16])


def test_real_2007_state_by_race():
    p = real("azmelekin__data07_lbd_state_race_2007.txt")
    _refused(p, "without Hispanic origin")
    df = import_wonder(p, bridged_race_as_non_hispanic=True)
    assert len(df) == 51 * 4 and set(df.race) == {"nh_white", "nh_black", "nh_api", "nh_aian"}
    assert (df.flag == "unreliable").sum() == 14
    assert (df.flag == "suppressed").sum() == 51 * 4 - 127
    az = df[(df.state == "AZ") & (df.race == "nh_api")].iloc[0]
    assert az.flag == "unreliable" and az.deaths == 16 and az.births == 3482
    al = df[(df.state == "AL") & (df.race == "nh_api")].iloc[0]
    assert al.flag == "suppressed" and pd.isna(al.deaths) and math.isnan(al.rate)


def test_real_natality_race_maps_to_race_ids():
    df = import_wonder(real("mchtrends__natality_race_11_15.txt")).set_index("race")
    assert set(df.index) == {"ALL", "nh_white", "nh_black", "hispanic", "nh_api", "nh_aian"}
    assert (df.measure == "births").all() and (df.year_start == 2011).all() and (df.year_end == 2015).all()
    assert df.loc["hispanic", "births"] == 34400 + 51465 + 229195 + 4236859
    assert df.loc["nh_black", "births"] == 2916581 and df.loc["ALL", "births"] == 19748265
    assert any("dropped 4 row(s)" in w for w in df.attrs["warnings"])


def test_real_mcd_refused():
    _refused(real("riddell__InfantMortality_by_COD.txt"), "Multiple Cause of Death",
             "not a linked birth/infant death or natality export")
    _refused(real("mchtrends__infant_mortality_census_11_17.txt"), "not a linked birth")


def test_real_county_year_reconstructs_states():
    df = import_wonder(real("dysart__Linked_Birth_Infant_Death_Records_2007_2017_County_Year.txt"))
    y15 = df[df.year_start == 2015].set_index("state")
    assert len(df) == 51 * 11
    assert set(y15.index[y15.flag == "suppressed"]) == {"CA", "CO", "NH", "NY"}
    assert y15.births.notna().all()
    states16 = import_wonder(real("dysart__2016_All_Infant_Death_By_State.txt")).set_index("state")
    y16 = df[df.year_start == 2016].set_index("state")
    ok = y16.index[y16.flag == "ok"]
    assert (y16.loc[ok, "births"] == states16.loc[ok, "births"]).all()
