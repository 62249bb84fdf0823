"""Every notebook's code cells run top to bottom against a small lake (no Jupyter kernel needed)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

from lake.ingest import ingest
from lake.testing.synthetic import make_cohort

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    matplotlib.use("Agg")
    make_cohort(tmp_path / "src", n_patients=2, studies_per_patient=2, n_images=3)
    ingest(tmp_path / "lake", [tmp_path / "src"])
    monkeypatch.setenv("LAKE", str(tmp_path / "lake"))
    monkeypatch.chdir(tmp_path)
    cells = json.loads(notebook.read_text())["cells"]
    namespace: dict[str, object] = {"__name__": "__notebook__"}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{notebook.name}", "exec"), namespace)
    assert "lk" in namespace
