"""The command line as users and scripts call it (in-process through ``lake.cli.main``)."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lake.cli import main
from lake.keys import read_key
from lake.testing.synthetic import make_cohort


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    make_cohort(src, n_patients=2, studies_per_patient=1, n_images=2)
    (src / "README.dcm").write_text("not a DICOM file")
    return src


def test_init_creates_key_outside_the_lake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "secrets" / "k.key"
    assert main(["init", str(tmp_path / "lk"), "--key-file", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    config = json.loads((tmp_path / "lk" / "lake.json").read_text())
    secret_hex = key.read_text().strip()
    assert config["key_fingerprint"] == read_key(key).fingerprint
    for path in (tmp_path / "lk").rglob("*"):
        if path.is_file():
            assert secret_hex not in path.read_text(errors="replace")
    assert "fingerprint" in capsys.readouterr().out
    # a second init on the same folder is refused
    assert main(["init", str(tmp_path / "lk"), "--key-file", str(key)]) == 2


def test_init_default_key_location_is_lake_home(tmp_path: Path, lake_home: Path) -> None:
    assert main(["init", str(tmp_path / "lk")]) == 0
    lake_id = json.loads((tmp_path / "lk" / "lake.json").read_text())["lake_id"]
    assert (lake_home / "keys" / f"{lake_id}.key").is_file()


def test_key_inside_lake_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "lk"), "--key-file", str(tmp_path / "lk" / "k.key")]) == 2
    assert "must not be inside the lake" in capsys.readouterr().err


def test_ingest_sql_info(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lk = str(tmp_path / "lk")
    assert main(["ingest", str(corpus), "--lake", lk, "--workers", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "seen 5, ingested 4, duplicates 0, rejected 1" in out
    assert main(["ingest", str(corpus), "--lake", lk, "--strict", "--no-progress"]) == 1  # the reject again
    capsys.readouterr()
    assert main(["sql", "--lake", lk, "SELECT PatientID, StudyDate FROM instances ORDER BY 1", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["PatientID", "StudyDate"] and len(rows) == 5
    assert main(["sql", "--lake", lk, "SELECT count(*) AS n FROM rejects", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 1}]
    assert main(["sql", "--lake", lk, "SELECT * FROM nosuchtable"]) == 2
    assert "tables and views" in capsys.readouterr().err
    assert main(["info", "--lake", lk]) == 0
    info = capsys.readouterr().out
    assert "patients" in info and "instances" in info and "rejected" in info


def test_ingest_with_another_key_is_refused(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lk = str(tmp_path / "lk")
    assert main(["init", lk, "--key-file", str(tmp_path / "a.key")]) == 0
    assert main(["init", str(tmp_path / "other"), "--key-file", str(tmp_path / "b.key")]) == 0
    capsys.readouterr()
    code = main(["ingest", str(corpus), "--lake", lk, "--key-file", str(tmp_path / "b.key"), "--no-progress"])
    assert code == 2
    assert "is not this lake's key" in capsys.readouterr().err


def test_missing_source_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(tmp_path / "nope"), "--lake", str(tmp_path / "lk"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_console_script_runs(tmp_path: Path, corpus: Path) -> None:
    """The installed entry point, as a separate process, with a progress bar on stderr."""
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "lake", "ingest", str(corpus), "--lake", str(tmp_path / "lk"), "--workers", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "files" in proc.stderr and "MB/s" in proc.stderr
    assert "ingested 4" in proc.stdout


def test_verify_and_replicate_show_progress_and_a_summary(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lk = str(tmp_path / "lk")
    assert main(["ingest", str(corpus), "--lake", lk, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["verify", "--lake", lk]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok (") and "verify" in err and "instances" in err
    assert main(["replicate", "--lake", lk, "--to", str(tmp_path / "replica")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("copied ") and "replicate" in err and "files" in err
