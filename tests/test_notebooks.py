"""Every notebook (Jupytext percent format) runs top to bottom in a real Jupyter kernel against a
small longitudinal lake, shows its plots, and writes nothing inside the repository.

Needs the ``test`` extra's ``jupytext``, ``nbclient`` and ``ipykernel`` (skipped without them).
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from lake.ingest import ingest
from lake.testing.synthetic import PatientSpec, write_study

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.py"))
SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}

#: (days after the first study, modality) per patient: follow-ups inside and outside a 180 to 540
#: day window, a modality change, a single study, a gap longer than the window.
HISTORIES = {
    "A": [(0, "CT"), (200, "CT"), (400, "MR"), (700, "CT")],
    "B": [(0, "MR"), (30, "CT"), (300, "CT")],
    "C": [(0, "CT")],
    "D": [(0, "CT"), (1500, "CT")],
}

#: What each notebook must print, given HISTORIES.
EXPECTED = {
    "01_explore_a_lake.py": ["not_dicom"],
    "02_longitudinal_cohort.py": ["2 of 4 patients with a baseline CT have a follow-up 180 to 540 days later"],
    "03_prior_comparison.py": ["4 CT studies with a prior CT volume", "current slice 1 prior slice 1"],
    "04_training_dataset.py": ["((8, 64, 64), 'CT', 0)", "mean HU per series:"],
}


def write_histories(root: Path) -> None:
    for n, (name, history) in enumerate(HISTORIES.items()):
        spec = PatientSpec(f"PATIENT{name}^TEST", f"MRN7700{n}", "19600101", f"ACC{name}")
        for k, (days, modality) in enumerate(history):
            when = date(2011, 3, 1) + timedelta(days=days)
            write_study(spec, root / name / f"s{k}", when, n_images=4, modality=modality, seed=10 * n + k)
    (root / "notes.txt").write_text("not a DICOM file\n")


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    write_histories(src)
    root = tmp_path_factory.mktemp("lakes") / "notebooks"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKE_HOME", str(tmp_path_factory.mktemp("home")))
        summary = ingest(root, [src])
    assert summary.ingested == 4 * sum(len(h) for h in HISTORIES.values())
    return root


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
    assert [p.name for p in NOTEBOOKS] == sorted(EXPECTED)
    assert "*.ipynb" in (REPO / "notebooks" / ".gitignore").read_text().split()  # outputs are never committed
    for path in NOTEBOOKS:
        notebook = jupytext.read(path)
        assert notebook.cells[0].cell_type == "markdown"
        assert any(c.cell_type == "code" and c.source.startswith("%matplotlib inline") for c in notebook.cells)
        assert all(not c.get("outputs") for c in notebook.cells)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_a_kernel(path: Path, lake_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKE", str(lake_dir))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    before = repository_files()
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError with the cell and traceback when a cell fails
    text, images = outputs(notebook)
    for expected in EXPECTED[path.name]:
        assert expected in text, text[-3000:]
    assert images >= 1, "the notebook showed no plot"
    assert repository_files() == before, "the notebook wrote inside the repository"
