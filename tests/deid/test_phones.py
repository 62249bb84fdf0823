"""Hypothesis: phone numbers in national and international forms leave free text; measurements,
dates, versions and UIDs are never taken for one (issue 12, leak path 6)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pydicom
import pydicom.sequence
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lake
from lake.audit import find_identifiers
from lake.deid.clean import TextCleaner
from lake.deid.engine import Deidentifier
from lake.deid.profile import Action, Profile, ProfileOption
from lake.headers.flatten import header_json
from lake.ingest import ingest
from lake.keys import LakeKey
from lake.testing.synthetic import PatientSpec, write_study
from tests.deid.helpers import base, nest

KEY = LakeKey(bytes(range(32)))
#: Clean Descriptors without the named-entity step's dependency: Clean Structured Content cleans
#: the free text of ContentSequence, so the phone patterns are what is tested here
PROFILE = Profile([ProfileOption.CLEAN_STRUCTURED_CONTENT, ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES])


def digits(n: int, first: str = "0123456789") -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(first), st.text("0123456789", min_size=n - 1, max_size=n - 1)).map("".join)


@st.composite
def phones(draw: st.DrawFn) -> str:
    """One phone number in one of the forms archives write."""
    form = draw(st.sampled_from(["local", "us", "uk", "de", "fr", "jp", "intl"]))
    d = lambda n, first="0123456789": draw(digits(n, first))  # noqa: E731
    if form == "local":  # 555 0199, 555-0199
        return f"{d(3, '23456789')}{draw(st.sampled_from([' ', '-']))}{d(4)}"
    if form == "us":  # (555) 555-0199, 555.555.0199, 555-555-0199
        a, b, c = d(3, "23456789"), d(3), d(4)
        return draw(st.sampled_from([f"({a}) {b}-{c}", f"{a}.{b}.{c}", f"{a}-{b}-{c}", f"{a} {b} {c}"]))
    if form == "uk":  # 020 7946 0958, 0161 496 0000, 07700 900123
        return draw(st.sampled_from([f"0{d(2)} {d(4)} {d(4)}", f"0{d(3)} {d(3)} {d(4)}", f"07{d(3)} {d(6)}"]))
    if form == "de":  # 030 1234567, 030/1234567, 0221-12345678
        sep = draw(st.sampled_from([" ", "/", "-"]))
        return f"0{d(draw(st.integers(2, 4)), '123456789')}{sep}{d(draw(st.integers(5, 8)))}"
    if form == "fr":  # 01 23 45 67 89, 01.23.45.67.89
        sep = draw(st.sampled_from([" ", "."]))
        return sep.join([f"0{d(1, '123456789')}", *(d(2) for _ in range(4))])
    if form == "jp":  # 03-1234-5678, 090-1234-5678
        return f"0{d(draw(st.integers(1, 2)), '123456789')}-{d(4)}-{d(4)}"
    groups = draw(  # +44 20 7946 0958, +49 30 1234567, +33 1 23 45 67 89, +81 3-1234-5678
        st.sampled_from(
            [
                f"+44 {d(2)} {d(4)} {d(4)}",
                f"+49 {d(2)} {d(7)}",
                f"+33 {d(1, '1234567')} {d(2)} {d(2)} {d(2)} {d(2)}",
                f"+81 {d(1, '1234567')}-{d(4)}-{d(4)}",
                f"+1 ({d(3, '23456789')}) {d(3)}-{d(4)}",
            ]
        )
    )
    return groups


PREFIXES = ["call", "Tel:", "contact at", "phone", "ph", "reach the ward on", "callback"]
SUFFIXES = ["", "today", "re T1 AXIAL 5 mm", "for the CHEST PA, 120 kV", "after 14:00", "ext 12 please"]


@given(phone=phones(), prefix=st.sampled_from(PREFIXES), suffix=st.sampled_from(SUFFIXES))
@settings(max_examples=150, deadline=None)
def test_phone_numbers_in_every_national_form_are_removed_exactly(phone: str, prefix: str, suffix: str) -> None:
    text = f"{prefix} {phone} {suffix}".strip()
    cleaned, why = TextCleaner([]).scrub(text, generic=False, contact=True)
    assert cleaned == f"{prefix} * {suffix}".strip()
    assert why == "pattern"


@st.composite
def research_numbers(draw: st.DrawFn) -> str:
    """Measurements, dates, times, versions and UIDs that text around research values holds."""
    n = st.integers(0, 4000)
    small = st.integers(0, 99)
    unit = draw(st.sampled_from(["mm", "cm", "kV", "kVp", "mAs", "ms", "s", "Hz", "T", "mL", "mg", "HU", "MBq", "%"]))
    form = draw(st.sampled_from(["measure", "pair", "triple", "date", "time", "version", "uid", "matrix"]))
    if form == "measure":
        return f"{draw(n)} {unit}"
    if form == "pair":  # TR 400 TE 1500 ms
        return f"TR {draw(n)} TE {draw(n)} ms"
    if form == "triple":  # voxel spacing 0.5 0.5 1.0
        return " ".join(f"{draw(small) / 10:.1f}" for _ in range(3))
    if form == "date":
        y, m, d = draw(st.integers(1950, 2030)), draw(st.integers(1, 12)), draw(st.integers(1, 28))
        return draw(st.sampled_from([f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}", f"{y}/{m:02d}/{d:02d}"]))
    if form == "time":
        return f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}:{draw(st.integers(0, 59)):02d}"
    if form == "version":
        return ".".join(str(draw(st.integers(0, 400))) for _ in range(draw(st.integers(2, 5))))
    if form == "uid":
        return "1.2.840.10008." + ".".join(str(draw(st.integers(1, 99999))) for _ in range(draw(st.integers(2, 6))))
    return f"{draw(st.sampled_from([128, 256, 320, 384, 512, 1024]))} x {draw(st.sampled_from([128, 256, 512]))}"


@given(value=research_numbers(), words=st.sampled_from(["", "T1 AXIAL", "slice", "CHEST PA", "at"]))
@settings(max_examples=150, deadline=None)
def test_measurements_dates_versions_and_uids_are_never_taken_for_phone_numbers(value: str, words: str) -> None:
    text = f"{words} {value}".strip()
    assert TextCleaner([]).scrub(text, generic=False, contact=True) == (text, None)


@given(value=st.sampled_from(["5 mm", "120 kV", "0.5 0.5 1.0", "TR 400 TE 1500 ms", "v 1.0.3.37", "512 x 512"]))
@settings(max_examples=10, deadline=None)
def test_measurements_and_versions_survive_the_whole_cleaner(value: str) -> None:
    text = f"T1 AXIAL {value} CHEST PA"
    assert TextCleaner([]).scrub(text, generic=True) == (text, None)


@given(phone=phones(), depth=st.integers(0, 3), prefix=st.sampled_from(PREFIXES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_phone_number_in_free_text_at_any_depth_leaves_the_header(phone: str, depth: int, prefix: str) -> None:
    """TextValue of an SR content item (UT, in the ContentSequence the profile cleans), nested."""
    assert PROFILE.action_for(0x0040A730) is Action.CLEAN  # ContentSequence
    ds = base()
    item = pydicom.Dataset()
    item.ValueType = "TEXT"
    item.TextValue = f"{prefix} {phone}, CT HEAD W/O CONTRAST 5 mm"
    nest(ds, depth).ContentSequence = pydicom.sequence.Sequence([item])
    out = Deidentifier(KEY, PROFILE).deidentify(ds).dataset
    text = header_json(out)
    assert phone not in text
    assert f"{prefix} *, CT HEAD W/O CONTRAST 5 mm" in text


def test_phone_numbers_reach_no_lake_file(tmp_path: Path) -> None:
    spec = PatientSpec("QUIXOTE^ALONSO", "MRN448100", "19500611", "ACC9")
    numbers = ["555 0199", "020 7946 0958", "030 1234567", "01 23 45 67 89", "03-1234-5678", "+44 20 7946 0958"]
    paths = write_study(spec, tmp_path / "src", date(2019, 3, 11), n_images=1)
    ds = pydicom.dcmread(paths[0])
    item = pydicom.Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "callback " + "; ".join(numbers) + "; 120 kV 5 mm"
    ds.ContentSequence = pydicom.sequence.Sequence([item])
    ds.save_as(paths[0])
    root = tmp_path / "lake"
    lake.init(root, options=sorted(o.value for o in PROFILE.options))
    ingest(root, [tmp_path / "src"])
    assert find_identifiers(root, numbers) == []
    assert find_identifiers(root, ["120 kV 5 mm"])  # the research part is still there
