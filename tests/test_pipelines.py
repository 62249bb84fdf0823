from __future__ import annotations

import sys
from pathlib import Path

import lake
from lake.testing.synthetic import make_cohort

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))

import archive_to_lake


def test_job_file_builds_lake_with_its_options(tmp_path: Path) -> None:
    make_cohort(tmp_path / "export", n_patients=1, studies_per_patient=2, n_images=2)
    job = tmp_path / "job.toml"
    job.write_text(
        'lake = "lk"\nsources = ["export"]\nworkers = 1\n'
        '[deid]\noptions = ["retain_longitudinal_full_dates"]\ndate_offset_days = [10, 20]\n'
    )
    assert archive_to_lake.run(job, show_progress=False) == 0
    lk = lake.open(tmp_path / "lk")
    assert lk.config.deid.options == ["retain_longitudinal_full_dates"]
    assert lk.sql("SELECT count(*) FROM instances")[0, 0] == 4
    # full dates kept: the original study dates (June 1987) are there
    assert lk.sql("SELECT min(StudyDate) >= DATE '1987-06-01' FROM instances")[0, 0]
    assert archive_to_lake.run(job, show_progress=False) == 0  # idempotent
    assert lk.sql("SELECT count(*) FROM instances")[0, 0] == 4
