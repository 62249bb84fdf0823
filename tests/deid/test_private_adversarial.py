"""Hypothesis: safelisted private slots holding something else never leak; correct values survive exactly.

Slots are drawn from the project's safelist and placed at random depth inside sequences, with the
right VR and a valid value, or with a wrong VR (OB, UN, UR, OW, UT), a wrong VM, a value that
breaks the slot's pattern, or a name, phone number or birth date in a text slot. The output is
searched element by element (bytes decoded as latin-1 and UTF-8), in header_json, and in the
written file.
"""

from __future__ import annotations

import struct
from io import BytesIO

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset, dcmwrite

from lake.deid.engine import Deidentifier
from lake.deid.private import NUMBER_FORMATS, SafePrivate, load_safelist
from lake.deid.profile import DEFAULT_RESEARCH_OPTIONS, Profile
from lake.headers.flatten import header_json
from lake.keys import LakeKey
from tests.deid.helpers import at_depth, base, nest

KEY = LakeKey(bytes(range(32)))
PROFILE = Profile(DEFAULT_RESEARCH_OPTIONS)
RULES = [r for r in load_safelist() if r.binary is None]
EXAMPLES = {
    "Pulse Sequence Name": "epiRT",
    "Internal Pulse Sequence Name": "EPI",
    "CSA Image Header Type": "IMAGE NUM 4",
    "DiffusionDirectionality": "DIRECTIONAL",
    "GradientMode": "Fast",
    "FlowCompensation": "No",
    "AcquisitionMatrixText": "72*72s",
    "CoilString": "HEA;HEP",
    "PATModeText": "p2",
    "PositivePCSDirections": "+LPH",
    "Diffusion Direction": "O",
}
letters = st.text(alphabet="BCDFGHJKLMNPQRSTVWXZ", min_size=5, max_size=9)


def _count(rule: SafePrivate) -> int:
    low, _, high = rule.vm.partition("-")
    return int(low) if not high else int(low) + 2


@st.composite
def good_values(draw: st.DrawFn, rule: SafePrivate) -> object:
    n = _count(rule)
    if rule.vr in ("FL", "FD"):
        vals: list[object] = [draw(st.integers(-2000, 2000)) / 4 for _ in range(n)]
    elif rule.vr in NUMBER_FORMATS:
        vals = [draw(st.integers(0, 300)) for _ in range(n)]
    elif rule.vr == "DS":
        vals = [str(draw(st.integers(0, 5000)))]
    elif rule.vr == "IS":
        vals = [str(draw(st.integers(0, 5000))) for _ in range(n)]
    else:
        vals = [EXAMPLES[rule.name]]
    return vals if len(vals) > 1 else vals[0]


def _bad(draw: st.DrawFn, rule: SafePrivate, seed: str) -> tuple[str, object]:
    """A wrong VR, VM or value in the slot, each carrying ``seed``."""
    kind = draw(st.sampled_from(["OB", "UN", "UR", "OW", "UT", "vm", "pattern", "text"]))
    raw = seed.encode() + b" " * (len(seed) % 2)
    if kind in ("OB", "UN", "OW"):
        return kind, raw + b"\x00" * (-len(raw) % 8)  # padded so that it parses as numbers too
    if kind == "UR":
        return "UR", f"http://example.invalid/?patientName={seed}"
    if kind == "UT":
        return "UT", f"seen {seed} today"
    if kind == "vm" and rule.vr in NUMBER_FORMATS and "-" not in rule.vm:
        n = _count(rule) + 1
        words = raw + b"\x00" * (-len(raw) % struct.calcsize(NUMBER_FORMATS[rule.vr]))
        fmt = NUMBER_FORMATS[rule.vr]
        count = len(words) // struct.calcsize(fmt)
        vals = list(struct.unpack(f"<{count}{fmt}", words))
        return rule.vr, (vals * n)[: max(n, count)]
    if rule.vr in NUMBER_FORMATS:
        return "UN", raw + b"\x00" * (-len(raw) % 8)
    if rule.vr in ("DS", "IS"):  # pydicom refuses to build these; a file would read as raw bytes
        return "UN", raw if kind != "pattern" else f"{seed}\\555 0199 ".encode()
    return rule.vr, seed if kind != "pattern" else f"{seed} 555 0199"


@st.composite
def cases(draw: st.DrawFn) -> tuple[Dataset, list[str], list[tuple[int, SafePrivate, str, object]]]:
    family, given_name = draw(letters), draw(letters)
    birth = f"19{draw(st.integers(20, 99))}0{draw(st.integers(1, 9))}1{draw(st.integers(0, 9))}"
    phone = f"555 {draw(st.integers(1000, 9999))}"
    ds = base()
    ds.PatientName = f"{family}^{given_name}"
    ds.PatientBirthDate = birth
    seeds = [family, given_name, birth, phone, f"{family}^{given_name}"]
    depth = draw(st.integers(0, 3))
    item = nest(ds, depth)
    good: list[tuple[int, SafePrivate, str, object]] = []
    used: set[tuple[int, str, int]] = set()
    for _ in range(draw(st.integers(1, 4))):
        rule = draw(st.sampled_from(RULES))
        if (rule.group, rule.creator, rule.element) in used:
            continue
        used.add((rule.group, rule.creator, rule.element))
        block = item.private_block(rule.group, rule.creator, create=True)
        if draw(st.booleans()):
            value = draw(good_values(rule))
            block.add_new(rule.element, rule.vr, value)
            good.append((depth, rule, rule.vr, value))
        else:
            vr, value = _bad(draw, rule, draw(st.sampled_from(seeds)))
            block.add_new(rule.element, vr, value)
    return ds, [family, given_name, birth, phone.replace(" ", "")], good


def _texts(ds: Dataset) -> str:
    parts = []
    for elem in ds.iterall():
        value = elem.value
        if isinstance(value, bytes):
            parts += [value.decode("latin-1"), value.decode("utf-8", "replace")]
        else:
            parts.append(str(value))
    buffer = BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=False)
    written = buffer.getvalue()
    parts += [written.decode("latin-1"), header_json(ds)]
    return "\n".join(parts).replace(" ", "")


@given(case=cases())
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_seeded_values_in_safelisted_slots_never_survive_and_good_values_do(
    case: tuple[Dataset, list[str], list[tuple[int, SafePrivate, str, object]]],
) -> None:
    ds, needles, good = case
    out = Deidentifier(KEY, PROFILE).deidentify(ds).dataset
    text = _texts(out).upper()
    for needle in needles:
        assert needle.upper() not in text, needle
    for depth, rule, vr, value in good:
        item = at_depth(out, depth)
        block = item.private_block(rule.group, rule.creator)
        elem = block[rule.element]
        got = list(elem.value) if isinstance(value, list) else elem.value
        assert (elem.VR, got) == (vr, value), rule.name
