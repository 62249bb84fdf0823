"""The snapshot object (one version for queries and pixels) and the `lake cohort` round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lake.cli import main
from lake.cohorts import modality
from lake.errors import NotInLakeError, QueryRefusedError, VersionsVacuumedError
from lake.ingest import ingest
from lake.testing.longitudinal import StudyPlan, newcomer, write_plans
from tests.cohorts.conftest import Built


def test_a_snapshot_keeps_its_versions_for_queries_and_pixels(own: Built, tmp_path: Path) -> None:
    lk = own.open()
    with lk.snapshot() as snap:
        before = snap.sql("SELECT count(*) FROM instances")[0, 0]
        series = snap.sql("SELECT SeriesInstanceUID FROM series ORDER BY 1 LIMIT 1")[0, 0]
        write_plans(tmp_path / "more", [newcomer()])
        ingest(own.root, [tmp_path / "more"], key_file=own.key_file, workers=1)
        assert lk.sql("SELECT count(*) FROM instances")[0, 0] == before + 4  # Lake reads the latest
        assert snap.sql("SELECT count(*) FROM instances")[0, 0] == before
        assert snap.table("instances").collect().height == before
        assert snap.tables_read("SELECT * FROM studies JOIN priors USING (StudyInstanceUID)") == ["instances"]
        volume = snap.volume(series)
        assert np.array_equal(volume.array, lk.volume(series).array)
        assert snap.series_array(series).shape == volume.array.shape
        sop = snap.sql("SELECT SOPInstanceUID FROM instances WHERE SeriesInstanceUID = ? LIMIT 1", [series])[0, 0]
        assert np.array_equal(snap.pixels(sop), lk.pixels(sop))
        with pytest.raises(QueryRefusedError):
            snap.sql(f"SELECT * FROM read_text('{own.key_file}')")
        pinned = lk.snapshot(snap.versions)
        assert pinned.sql("SELECT count(*) FROM instances")[0, 0] == before
        pinned.close()
    with pytest.raises(NotInLakeError, match="closed"):
        snap.sql("SELECT 1")
    with pytest.raises(NotInLakeError, match="no table"):
        lk.snapshot({"visits": 1})
    with pytest.raises(VersionsVacuumedError, match="another lake"):
        lk.snapshot({"instances": 999})


def test_cohort_cli_round_trip(built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lk = built.open()
    query = lk.cohort().filter(modality("CT")).follow_ups(180, 540).sql()
    out = tmp_path / "c.json"
    assert main(["cohort", "save", "--lake", str(built.root), "--sql", query, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "saved cohort (rows 9, patients 4, studies 9) pinned to instances@" in said
    code = main(["cohort", "show", str(out), "--key-file", str(built.key_file), "--format", "json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 9 and {r["PatientID"] for r in rows} == set(lk.sql(query)["PatientID"].to_list())
    # refused like `lake sql`: writes, other files, a manifest inside the lake, an existing one
    assert main(["cohort", "save", "--lake", str(built.root), "--sql", "COPY studies TO 'x.csv'", "--out",
                 str(tmp_path / "x.json")]) == 2  # fmt: skip
    assert "refused" in capsys.readouterr().err
    assert main(["cohort", "save", "--lake", str(built.root), "--sql", query, "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["cohort", "save", "--lake", str(built.root), "--sql", query, "--out",
                 str(built.root / "c.json")]) == 2  # fmt: skip
    assert "inside the lake" in capsys.readouterr().err
    other = tmp_path / "other"
    assert main(["init", str(other), "--key-file", str(tmp_path / "o.key")]) == 0
    capsys.readouterr()
    assert main(["cohort", "show", str(out), "--lake", str(other), "--key-file", str(tmp_path / "o.key")]) == 2
    assert "saved from lake" in capsys.readouterr().err


def test_a_snapshot_pinned_before_an_optimize_computes_series_of_its_own_versions(own: Built, tmp_path: Path) -> None:
    """The series view's stored rows (``series_summary``, written by optimize) describe the latest
    versions only: a snapshot pinned to earlier ones must see the series of its own instances."""
    lk = own.open()
    lk.optimize(force=True)
    plan = newcomer()
    write_plans(tmp_path / "more", [plan])
    ingest(own.root, [tmp_path / "more"], key_file=own.key_file, workers=1)
    with lk.snapshot() as snap:
        pinned = snap.versions
        want = snap.sql("SELECT * FROM series ORDER BY SeriesInstanceUID")
        lk.optimize(force=True)  # a new summary, covering what the snapshot reads and more
        plan.studies.append(StudyPlan(400))
        write_plans(tmp_path / "later", [plan])
        ingest(own.root, [tmp_path / "later"], key_file=own.key_file, workers=1)
        lk.optimize(force=True)
    with lk.snapshot(pinned) as again:
        assert again.sql("SELECT * FROM series ORDER BY SeriesInstanceUID").equals(want)
    assert lk.sql("SELECT count(*) FROM series")[0, 0] > want.height
