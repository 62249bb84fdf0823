"""Every operation leaves one audit row without PHI; a foreign key is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lake
from lake.cli import main
from lake.ingest import ingest
from lake.keys import generate_key, write_key
from tests.faults.conftest import new_lake


def test_a_foreign_key_is_refused_with_a_clear_message(
    tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _key = new_lake(tmp_path)
    other = tmp_path / "other.key"
    write_key(generate_key(), other)
    assert main(["ingest", str(corpus), "--lake", str(root), "--key-file", str(other), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is not this lake's key" in err and "--key-file" in err
    assert lake.open(root).info()["instances"] == 0


def test_every_operation_is_audited_without_paths(tmp_path: Path, corpus: Path) -> None:
    root, key = new_lake(tmp_path)
    ingest(root, [corpus], key_file=key)
    pseudonym = lake.open(root).sql("SELECT PatientID FROM instances LIMIT 1")[0, 0]
    replica = tmp_path / "replica"
    for args in (
        ["verify", "--lake", str(root)],
        ["vacuum", "--lake", str(root), "--retention-hours", "0"],
        ["replicate", "--lake", str(root), "--to", str(replica)],
        ["restore", "--lake", str(root), "--from", str(replica)],
        ["forget", "--lake", str(root), "--key-file", str(key), "--patient", pseudonym],
    ):
        assert main(args) == 0, args
    runs = lake.open(root).sql("SELECT * FROM runs ORDER BY started_at").to_dicts()
    assert [r["operation"] for r in runs] == ["ingest", "verify", "vacuum", "replicate", "restore", "forget"]
    for row in runs:
        assert row["os_user"] and row["outcome"] in {"ok", "partial"} and row["finished_at"] >= row["started_at"]
        text = row["parameters"] + row["counts"]
        assert str(tmp_path) not in text and pseudonym not in text
        json.loads(row["parameters"]), json.loads(row["counts"])
