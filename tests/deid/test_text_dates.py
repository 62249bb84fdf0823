"""Dates written in free text are shifted by the patient's offset or removed; look-alikes are kept.

The generator writes a date in a random spelling (language, abbreviation, case, separators,
padding, order, precision) into random technical text at a random place, and reads the output back
with its own month tables: the date must come back shifted by exactly the offset (at the precision
written), or be the marker, never as it was.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import date, timedelta
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lake
from lake.audit import lake_texts
from lake.deid.clean import TextCleaner
from lake.deid.engine import Deidentifier
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, LakeOption, Profile, parse_options
from lake.deid.text_dates import (
    MARKER,
    collapse_age,
    collapse_ages_in_text,
    shift_dates_in_text,
)
from lake.ingest import ingest
from lake.keys import LakeKey
from lake.testing.synthetic import PatientSpec, write_study
from tests.deid.helpers import base

KEY = LakeKey(bytes(range(32)))

# The test's own month tables (written out again, so that a typo in the module's shows up here).
FULL = {
    "en": "january february march april may june july august september october november december",
    "de": "januar februar märz april mai juni juli august september oktober november dezember",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
    "nl": "januari februari maart april mei juni juli augustus september oktober november december",
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
}
ABBR = {
    "en": "jan feb mar apr may jun jul aug sep oct nov dec",
    "de": "jan feb mär apr mai jun jul aug sep okt nov dez",
    "fr": "janv févr mars avr mai juin juil août sept oct nov déc",
    "es": "ene feb mar abr may jun jul ago sep oct nov dic",
    "it": "gen feb mar apr mag giu lug ago set ott nov dic",
    "nl": "jan feb mrt apr mei jun jul aug sep okt nov dec",
    "pt": "jan fev mar abr mai jun jul ago set out nov dez",
}
NAMES = {"full": {k: v.split() for k, v in FULL.items()}, "abbr": {k: v.split() for k, v in ABBR.items()}}

#: never dates: versions, codes, times, UIDs, numbers with units, acronyms
FALSE_POSITIVES = [
    "1.0.3.37",
    "VE11C",
    "syngo MR E11",
    "syngo MR XA20",
    "2.5.1",
    "V3.4.12",
    "11.2.0",
    "113690",
    "39607008",
    "12:30:45",
    "12.30.45",
    "123045.123",
    "1.2.840.10008.5.1.4.1.1.2",
    "2.25.161952731844278522754435231967292464486",
    "3.0 mm",
    "120 kV",
    "0.5\\0.5",
    "512 x 512",
    "TR 2300/TE 2.98",
    "b1000",
    "MAR 2019",
    "iMAR",
    "3 mar",
    "set 12",
    "Decubitus 3",
    "Mayo Clinic 4",
    "T1 MPRAGE SAG",
    "CT HEAD W/O CONTRAST",
    "2019",
]
WORDS = ["CT", "HEAD", "axial", "contrast", "prior", "comparison", "T1", "MPRAGE", "follow-up", "5 mm", "seen"]


def _fold(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def _cased(word: str, case: str) -> str:
    return word.upper() if case == "upper" else word.capitalize() if case == "title" else word


def _month(month: int, lang: str, style: str, case: str, ascii_only: bool) -> str:
    word = NAMES[style][lang][month - 1]
    return _cased(_fold(word) if ascii_only else word, case)


def _ordinal(day: int) -> str:
    return "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def render(spec: dict, d: date, lang: str, pad: bool) -> str:
    """``d`` written as ``spec`` says (``lang`` and ``pad`` may vary: they are what the reader cannot know)."""
    kind = spec["kind"]
    dd = f"{d.day:02d}" if pad else str(d.day)
    mm = f"{d.month:02d}" if pad else str(d.month)
    sep = spec.get("sep", " ")
    if kind in ("dmy", "my", "dm", "mdy", "dmy2"):
        mon = _month(d.month, lang, spec["style"], spec["case"], spec["ascii"]) + ((spec["dot"] and ".") or "")
    if kind == "dmy":
        return f"{dd}{(spec['ord'] and _ordinal(d.day)) or ''}{sep}{mon}{sep}{d.year}"
    if kind == "dmy2":
        return f"{dd}{sep}{mon}{sep}{d.year % 100:02d}"
    if kind == "mdy":
        return f"{mon} {dd}, {d.year}"
    if kind == "my":
        return f"{mon}{sep}{d.year}"
    if kind == "dm":
        return f"{dd}{_ordinal(d.day)} of {mon}" if spec["ord"] else f"{dd} {mon}"
    if kind == "dmy_num":
        return f"{dd}{sep}{mm}{sep}{d.year}"
    if kind == "mdy_num":
        return f"{mm}{sep}{dd}{sep}{d.year}"
    if kind == "ymd_num":
        return f"{d.year}{sep}{mm}{sep}{dd}"
    if kind == "compact":
        return f"{d:%Y%m%d}"
    if kind == "my_num":
        return f"{d.month:02d}{sep}{d.year}"
    if kind == "ym_num":
        return f"{d.year}{sep}{d.month:02d}"
    raise AssertionError(kind)


def expected(spec: dict, d: date, days: int) -> date:
    """What the shifted date must be, at the precision written."""
    if spec["kind"] in ("my", "my_num", "ym_num"):
        return date(d.year, d.month, 15) + timedelta(days=days)
    if spec["kind"] == "dm":
        ref = date(2000 if (d.month, d.day) == (2, 29) else 2001, d.month, d.day)
        return ref + timedelta(days=days)
    return d + timedelta(days=days)


@st.composite
def spellings(draw: st.DrawFn) -> tuple[dict, date, bool]:
    """(spelling, date, whether the date must be removed rather than shifted)."""
    kind = draw(
        st.sampled_from(
            ["dmy", "dmy2", "mdy", "my", "dm", "dmy_num", "mdy_num", "ymd_num", "compact", "my_num", "ym_num"]
        )
    )
    d = draw(st.dates(min_value=date(1950, 1, 1), max_value=date(2030, 12, 31)))
    lang = draw(st.sampled_from(sorted(FULL)))
    style = draw(st.sampled_from(["full", "abbr"]))
    spec = {
        "kind": kind,
        "lang": lang,
        "style": style,
        "case": draw(st.sampled_from(["upper", "title", "lower"])),
        "ascii": draw(st.booleans()),
        "dot": style == "abbr" and draw(st.booleans()),
        "pad": draw(st.booleans()),
        "ord": lang == "en" and draw(st.booleans()),
    }
    removed = False
    if kind in ("dmy_num", "mdy_num"):
        spec["sep"] = draw(st.sampled_from(["/", "-", "."]))
        ambiguous = d.day <= 12  # 04/04/2019 too: its shifted date's order would be a guess
        if kind == "mdy_num" and spec["sep"] == ".":
            spec["sep"] = "/"  # dotted dates are read day-first
        removed = ambiguous and not (kind == "dmy_num" and spec["sep"] == ".")
    elif kind == "dmy":
        spec["sep"] = draw(st.sampled_from([" ", "-", "/", "."]))
        if spec["sep"] != " ":
            spec["ord"] = False
    elif kind == "dmy2":
        spec["sep"] = draw(st.sampled_from(["-", "/", ""]))
        spec["pad"], spec["ord"] = True, False
    elif kind == "my":
        spec["sep"] = draw(st.sampled_from([" ", "-", "/"]))
        if spec["sep"] == " " and spec["case"] == "upper" and style == "abbr" and not spec["dot"]:
            spec["case"] = "title"  # "MAR 2019" is an acronym beside a year (see FALSE_POSITIVES)
    elif kind == "dm":
        if not spec["ord"]:
            spec["style"], spec["dot"] = "full", False  # abbreviations without a year need an ordinal
    elif kind == "ymd_num":
        spec["sep"] = draw(st.sampled_from(["-", "/", "."]))
    elif kind == "my_num":
        spec["sep"] = draw(st.sampled_from(["/", ".", "-"]))
    elif kind == "ym_num":
        spec["sep"] = draw(st.sampled_from(["-", "/"]))
    return spec, d, removed


@given(
    spelled=spellings(),
    days=st.integers(-3650, 3650),
    before=st.lists(st.sampled_from(WORDS + FALSE_POSITIVES), max_size=4),
    after=st.lists(st.sampled_from(WORDS + FALSE_POSITIVES), max_size=4),
)
@settings(max_examples=200, deadline=None)
def test_every_spelling_is_shifted_by_the_offset_or_removed(
    spelled: tuple[dict, date, bool], days: int, before: list[str], after: list[str]
) -> None:
    spec, d, removed = spelled
    written = render(spec, d, spec["lang"], spec["pad"])
    if spec["kind"] in ("dmy", "dmy2", "mdy", "my", "dm"):
        spec["_token"] = _month(d.month, spec["lang"], spec["style"], spec["case"], spec["ascii"])
        spec["_month"] = d.month
    else:
        spec["_token"], spec["_month"] = "", d.month
    prefix = "; ".join(before) + ("; " if before else "")  # "set 12" "Mayo Clinic" would make "12 Mayo"
    suffix = ("; " if after else "") + "; ".join(after)
    out, n = shift_dates_in_text(prefix + written + suffix, days)
    assert n == 1, (written, out)
    assert out.startswith(prefix) and out.endswith(suffix), (written, out)
    got = out[len(prefix) : len(out) - len(suffix)]
    if removed:
        assert got == MARKER, (written, got)
        return
    want = expected(spec, d, days)
    # the reader's own view of the output: the original month's spelling family, shifted
    spec_out = dict(spec)
    readings = set()
    for lang in FULL:
        if spec["kind"] in ("dmy", "dmy2", "mdy", "my", "dm"):
            for style in ("full", "abbr"):
                if _month(d.month, lang, style, spec["case"], spec["ascii"]) + ((spec["dot"] and ".") or "") != (
                    spec["_token"] + ((spec["dot"] and ".") or "")
                ):
                    continue
                # a month written without accents may come back with or without them
                folds = {spec["ascii"], True, False} if _fold(spec["_token"]) == spec["_token"] else {spec["ascii"]}
                for pad in (True, False):
                    for ascii_only in folds:
                        readings.add(render(dict(spec_out, style=style, ascii=ascii_only), want, lang, pad))
        else:
            for pad in (True, False):
                readings.add(render(spec_out, want, lang, pad))
    assert got in readings, (written, days, got, sorted(readings)[:4])
    if days != 0 and spec["kind"] not in ("my", "my_num", "ym_num", "dm"):
        assert got != written  # a full date never comes back as it was


def test_the_issue_examples() -> None:
    days = -40
    text = "seen 14-MAR-2019 and Mar-2019, March 2019, 03/2019, the 14th of March, 12-JAN-18"
    out, n = shift_dates_in_text(text, days)
    assert n == 6
    assert out == "seen 02-FEB-2019 and Feb-2019, February 2019, 02/2019, the 2nd of February, 03-DEC-17"
    assert shift_dates_in_text("14. März 2019", days)[0] == "2. Februar 2019"
    assert shift_dates_in_text("14 mars 2019", days)[0] == "2 février 2019"
    assert shift_dates_in_text("14 de marzo de 2019", days)[0] == "2 de febrero de 2019"
    assert shift_dates_in_text("1er avril 2019", days)[0] == "20 février 2019"


def test_ambiguous_numeric_dates_are_removed_and_unambiguous_ones_shifted() -> None:
    assert shift_dates_in_text("on 03/04/2019.", 10) == (f"on {MARKER}.", 1)
    assert shift_dates_in_text("on 03-04-2019", 10) == (f"on {MARKER}", 1)
    assert shift_dates_in_text("on 03.04.2019", 10) == ("on 13.04.2019", 1)  # dotted: day first
    assert shift_dates_in_text("on 14/03/2019", 10) == ("on 24/03/2019", 1)
    assert shift_dates_in_text("on 03/14/2019", 10) == ("on 03/24/2019", 1)
    # both readings agree, but the shifted date's order would be a guess (1/1/2000 + 1: 2/1 or 1/2?)
    assert shift_dates_in_text("on 04/04/2019", 10) == (f"on {MARKER}", 1)
    assert shift_dates_in_text("on 04.04.2019", 10) == ("on 14.04.2019", 1)  # dotted: day first


def test_without_an_offset_every_date_is_removed_and_the_birth_date_always() -> None:
    assert shift_dates_in_text("14-MAR-2019, 2019-03", None) == (f"{MARKER}, {MARKER}", 2)
    birth = date(1950, 6, 11)
    out, n = shift_dates_in_text("born 11 June 1950 (June 1950), 11th of June; seen 12 June 1950", 30, [birth])
    assert out == f"born {MARKER} ({MARKER}), {MARKER}; seen 12 July 1950" and n == 4


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_look_alikes_are_not_dates(text: str) -> None:
    assert shift_dates_in_text(text, 100) == (text, 0)
    assert shift_dates_in_text(f"Software {text}, prior 2019-03-14.", 1) == (f"Software {text}, prior 2019-03-15.", 1)


def _deid(comments: str, options: object = DEFAULT_RESEARCH_OPTIONS, **extra: str):  # type: ignore[no-untyped-def]
    ds = base()
    ds.StudyDate = "20190311"
    ds.PatientBirthDate = "19500611"
    ds.StudyDescription = "CT HEAD"
    ds.ImageComments = comments
    for k, v in extra.items():
        setattr(ds, k, v)
    return Deidentifier(KEY, Profile(options)).deidentify(ds)  # type: ignore[arg-type]


def test_the_engine_shifts_text_dates_with_the_dates_offset() -> None:
    result = _deid("prior 14-MAR-2019; born 11.06.1950; ref 11/03/2019 seen 2019-03-11 v 1.0.3.37 3.0 mm")
    out = result.dataset
    shifted = date(2019, 3, 14) + timedelta(days=result.day_offset)
    study = date(2019, 3, 11) + timedelta(days=result.day_offset)
    assert out.StudyDate == f"{study:%Y%m%d}"
    want = f"prior {shifted:%d-%b-%Y}".upper().replace("PRIOR", "prior")
    text = out.ImageComments
    assert text.startswith(want + "; born *; ref *"), text
    assert f"seen {study:%Y-%m-%d} v 1.0.3.37 3.0 mm" in text, text
    assert "1950" not in text and "14-MAR-2019" not in text


def test_the_engine_removes_text_dates_when_the_lake_does_not_shift_dates() -> None:
    out = _deid("prior 14-MAR-2019 and March 2019", ["clean_descriptors"]).dataset
    assert out.ImageComments == "prior * and *"


def test_a_date_shaped_identifier_is_removed_not_shifted() -> None:
    out = _deid("acc 2019-03-14 here", AccessionNumber="2019-03-14").dataset
    assert out.ImageComments == "acc * here"


def test_ages_option_is_off_by_default_and_collapses_ages_over_89() -> None:
    assert LakeOption.HIPAA_SAFE_HARBOR_AGES not in parse_options(DEFAULT_RESEARCH_OPTIONS)
    off = _deid("a 93-year-old man", PatientAge="093Y").dataset
    assert off.PatientAge == "093Y" and off.ImageComments == "a 93-year-old man"
    options = [*DEFAULT_RESEARCH_OPTIONS, "hipaa_safe_harbor_ages"]
    on = _deid("a 93-year-old, 93 yo, aged 95; a 45-year-old", options, PatientAge="1100M").dataset
    assert on.PatientAge == "090Y"
    assert on.ImageComments == "a 90+-year-old, 90+ yo, aged 90+; a 45-year-old"
    assert _deid("x", options, PatientAge="089Y").dataset.PatientAge == "089Y"


@pytest.mark.parametrize(
    ("value", "want"),
    [
        *[("093Y", "090Y"), ("090Y", "090Y"), ("089Y", None), ("1100M", "090Y"), ("1079M", None)],
        *[("1080M", "090Y"), ("4800W", "090Y"), ("4695W", None), ("999D", None), ("045Y", None), ("", None)],
        ("junk", None),
    ],
)
def test_age_strings(value: str, want: str | None) -> None:
    assert collapse_age(value) == want


def test_ages_in_text() -> None:
    text = "93-year-old, 93 yo, 93 y/o, aged 93, age: 91, 93 ans, 93 años, 93-jährig, 093Y, 89 yo, 45-year-old"
    out, n = collapse_ages_in_text(text)
    assert n == 9
    assert (
        out
        == "90+-year-old, 90+ yo, 90+ y/o, aged 90+, age: 90+, 90+ ans, 90+ años, 90+-jährig, 090Y, 89 yo, 45-year-old"
    )


def test_the_option_is_chosen_at_init_and_recorded(tmp_path: Path) -> None:
    from lake.cli.init_cmd import register  # noqa: F401  (the option is one of the CLI's choices)
    from lake.deid.profile import OPTION_NAMES

    assert "hipaa_safe_harbor_ages" in OPTION_NAMES
    lk = lake.init(tmp_path / "lake", options=[*DEFAULT_RESEARCH_OPTIONS, "hipaa_safe_harbor_ages"])
    assert "hipaa_safe_harbor_ages" in lake.open(tmp_path / "lake").config.deid.options
    assert "hipaa_safe_harbor_ages" in lk.info()["deid_options"]


def test_a_seeded_text_date_reaches_no_lake_file_and_its_shifted_value_does(tmp_path: Path) -> None:
    spec = PatientSpec("QUIXOTE^ALONSO", "MRN448100", "19500611", "ACC9")
    paths = write_study(spec, tmp_path / "src", date(2019, 3, 11), n_images=2)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.ImageComments = "prior exam 14-MAR-2019, compare"
        ds.save_as(path)
    root = tmp_path / "lake"
    ingest(root, [tmp_path / "src"])
    for _place, text in lake_texts(root):
        assert "14-MAR-2019" not in text.upper()
    lk = lake.open(root)
    rows = lk.sql("SELECT StudyDate, header_json FROM instances").to_dicts()
    assert len(rows) == 2
    for row in rows:
        study = row["StudyDate"]
        if not isinstance(study, date):
            digits = str(study).replace("-", "")
            study = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
        offset = (study - date(2019, 3, 11)).days
        assert offset != 0
        want = f"{date(2019, 3, 14) + timedelta(days=offset):%d-%b-%Y}".upper()
        comments = json.loads(row["header_json"])["00204000"]["Value"][0]
        assert comments == f"prior exam {want}, compare"


def test_the_text_cleaner_no_longer_takes_versions_for_dates() -> None:
    cleaner = TextCleaner([])
    text = "v 1.0.3.37 2.5.1 at 12.30.45, 3.0 mm"
    assert cleaner.clean(text) == text
    assert cleaner.clean("on 14.03.2019 and 2019-03-14.") == "on * and *."
