"""Every notebook (Jupytext percent format) runs top to bottom in a real Jupyter kernel against a
small longitudinal demo lake, prints the counts known from the demo archive's plan, shows its plots,
and writes nothing inside the repository.

Needs the ``test`` extra's ``jupytext``, ``nbclient`` and ``ipykernel`` (skipped without them).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lake.demo import Archive, StudyRecord
from lake.ingest import ingest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.py"))
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}

#: The notebook whose fallback (no LAKE: the demo built in a temporary folder) builds the lake
#: every notebook then runs on; the others' fallbacks are the same lines.
BUILDER = REPO / "notebooks" / "02_longitudinal_cohort.py"
#: The follow-up window of notebook 02 (days after the baseline CT).
WINDOW = (180, 540)
#: Plots each notebook shows at least.
IMAGES = {
    "01_explore_a_lake.py": 2,
    "02_longitudinal_cohort.py": 2,
    "03_prior_comparison.py": 2,
    "04_training_dataset.py": 1,
}


@dataclass(frozen=True)
class Known:
    """Counts of the demo archive's plan, computed here without the lake."""

    ct_patients: int  # patients with a CT study
    followed: int  # ... whose first CT has a later CT within WINDOW
    cohort_rows: int  # their baselines and follow-ups within WINDOW
    follow_up_cts: int  # CT studies after each patient's first CT
    in_window: int  # ... within WINDOW
    ct_pairs: int  # CT studies with an earlier CT (every demo CT is an abdomen volume)
    volumes: int  # CT and MR series (every one a regular volume)
    volume_patients: int  # patients with a CT or MR series
    rejected: str  # the reject reason of the non-DICOM file added

    def expected(self) -> dict[str, list[str]]:
        """Per notebook, regular expressions its printed text must match."""
        low, high = WINDOW
        e = re.escape
        return {
            "01_explore_a_lake.py": [e(self.rejected)],
            "02_longitudinal_cohort.py": [
                e(
                    f"{self.follow_up_cts} follow-up CTs, {self.in_window} of them "
                    f"{low} to {high} days after the baseline"
                ),
                e(
                    f"{self.followed} of {self.ct_patients} patients with a baseline CT have a follow-up CT "
                    f"{low} to {high} days later"
                ),
                e(f"re-loaded from the manifest: {self.cohort_rows} rows, the same as saved: True"),
                e("no member withdrawn since the cohort was saved"),
            ],
            "03_prior_comparison.py": [
                e(f"{self.ct_pairs} CT studies with a prior CT volume"),
                # the demo re-slices one anatomy on one grid per patient: a point both cover is on a slice of each
                r"current slice \d+ at 0\.0 mm, prior slice \d+ at 0\.0 mm",
            ],
            "04_training_dataset.py": [
                e(
                    f"{self.volumes} series ({self.volumes - self.volume_patients} follow-ups) of "
                    f"{self.volume_patients} patients"
                ),
                e("mean value per series (HU for CT):"),
            ],
        }


def linked_patients(archive: Archive) -> list[list[StudyRecord]]:
    """The lake's patients: a patient's studies with a Patient ID, and each study without one alone."""
    out = []
    for patient in archive.patients:
        out.append([s for s in patient.studies if s.has_patient_id])
        out.extend([s] for s in patient.studies if not s.has_patient_id)
    return [studies for studies in out if studies]


def known(archive: Archive) -> Known:
    low, high = WINDOW
    ct_patients = followed = cohort_rows = follow_up_cts = in_window = ct_pairs = volumes = volume_patients = 0
    for studies in linked_patients(archive):
        cts = sorted(s.study_date for s in studies if s.modality == "CT")
        grey = [s for s in studies if s.modality in ("CT", "MR")]
        volumes += len(grey)
        volume_patients += bool(grey)
        if not cts:
            continue
        ct_patients += 1
        ct_pairs += len(cts) - 1
        follow_up_cts += len(cts) - 1
        window = [d for d in cts[1:] if low <= (d - cts[0]).days <= high]
        in_window += len(window)
        if window:
            followed += 1
            cohort_rows += 1 + len(window)
    return Known(
        ct_patients, followed, cohort_rows, follow_up_cts, in_window, ct_pairs, volumes, volume_patients, "not_dicom"
    )


@dataclass(frozen=True)
class DemoLake:
    root: Path
    home: Path  # LAKE_HOME with its key and vault
    known: Known


def setup_cell(path: Path) -> str:
    """The notebook's first code cell (imports, and the lake: LAKE or the demo), without magics."""
    cell = next(c for c in jupytext.read(path).cells if c.cell_type == "code")
    return "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))


def fallback_lines(path: Path) -> list[str]:
    lines = setup_cell(path).splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("LAKE = "))
    end = next(n for n, line in enumerate(lines) if line.startswith("lk = lake.open(LAKE)"))
    return lines[start : end + 1]


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> DemoLake:
    """The lake a notebook builds without LAKE: the longitudinal demo, in a temporary folder."""
    home = tmp_path_factory.mktemp("home")
    temporary = tmp_path_factory.mktemp("tmp")
    extra = tmp_path_factory.mktemp("extra")
    (extra / "notes.txt").write_text("not a DICOM file\n")
    before = repository_files()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKE_HOME", str(home))
        mp.delenv("LAKE", raising=False)
        mp.setattr(tempfile, "tempdir", str(temporary))  # where tempfile.mkdtemp() creates folders
        namespace: dict[str, Any] = {}
        exec(compile(setup_cell(BUILDER), str(BUILDER), "exec"), namespace)
        root, built = Path(namespace["LAKE"]), namespace["built"]
        assert temporary in root.parents and (root / "lake.json").is_file()
        assert built.summary.rejected == 0 and built.kept is None  # the archive was deleted after the ingest
        assert ingest(root, [extra]).rejected == 1
    assert repository_files() == before, "building the demo wrote inside the repository"
    facts = known(built.archive)
    # the demo must show what the notebooks are about: a follow-up in the window and one outside it
    assert 0 < facts.followed < facts.ct_patients and facts.in_window < facts.follow_up_cts
    assert facts.ct_pairs > 0 and facts.volumes > facts.volume_patients
    return DemoLake(root, home, facts)


def repository_files() -> set[Path]:
    found = set()
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        found.update(Path(folder, f).relative_to(REPO) for f in files if not f.endswith(".pyc"))
    return found


def outputs(notebook: Any) -> tuple[str, int]:
    """(all text the cells printed or showed, number of PNG images shown)."""
    text, images = [], 0
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out["text"])
            data = out.get("data", {})
            text.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(text), images


def test_every_notebook_is_a_percent_script() -> None:
    assert [p.name for p in NOTEBOOKS] == sorted(IMAGES)
    assert "*.ipynb" in (REPO / "notebooks" / ".gitignore").read_text().split()  # outputs are never committed
    for path in NOTEBOOKS:
        notebook = jupytext.read(path)
        assert notebook.cells[0].cell_type == "markdown"
        assert any(c.cell_type == "code" and c.source.startswith("%matplotlib inline") for c in notebook.cells)
        assert all(not c.get("outputs") for c in notebook.cells)


def test_without_a_lake_every_notebook_builds_the_longitudinal_demo_in_a_temporary_folder() -> None:
    """The fixture runs BUILDER's fallback; every notebook has the same one."""
    expected = fallback_lines(BUILDER)
    assert 'os.environ.get("LAKE") or Path(tempfile.mkdtemp(' in expected[0]
    assert any("build_demo(LAKE, ArchiveSpec(patients=" in line for line in expected)
    for path in NOTEBOOKS:
        assert fallback_lines(path) == expected, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_a_kernel(
    path: Path, demo_lake: DemoLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKE", str(demo_lake.root))
    monkeypatch.setenv("LAKE_HOME", str(demo_lake.home))  # the cohort manifest is checked against the key
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the manifests the notebooks save go there
    # the kernel imports this checkout's lake, whichever one is installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    before = repository_files()
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError with the cell and traceback when a cell fails
    text, images = outputs(notebook)
    for pattern in demo_lake.known.expected()[path.name]:
        assert re.search(pattern, text), (pattern, text[-3000:])
    assert images >= IMAGES[path.name], f"the notebook showed {images} plots"
    assert repository_files() == before, "the notebook wrote inside the repository"
