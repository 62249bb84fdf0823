"""The console never shows a value from an input file; library warnings become reason codes.

A PHI-seeded corpus (synthetic patients with distinctive identifiers, deliberately invalid values
that make pydicom warn, and pydicom's test files that make the pixel decoders fail or fall back)
is ingested through the real command line in a subprocess, with and without ``-v`` and with one
and two workers; stdout and stderr are searched for every seeded identifier, every original UID
and date of every input file, and every source path and file name.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom import config
from pydicom.data import get_testdata_file
from pydicom.misc import warn_and_log

import lake
import lake.cli.info_cmd
from lake import diagnostics
from lake.cli import main
from lake.ingest import ingest
from lake.testing.synthetic import SYNTHETIC_ROOT, PatientSpec, make_cohort, make_instance

REPO = Path(lake.__file__).resolve().parents[1]
INVALID_UID = "1.2.123.ABC.4471"
SEEDED = PatientSpec(
    name="VANTABLACK^PERPETUA",
    patient_id="ZQ77123",
    birth_date="19410302",
    accession_prefix="ACCZX",
    institution="QWERTYUIOP MEMORIAL CLINIC",
    physician="OBSIDIAN^HIERONYMUS",
)
#: pydicom test files whose decoding printed the demo's four tracebacks, and a truncated JPEG 2000.
DECODER_FILES = (
    "JPEG-lossy.dcm",  # libjpeg fails, Pillow has no 12-bit JPEG: another plugin decodes it
    "JPEG2000-embedded-sequence-delimiter.dcm",  # openjpeg fails on the header, Pillow sees a bomb
    "emri_small_jpeg_2k_lossless_too_short.dcm",  # pydicom-data: truncated
)


@dataclass
class Corpus:
    source: Path
    forbidden: list[str]  # nothing of this may reach the console


def _invalid_instance(folder: Path) -> list[Path]:
    """Files of SEEDED with values pydicom warns about, and the same file truncated."""
    root = SYNTHETIC_ROOT + "4242."
    study, series, sop = root + "1", root + "2", root + "3"
    SEEDED.uids.extend([study, series, sop, INVALID_UID])
    with config.disable_value_validation():
        ds = make_instance(SEEDED, study, series, sop, INVALID_UID, date(1987, 6, 15), 0, accession="ACCZX870615")
        ds.ContentDate = "198706151"  # a DA one digit too long
        ds.InstanceNumber = "9182"  # made a bad IS below
        ds.SliceThickness = "8.6421"  # made a bad DS below
        ds.InstitutionName = SEEDED.institution + " " + "EXTENDED WING " * 5  # longer than LO allows
        ds.OperatorsName = "OPERATOR^" + "VANTABLACK" * 8  # a PN component that is too long
        ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = sop + "  "  # padded with spaces, not NUL
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    assert data.count(b"9182") == 1 and data.count(b"8.6421") == 1
    data = data.replace(b"9182", b"9A82").replace(b"8.6421", b"8.64Z1")
    folder.mkdir(parents=True)
    whole = folder / "VANTABLACK_ZQ77123_invalid.dcm"
    whole.write_bytes(data)
    cut = folder / "VANTABLACK_ZQ77123_truncated.dcm"
    cut.write_bytes(data[: len(data) * 2 // 3])
    return [whole, cut]


def _values(path: Path) -> list[str]:
    """Every UID and date (DA, DT) in a file, as pydicom reads it."""
    with warnings.catch_warnings(), config.disable_value_validation():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            elements = list(ds.file_meta.iterall()) + list(ds.iterall())
        except Exception:
            return []
    out = []
    for elem in elements:
        if elem.VR not in ("UI", "DA", "DT") or elem.value in (None, ""):
            continue
        values = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
        for v in values:
            text = str(v).strip("\0 ")
            if len(text) >= 6:
                out.append(text[:8] if elem.VR in ("DA", "DT") else text)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    src = tmp_path_factory.mktemp("phi-source") / "INCOMING_VANTABLACK"
    specs = make_cohort(src / "cohort", n_patients=2, studies_per_patient=1, n_images=2)
    _invalid_instance(src / "VANTABLACK_PERPETUA_ZQ77123")
    decoders = src / "PERPETUA_decoders"
    decoders.mkdir()
    for name in DECODER_FILES:
        found = get_testdata_file(name, download=False)
        if found:
            shutil.copy(str(found), decoders / f"ZQ77123_{name}")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    forbidden = {str(src), src.name}
    for spec in [*specs, SEEDED]:
        forbidden.update(spec.identifiers())
        forbidden.update([spec.name, spec.patient_id, spec.birth_date, spec.accession_prefix, spec.phone])
    forbidden.update(["ACCZX870615", "198706151", "9A82", "8.64Z1", "EXTENDED WING", "19870615"])
    for path in files:
        forbidden.update([path.name, path.stem, str(path.parent.relative_to(src.parent))])
        forbidden.update(_values(path))
    assert INVALID_UID in forbidden and SEEDED.name in forbidden
    return Corpus(src, sorted(s for s in forbidden if s))


def _leaks(text: str, forbidden: list[str]) -> list[str]:
    return [s for s in forbidden if s in text]


def _lake_cli(*args: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, LAKE_HOME=str(home), PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        [sys.executable, "-m", "lake", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def _vault_entries(home: Path) -> list[dict[str, object]]:
    logs = sorted(home.glob("keys/*.vault/runs/*.jsonl"))
    assert len(logs) == 1, logs
    return [json.loads(line) for line in logs[0].read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "workers"),
    [(["-v"], "1"), ([], "1"), ([], "2"), (["-v"], "2")],
    ids=["verbose-1-worker", "plain-1-worker", "plain-2-workers", "verbose-2-workers"],
)
def test_ingest_console_holds_no_phi(corpus: Corpus, tmp_path: Path, flags: list[str], workers: str) -> None:
    home, lk = tmp_path / "home", tmp_path / "lake"
    # -v after the command when there are two workers: both places are accepted.
    args = [*flags, "ingest", str(corpus.source), "--lake", str(lk), "--workers", workers]
    if workers == "2":
        args = ["ingest", str(corpus.source), "--lake", str(lk), "--workers", workers, *flags]
    done = _lake_cli(*args, home=home, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _leaks(done.stdout, corpus.forbidden) == []
    assert _leaks(done.stderr, corpus.forbidden) == []
    assert "Traceback" not in done.stderr
    assert "WARNING" not in done.stderr and "ERROR" not in done.stderr
    # The summary counts the warnings by code ...
    line = next(x for x in done.stdout.splitlines() if x.startswith("warnings: "))
    for code in ("pydicom:invalid_value_vr_ui", "pydicom:invalid_value_vr_is", "pydicom:value_too_long_vr_lo"):
        assert f"{code} 1" in line, line
    assert "decoder:libjpeg_failed" in line and "decoder:openjpeg_failed" in line
    # ... and the vault's run log holds the messages, next to the real paths.
    entries = _vault_entries(home)
    seeded = next(e for e in entries if str(e["path"]).endswith("VANTABLACK_ZQ77123_invalid.dcm"))
    assert seeded["outcome"] == "ingested"
    messages = " ".join(str(w["message"]) for w in seeded["warnings"])  # type: ignore[attr-defined]
    assert INVALID_UID in messages and "9A82" in messages
    assert {w["code"] for w in seeded["warnings"]} >= {"pydicom:invalid_value_vr_ui"}  # type: ignore[attr-defined]
    jpeg = next(e for e in entries if str(e["path"]).endswith("JPEG-lossy.dcm"))
    assert any("libjpeg" in str(w["message"]) for w in jpeg["warnings"])  # type: ignore[attr-defined]


@pytest.mark.slow
def test_quiet_ingest_prints_only_the_summary(corpus: Corpus, tmp_path: Path) -> None:
    home, lk = tmp_path / "home", tmp_path / "lake"
    done = _lake_cli("-q", "ingest", str(corpus.source), "--lake", str(lk), "--workers", "2", home=home, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar, no info line, no warning
    lines = done.stdout.splitlines()
    assert lines[0].startswith("seen ") and any(x.startswith("warnings: ") for x in lines)
    assert _leaks(done.stdout, corpus.forbidden) == []
    again = _lake_cli("ingest", "-q", str(corpus.source), "--lake", str(lk), home=home, cwd=tmp_path)
    assert again.returncode == 0 and again.stderr == ""
    assert again.stdout.startswith("seen ")


@pytest.mark.slow
def test_demo_prints_no_traceback(tmp_path: Path) -> None:
    argv = ("demo", "--from-test-files", "--lake", str(tmp_path / "demo"), "--no-progress")
    done = _lake_cli(*argv, home=tmp_path / "home", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # stderr holds one line only: where the new lake's key is (no traceback, no library output)
    assert done.stderr.splitlines() == [next(x for x in done.stderr.splitlines() if x.startswith("created lake "))]
    assert "keep it safe and out of the lake" in done.stderr
    warned = next(x for x in done.stdout.splitlines() if x.startswith("warnings: "))
    assert "decoder:libjpeg_failed 1" in warned and "decoder:decompression_bomb 1" in warned
    assert "1.2.123.456.78.9.0123" not in done.stdout  # badVR.dcm's invalid UID, seen by pydicom


def test_in_process_ingest_prints_nothing(corpus: Corpus, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    summary = ingest(tmp_path / "lake", [corpus.source], workers=1)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert summary.warnings["pydicom:invalid_value_vr_ui"] >= 1
    assert summary.warnings["decoder:libjpeg_failed"] == 1
    assert summary.to_dict()["warnings"] == dict(sorted(summary.warnings.items()))
    assert _leaks(json.dumps(summary.to_dict()), corpus.forbidden) == []


def _boom(args: object) -> int:
    try:
        {}["secret-key-value"]
    except KeyError as exc:
        raise ValueError("secret-value 1.2.826.0.1.3680043.9.7777.55") from exc
    return 0


@pytest.mark.parametrize("verbose", [False, True])
def test_internal_error_shows_type_never_message(
    verbose: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(lake.cli.info_cmd, "run", _boom)
    code = main([*(["-v"] if verbose else []), "info", "--lake", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 70
    assert "secret" not in out + err and "1.2.826" not in out + err
    assert "lake info: internal error (ValueError)" in err
    if verbose:
        assert "Traceback" in err and "in _boom" in err and "test_console_phi.py" in err
        assert "KeyError" in err  # the cause's type and stack too
    else:
        assert "Traceback" not in err and "run with -v for the stack" in err


def _warns(args: object) -> int:
    warnings.warn("secret-value in a library warning", UserWarning, stacklevel=1)
    logging.getLogger("pydicom").warning("Invalid value for VR UI: 'secret-uid-9.9'")
    logging.getLogger("somelib.sub").error("secret-value from another library")
    logging.getLogger("lake.test").warning("a lake message")
    return 0


@pytest.mark.parametrize("verbose", [False, True])
def test_library_messages_in_the_cli_process_show_codes_only(
    verbose: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(lake.cli.info_cmd, "run", _warns)
    root_handlers, lake_handlers = logging.getLogger().handlers[:], logging.getLogger("lake").handlers[:]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main([*(["-v"] if verbose else []), "info", "--lake", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "secret" not in err
    assert "lake info: a lake message" in err
    if verbose:
        assert "pydicom:invalid_value_vr_ui" in err and "somelib:error" in err and "UserWarning" in err
    else:
        assert err.strip() == "lake info: a lake message"
    # main() leaves logging as it found it (it may run many times in one process).
    assert logging.getLogger().handlers == root_handlers and logging.getLogger("lake").handlers == lake_handlers


def test_quiet_and_verbose_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["-q", "info", "-v", "--lake", "x"])
    assert exc.value.code == 2
    assert "-v/--verbose" in capsys.readouterr().err


def test_codes_never_quote_the_message() -> None:
    record = logging.LogRecord("pydicom", logging.WARNING, __file__, 1, "Invalid value for VR UI: '%s'", ("9.9",), None)
    assert diagnostics.classify_record(record) == "pydicom:invalid_value_vr_ui"
    odd = logging.LogRecord("some.lib", logging.WARNING, __file__, 1, "ZQ77123 has 1.2.3 on 19870615", (), None)
    assert diagnostics.classify_record(odd) == "some:warning"
    try:
        raise RuntimeError("ZQ77123")
    except RuntimeError:
        failing = logging.LogRecord("pydicom.pixels.decoders.base", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    assert diagnostics.classify_record(failing) == "decoder:RuntimeError"
    with diagnostics.capture() as caught:
        warnings.warn("VANTABLACK ZQ77123", UserWarning, stacklevel=1)
        logging.getLogger("pydicom").warning("Invalid value for VR DA: 'ZQ77123'")
    results = caught.results()
    codes = sorted(w.code for w in results)
    assert codes[0] == "pydicom:invalid_value_vr_da" and codes[1].endswith(":UserWarning"), codes
    assert all("ZQ77123" not in w.code and "ZQ77123" not in repr(w) for w in results)


def test_capture_nests_and_counts_warn_and_log_once() -> None:
    with diagnostics.capture() as outer:
        with diagnostics.capture():
            warn_and_log("Invalid value for VR UI: '1.2.X'")  # a warning and a log record
        with diagnostics.capture(forward=False):
            logging.getLogger("pydicom").warning("dropped")
    assert [(w.code, w.count) for w in outer.results()] == [("pydicom:invalid_value_vr_ui", 1)]
