"""A fuzzed, hostile corpus: no crash, no hang, every input accounted for with a reason."""

from __future__ import annotations

import io
import os
import random
import struct
import zipfile
from pathlib import Path

import pydicom
import pytest

import lake
from lake.ingest import ingest
from lake.maintenance.verify import verify
from lake.testing.synthetic import make_cohort
from tests.faults.conftest import new_lake

PREAMBLE = b"\0" * 128 + b"DICM"


def _meta() -> bytes:
    """A minimal explicit VR little endian file meta group."""
    elems = b"".join(
        struct.pack("<HH2sH", 0x0002, elem, vr.encode(), len(value)) + value
        for elem, vr, value in (
            (0x0002, "UI", b"1.2.840.10008.5.1.4.1.1.7\0"),
            (0x0003, "UI", b"1.2.826.0.1.3680043.9.7777.99.1"),
            (0x0010, "UI", b"1.2.840.10008.1.2.1\0"),
        )
    )
    length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(elems))
    return PREAMBLE + length + elems


def _el(group: int, elem: int, vr: str, value: bytes) -> bytes:
    if vr in ("OB", "OW", "SQ", "UN", "UT"):
        return struct.pack("<HH2sHI", group, elem, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value


def _base(sop: bytes = b"1.2.826.0.1.3680043.9.7777.99.1") -> bytes:
    return _el(0x0008, 0x0016, "UI", b"1.2.840.10008.5.1.4.1.1.7\0") + _el(0x0008, 0x0018, "UI", sop)


def deep_nesting(depth: int) -> bytes:
    """Sequences nested ``depth`` deep, with undefined lengths."""
    open_ = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return _meta() + _base() + open_ * depth + close * depth


def absurd_length() -> bytes:
    return _meta() + _base() + struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, 0xFFFFFFF0) + b"xyz"


def wrong_vr(valid: bytes) -> bytes:
    """PatientName's VR changed from PN to US (2-byte values) and to an unknown code."""
    return valid.replace(b"\x10\x00\x10\x00PN", b"\x10\x00\x10\x00US", 1).replace(
        b"\x08\x00\x60\x00CS", b"\x08\x00\x60\x00ZZ", 1
    )


def huge_private(valid_ds: pydicom.Dataset, megabytes: int) -> bytes:
    ds = valid_ds.copy()
    block = ds.private_block(0x0029, "HOSTILE TEST", create=True)
    block.add_new(0x10, "OB", os.urandom(1024) * (megabytes * 1024))
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def zip_bomb(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.dcm", b"\0" * (64 * 1024**2))


def zip_traversal(path: Path, valid: bytes) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("../../escaped.dcm", valid)
        z.writestr("/abs/escaped2.dcm", b"not dicom")


def build_hostile(root: Path) -> tuple[int, int]:
    """Write the corpus; returns (number of inputs, number of valid distinct instances among them)."""
    valid_dir = root / "valid"
    make_cohort(valid_dir, n_patients=1, studies_per_patient=1, n_images=3)
    valid_files = sorted(valid_dir.rglob("*.dcm"))
    valid = valid_files[0].read_bytes()
    ds = pydicom.dcmread(valid_files[0])
    bad = root / "bad"
    bad.mkdir()
    rng = random.Random(66)
    count = len(valid_files)
    for i, cut in enumerate((5, 131, 300, len(valid) // 2, len(valid) - 3)):
        (bad / f"truncated{i}.dcm").write_bytes(valid[:cut])
        count += 1
    for i in range(12):
        flipped = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(132, len(flipped))
            flipped[pos] ^= 1 << rng.randrange(8)
        (bad / f"flipped{i}.dcm").write_bytes(bytes(flipped))
        count += 1
    writes = {
        "wrong_vr.dcm": wrong_vr(valid),
        "absurd_length.dcm": absurd_length(),
        "deep_nesting.dcm": deep_nesting(20000),
        "huge_private.dcm": huge_private(ds, 24),
        "text.dcm": b"hello, I am not DICOM\n" * 10,
        "empty.dcm": b"",
        "png.dcm": b"\x89PNG\r\n\x1a\n" + os.urandom(200),
        "random.dcm": os.urandom(5000),
        "dicm_only.dcm": PREAMBLE,
    }
    for name, data in writes.items():
        (bad / name).write_bytes(data)
    count += len(writes)
    zip_bomb(bad / "bomb.zip")
    zip_traversal(bad / "traversal.zip", valid_files[1].read_bytes())
    count += 1 + 2
    loops = bad / "loops"
    loops.mkdir()
    (loops / "back").symlink_to(bad, target_is_directory=True)  # a folder loop: skipped, not an input
    (loops / "self.dcm").symlink_to(loops / "self.dcm")  # ELOOP
    (loops / "dangling.dcm").symlink_to(root / "nowhere.dcm")
    os.mkfifo(loops / "fifo.dcm")  # opening it would block forever
    count += 3
    if os.geteuid() != 0:  # root reads anything: the case only exists for other users
        locked = bad / "locked.dcm"
        locked.write_bytes(valid)
        locked.chmod(0)
        count += 1
    return count, len(valid_files)


def test_hostile_corpus_is_accounted_for_without_crash_or_hang(tmp_path: Path) -> None:
    src = tmp_path / "hostile"
    n_inputs, n_valid = build_hostile(src)
    root, key = new_lake(tmp_path)
    summary = ingest(root, [src], key_file=key, workers=2, file_timeout=60, worker_memory_bytes=1024**3)
    assert summary.seen == n_inputs
    # a harmless bit flip of a valid file is another version of it: an update (the later file wins)
    updates = sum(summary.updates.values())
    assert summary.seen == summary.ingested + summary.duplicates + summary.rejected + updates
    assert summary.ingested >= n_valid - updates  # the valid files, the zip member, maybe a bit flip
    lk = lake.open(root)
    rejects = lk.sql("SELECT stage, reason FROM rejects")
    assert len(rejects) == summary.rejected
    assert all(r["reason"] and r["stage"] for r in rejects.to_dicts())
    reasons = set(rejects["reason"].to_list())
    assert {"truncated", "not_dicom", "zip_member_too_large_or_bomb", "not_a_regular_file"} <= reasons
    assert not (tmp_path / "escaped.dcm").exists() and not list(tmp_path.rglob("escaped*"))
    # a second run adds nothing and still accounts for everything
    again = ingest(root, [src], key_file=key, workers=1, file_timeout=60)
    assert again.seen == n_inputs and again.ingested == 0
    assert again.duplicates + again.rejected == n_inputs
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]


@pytest.mark.parametrize("depth", [50, 5000])
def test_deep_nesting_is_rejected_or_ingested_in_process(tmp_path: Path, depth: int) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "deep.dcm").write_bytes(deep_nesting(depth))
    root, key = new_lake(tmp_path)
    summary = ingest(root, [tmp_path / "src"], key_file=key)
    assert summary.seen == 1 and summary.ingested + summary.rejected == 1
