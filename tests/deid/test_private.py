"""The private safelist, checked entry by entry against pydicom's private dictionary."""

from __future__ import annotations

import tomllib

from pydicom._private_dict import private_dictionaries

from lake.deid.private import SAFELIST_PATH, load_safelist

UNSAFE_VRS = {"DA", "DT", "TM", "PN", "UI", "SQ", "UN", "ST", "LT", "UT", "OB", "OW"}
VENDORS = ("GEMS_", "SIEMENS", "Philips")


def test_every_safelist_entry_is_in_pydicoms_private_dictionary() -> None:
    entries = tomllib.loads(SAFELIST_PATH.read_text())["elements"]
    assert len(entries) == len(load_safelist()) >= 30
    for e in entries:
        assert e["creator"].startswith(VENDORS), e
        known = private_dictionaries.get(e["creator"])
        assert known is not None, e
        vr, _vm, name, _retired = known[f"{e['group']}xx{e['element']}".upper().replace("XX", "xx")]
        assert (vr, name) == (e["vr"], e["name"]), e
        assert vr not in UNSAFE_VRS, e  # no dates, names, UIDs, free text or opaque blobs
        assert e["why"], e


def test_each_vendor_is_represented() -> None:
    creators = {r.creator for r in load_safelist()}
    for vendor in VENDORS:
        assert any(c.startswith(vendor) for c in creators), vendor
