"""``lake optimize`` merges the small pixel arrays of a series (lake.pixels.merge): the same values
read for every instance, fewer arrays, a verified lake, and crash-safe between its steps."""

from __future__ import annotations

import shutil
import signal
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import lake
from lake import crashpoints
from lake.catalog.optimize import PIXEL_ARRAYS, optimize
from lake.catalog.tables import table_version
from lake.cli import main
from lake.ingest import ingest
from lake.maintenance.forget import forget
from lake.maintenance.vacuum import vacuum
from lake.maintenance.verify import verify
from lake.pixels import merge
from lake.testing.synthetic import PatientSpec, write_study
from tests.faults.conftest import running

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _series_in_parts(src: Path) -> list[list[Path]]:
    """One CT series of 7 slices written as 3 folders (3, 2 and 2 files), and a second patient's
    series of 2 in one folder: ingested folder by folder, the first series is held by 3 arrays."""
    spec = PatientSpec("MERGE^MARTA", "MRN7001", "19610203", "ACCM")
    files = write_study(spec, src / "tmp-a", date(1990, 3, 4), n_images=7, seed=3)
    parts = [files[:3], files[3:5], files[5:]]
    folders = []
    for n, part in enumerate(parts):
        folder = src / f"part{n}"
        folder.mkdir()
        for f in part:
            f.rename(folder / f.name)
        folders.append(folder)
    other = PatientSpec("SOLO^SAM", "MRN7002", "19700405", "ACCS")
    write_study(other, src / "other", date(1991, 5, 6), n_images=2, seed=4)
    return [[f] for f in folders] + [[src / "other"]]


def _lake(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    root, key = tmp_path / "lake", tmp_path / "lake.key"
    lake.init(root, key_file=key, burned_in_policy="keep-flagged")
    for sources in _series_in_parts(src):
        ingest(root, sources, key_file=key)
    return root, key


def _pixels(root: Path) -> dict[str, np.ndarray]:
    lk = lake.open(root)
    uids = lk.sql("SELECT SOPInstanceUID FROM instances WHERE pixel_array IS NOT NULL").to_series().to_list()
    return {uid: lk.pixels(uid) for uid in uids}


def _arrays(root: Path) -> dict[str, list[tuple[str, int, int]]]:
    """Per series: (array, first frame, frames) of its instances, in slice order."""
    rows = lake.open(root).sql(
        "SELECT SeriesInstanceUID, pixel_array, pixel_frame_start, frame_count FROM instances "
        "WHERE pixel_array IS NOT NULL ORDER BY SeriesInstanceUID, InstanceNumber"
    )
    out: dict[str, list[tuple[str, int, int]]] = {}
    for series, array, start, count in rows.rows():
        out.setdefault(series, []).append((array, start, count))
    return out


def _array_folders(root: Path) -> set[str]:
    return {p.parent.relative_to(root / "pixels").as_posix() for p in (root / "pixels").glob("*/*/zarr.json")}


def test_optimize_merges_the_small_arrays_of_a_series_and_every_instance_reads_the_same(tmp_path: Path) -> None:
    root, _key = _lake(tmp_path)
    before = _pixels(root)
    layout = _arrays(root)
    split = next(s for s, rows in layout.items() if len(rows) == 7)
    solo = next(s for s, rows in layout.items() if len(rows) == 2)
    assert len({a for a, _, _ in layout[split]}) == 3  # one array per ingest
    volume = lake.open(root).volume(split).array

    summary = optimize(root)

    assert summary.arrays is not None
    assert (summary.arrays.arrays_before, summary.arrays.arrays_after) == (3, 1)
    assert (summary.arrays.instances, summary.arrays.frames, summary.arrays.commits) == (7, 7, 1)
    after = _arrays(root)
    merged = after[split]
    assert len({a for a, _, _ in merged}) == 1
    assert [start for _, start, _ in merged] == list(range(7))  # the frames in slice order
    assert after[solo] == layout[solo]  # a series held by one array is left as it is
    _same(before, _pixels(root))
    in_use = {a for rows in after.values() for a, _, _ in rows}
    retired = {a for a, _, _ in layout[split]}
    assert _array_folders(root) == in_use | retired  # kept with the versions of the table that use them
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]
    lk = lake.open(root)
    assert np.array_equal(lk.volume(split).array, volume) and volume.shape[0] == 7
    recorded = lk.sql("SELECT counts FROM runs WHERE operation = 'optimize' ORDER BY finished_at").to_series().to_list()
    assert PIXEL_ARRAYS in recorded[-1] and '"arrays_before": 3' in recorded[-1]

    again = optimize(root)  # nothing small is left: nothing changes
    assert again.arrays is not None and again.arrays.arrays_before == 0
    assert _arrays(root) == after
    ingest(root, [tmp_path / "src" / "other"], key_file=_key)  # a write keeps the retained arrays
    assert _array_folders(root) == in_use | retired

    vacuum(root, retention_hours=0)  # the older versions go, and the arrays only they used
    assert _array_folders(root) == in_use
    _same(before, _pixels(root))
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]


def test_a_snapshot_pinned_before_the_merge_reads_the_same_pixels(tmp_path: Path) -> None:
    """A cohort pinned to the instances version before optimize still reads its frames (from the
    retained arrays) until lake vacuum removes that version."""
    root, _key = _lake(tmp_path)
    before = _pixels(root)
    version = table_version(root / "tables" / "instances")
    optimize(root)
    with lake.open(root).snapshot({"instances": version}) as pinned:
        rows = pinned.sql("SELECT SOPInstanceUID, pixel_array FROM instances WHERE pixel_array IS NOT NULL").rows()
        assert {a for _, a in rows} != {a for rows in _arrays(root).values() for a, _, _ in rows}  # the old layout
        for uid, _array in rows:
            assert np.array_equal(pinned.pixels(uid), before[uid])


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for uid in a:
        assert a[uid].dtype == b[uid].dtype and np.array_equal(a[uid], b[uid]), "an instance reads other values"


def test_arrays_that_read_differently_are_not_merged(tmp_path: Path) -> None:
    """Arrays of one series whose values are interpreted differently (here: signedness) stay apart."""
    root, _key = _lake(tmp_path)
    layout = _arrays(root)
    split = next(s for s, rows in layout.items() if len(rows) == 7)
    first = layout[split][0][0]
    meta = root / "pixels" / first / "zarr.json"
    text = meta.read_text()
    assert '"signed": true' in text
    meta.write_text(text.replace('"signed": true', '"signed": false'))
    (root / "pixels" / first / "fixity.json").unlink()  # the edited metadata: recorded again below
    store = lake.open(root).pixel_store
    from lake.pixels.fixity import record_checksums
    from lake.pixels.store import _array_files

    record_checksums(root / "pixels" / first, _array_files(root / "pixels" / first), None)
    summary = optimize(root)
    assert summary.arrays is not None and (summary.arrays.arrays_before, summary.arrays.arrays_after) == (2, 1)
    arrays = {a for a, _, _ in _arrays(root)[split]}
    assert first in arrays and len(arrays) == 2
    assert store.attributes(first)["signed"] is False


def test_the_command_line_says_what_was_merged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, _key = _lake(tmp_path)
    assert main(["optimize", "--lake", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "pixel arrays: 3 small arrays merged into 1, 7 instances, 7 frames" in out
    assert main(["optimize", "--lake", str(root), "--no-progress"]) == 0
    assert "pixel arrays: no small arrays to merge" in capsys.readouterr().out


def test_commits_are_cut_by_rows_and_each_is_whole(tmp_path: Path) -> None:
    """With a commit every 2 rows, each merged group still switches in one commit of its own rows."""
    root, _key = _lake(tmp_path)
    before = _pixels(root)
    lk = lake.open(root)
    from lake.config import LakePaths

    summary = merge.merge_small_arrays(LakePaths(root), lk.pixel_store, "O-test", commit_rows=2)
    assert summary.commits == 1  # one group of 7 rows: committed as one
    _same(before, _pixels(root))


@pytest.mark.parametrize("point", ["merge.after_array:1", "merge.before_commit:1"])
def test_kill_minus_nine_while_merging_then_optimize_again(tmp_path: Path, point: str) -> None:
    """Killed after the new array is written, or as the rows are about to switch to it: the lake reads
    the same values, and the next optimize leaves the same lake as an uninterrupted one."""
    root, _key = _lake(tmp_path)
    before = _pixels(root)
    reference = tmp_path / "reference"
    shutil.copytree(root, reference)  # the same lake (same UIDs), optimized without a crash
    optimize(reference)
    with running("optimize", "--lake", str(root), "--no-progress", env={crashpoints.CRASH_ENV: point}) as proc:
        assert proc.wait(timeout=120) == -signal.SIGKILL, f"optimize ended without reaching {point}"
    _same(before, _pixels(root))
    optimize(root)
    _same(before, _pixels(root))
    assert _arrays(root) == _arrays(reference)  # the same merged arrays, by the same names
    assert _array_folders(root) == _array_folders(reference)  # nothing the killed run wrote is left
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]


def test_forget_after_a_merge_leaves_no_array_of_the_patient(tmp_path: Path) -> None:
    """The arrays a merge retired (kept for the older versions) go with the patient at once."""
    root, key = _lake(tmp_path)
    layout = _arrays(root)
    split = next(s for s, rows in layout.items() if len(rows) == 7)
    optimize(root)
    assert len(list((root / "pixels" / split).iterdir())) == 4  # the merged array and the 3 it replaced
    query = "SELECT DISTINCT PatientID FROM instances WHERE SeriesInstanceUID = ?"
    patient = lake.open(root).sql(query, [split]).item()
    forget(root, patient=patient, key_file=key)
    assert not (root / "pixels" / split).exists()  # neither the merged array nor the ones it replaced
    report = verify(root, record=False)
    assert report.ok, [str(p) for p in report.problems]
