"""The ``ssn-like`` pattern of ``lake audit-phi`` at the edges of a sentence, and what it must not fire on.

An SSN ends a sentence ("SSN 123-45-6789.") or a list as often as it stands alone; the pattern
used to skip it whenever a full stop followed. Around that fix: punctuation on either side that
ends or opens a phrase is a hit, punctuation that continues a number (a decimal, a dotted
version or UID, a longer dash group) is not, and dates, phone numbers and the lake's own values
stay out.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lake.audit import PHI_PATTERNS, audit_lake
from lake.audit.patterns import SSN, pattern_matches
from lake.ingest import ingest
from lake.testing.synthetic import make_cohort

SSN_VALUE = "123-45-6789"

HITS = [
    "SSN 123-45-6789.",  # the end of a sentence (the bug)
    "SSN 123-45-6789. Seen by the fellow.",
    "SSN 123-45-6789...",
    "patient's SSN is 123-45-6789!",
    "SSN: 123-45-6789?",
    "ssn 123-45-6789, MRN unknown",
    "ssn=123-45-6789;",
    "(SSN 123-45-6789)",
    "[123-45-6789]",
    '"123-45-6789"',
    "SSN.123-45-6789",  # a dot after a word opens the number
    "123-45-6789",
    "123-45-6789\nnext line",
    "x\t123-45-6789\t",
    "SSN\u00a0123-45-6789.",
    "two: 123-45-6789 and 987-65-4321.",
]

MISSES = [
    "2024-01-15",  # ISO date
    "15-01-2024",  # day-month-year
    "01-15-2024.",
    "2024-01-15T12:30:00Z",
    "555-010-0199.",  # phone numbers
    "(555) 010-0199.",
    "+1 555 010 0199.",
    "555-0199.",
    "1234-56-7890.",  # longer groups on either side
    "123-45-67890.",
    "0123-45-6789",
    "123-45-6789-01",
    "9-123-45-6789",
    "123-45-6789.5",  # a decimal or a dotted number continues it
    "123-45-6789,5",
    "1.123-45-6789",
    "1,123-45-6789",
    "2.25.123-45-6789",
    "12-34-5678.",  # too short
    "123-4-56789.",
    "123 45 6789.",  # not the dashed form
    "R20261201T222026-c1edb4",  # a run id
]


def _ssn_hits(text: str) -> list[str]:
    return [m.group(0) for m in pattern_matches(text, "ssn-like", SSN)]


@pytest.mark.parametrize("text", HITS)
def test_an_ssn_is_found_whatever_punctuation_surrounds_it(text: str) -> None:
    found = _ssn_hits(text)
    assert found and found[0] == SSN_VALUE, text


def test_two_ssns_in_one_sentence_are_both_found() -> None:
    assert _ssn_hits("two: 123-45-6789 and 987-65-4321.") == [SSN_VALUE, "987-65-4321"]


@pytest.mark.parametrize("text", MISSES)
def test_dates_phones_and_longer_numbers_are_not_ssns(text: str) -> None:
    assert _ssn_hits(text) == [], text


def test_the_audit_uses_the_fixed_pattern() -> None:
    assert dict(PHI_PATTERNS)["ssn-like"] is SSN


def test_audit_phi_finds_an_ssn_at_the_end_of_a_sentence_in_a_lake_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_cohort(src, n_patients=1, studies_per_patient=1, n_images=1)
    root = tmp_path / "lake"
    ingest(root, [src], key_file=tmp_path / "lake.key")
    assert not [h for h in audit_lake(root, []) if h.identifier == "<ssn-like>"]
    leak = root / "tables" / "instances" / "leak.parquet"
    pq.write_table(pa.table({"PatientComments": ["Seen today. SSN 123-45-6789."]}), leak)
    hits = [h for h in audit_lake(root, []) if h.identifier == "<ssn-like>"]
    assert {(h.where, h.column, h.match) for h in hits} >= {("parquet value", "PatientComments", "contains")}
