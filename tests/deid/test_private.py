"""The private safelist, checked entry by entry against pydicom's private dictionary, and its vetting."""

from __future__ import annotations

import re
import tomllib
from collections import Counter

import pytest
from pydicom._private_dict import private_dictionaries
from pydicom.dataelem import DataElement

from lake.deid.clean import TextCleaner
from lake.deid.private import SAFELIST_PATH, SafePrivate, load_csa_rules, load_safelist, vet
from lake.errors import ConfigError
from lake.resources import Traversable

UNSAFE_VRS = {"DA", "DT", "TM", "PN", "UI", "SQ", "UN", "ST", "LT", "UT", "OB", "OW"}
VENDORS = ("GEMS_", "SIEMENS", "Philips")
CLEANER = TextCleaner(["QUIXOTE^ALONSO", "QUIXOTE", "ALONSO", "MRN448100"])


def test_every_safelist_entry_is_in_pydicoms_private_dictionary() -> None:
    entries = tomllib.loads(SAFELIST_PATH.read_text())["elements"]
    assert len(entries) == len(load_safelist()) >= 30
    for e in entries:
        assert e["creator"].startswith(VENDORS), e
        known = private_dictionaries.get(e["creator"])
        assert known is not None, e
        vr, _vm, name, _retired = known[f"{e['group']}xx{e['element']}".upper().replace("XX", "xx")]
        assert (vr, name) == (e["vr"], e["name"]), e
        # no dates, names, UIDs, free text; opaque blobs only where a parser vouches for them
        assert vr not in UNSAFE_VRS or e.get("binary") in ("csa", "ge-protocol"), e
        assert e["why"], e


def test_text_entries_state_a_pattern_their_example_matches() -> None:
    for rule in load_safelist():
        if rule.vr in ("LO", "SH", "CS"):
            entry = next(
                e
                for e in tomllib.loads(SAFELIST_PATH.read_text())["elements"]
                if int(e["group"], 16) == rule.group
                and int(e["element"], 16) == rule.element
                and e["creator"] == rule.creator
            )
            assert rule.pattern and re.fullmatch(rule.pattern, entry["example"]), entry
            assert not re.fullmatch(rule.pattern, "QUIXOTE ALONSO 555 0199"), entry


def test_each_vendor_is_represented() -> None:
    creators = {r.creator for r in load_safelist()}
    for vendor in VENDORS:
        assert any(c.startswith(vendor) for c in creators), vendor


def test_csa_rules_say_why() -> None:
    csa, protocol = load_csa_rules()
    assert {"B_value", "DiffusionGradientDirection", "MosaicRefAcqTimes", "MrPhoenixProtocol"} <= set(csa)
    assert "tProtocolName" not in protocol and "tSequenceFileName" in protocol
    assert all(r.why for r in [*csa.values(), *protocol.values()])


class _Text:
    def __init__(self, text: str) -> None:
        self.text = text

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.text


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('vr = "LO"', "needs a pattern"),
        ('vr = "OB"', "binary VR"),
        ('vr = "PN"', "never safelisted"),
        ('vr = "DS"\nvm = "x"', "vm"),
        ('vr = "LO"\npattern = "("', "invalid pattern"),
    ],
)
def test_malformed_entries_are_refused(entry: str, message: str) -> None:
    text = f'[[elements]]\ngroup = "0019"\ncreator = "X"\nelement = "01"\nwhy = "w"\n{entry}\n'
    path: Traversable = _Text(text)  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=message):
        load_safelist.__wrapped__(path)


RULE_DS = SafePrivate(0x0019, "SIEMENS MR HEADER", 0x0B, vr="DS", vm="1")
RULE_FD3 = SafePrivate(0x0019, "SIEMENS MR HEADER", 0x0E, vr="FD", vm="3")
RULE_COIL = next(r for r in load_safelist() if r.name == "CoilString")


@pytest.mark.parametrize(
    ("rule", "vr", "value", "reason"),
    [
        (RULE_DS, "OB", b"QUIXOTE^ALONSO 19870601", "X-safelist-binary"),
        (RULE_DS, "UR", "http://x.invalid/?name=QUIXOTE", "X-safelist-vr"),
        (RULE_DS, "LO", "5000", "X-safelist-vr"),
        (RULE_DS, "DS", ["1", "2"], "X-safelist-vm"),
        (RULE_DS, "UN", b"QUIXOTE ", "X-safelist-un"),
        (RULE_FD3, "FD", [1.0, 0.0], "X-safelist-vm"),
        (RULE_FD3, "UN", b"QUIXOTE^ALONSO__MRN448" + b"\x00\x00", "X-safelist-un"),  # 3 doubles spelling a name
        (RULE_FD3, "UN", b"QUIXOTE^ALONSO__MRN4481", "X-safelist-un"),  # 23 bytes: no FD value
        (RULE_FD3, "FD", [float("nan"), 0.0, 1.0], "X-safelist-pattern"),
        (RULE_COIL, "LO", "QUIXOTE ALONSO 555 0199", "X-safelist-pattern"),
        (RULE_COIL, "LO", "QUIXOTE", "X-safelist-text"),
        (RULE_COIL, "LO", "MRN448100", "X-safelist-text"),
    ],
)
def test_a_safelisted_slot_holding_something_else_is_dropped(
    rule: SafePrivate, vr: str, value: object, reason: str
) -> None:
    elem = DataElement(0x0019100B, vr, value)
    assert vet(elem, rule, CLEANER, Counter()) == reason


def test_un_is_read_as_the_safelists_vr_when_its_bytes_are_a_valid_value() -> None:
    kept = vet(DataElement(0x0019100B, "UN", b"5000"), RULE_DS, CLEANER, Counter())
    assert isinstance(kept, DataElement) and (kept.VR, kept.value) == ("DS", 5000)
    packed = DataElement(0x0019100E, "UN", b"\x00" * 8 + b"\x00\x00\x00\x00\x00\x00\xf0\x3f" + b"\x00" * 8)
    kept = vet(packed, RULE_FD3, CLEANER, Counter())
    assert isinstance(kept, DataElement) and (kept.VR, list(kept.value)) == ("FD", [0.0, 1.0, 0.0])
    good = DataElement(0x0051100F, "LO", "HEA;HEP")
    assert vet(good, RULE_COIL, CLEANER, Counter()) is good
