"""The distribution: the wheel and sdist hold every schema file and py.typed; package data is read
through importlib.resources; the zarr codec entry points match the codecs; lake docs needs a checkout."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import lake
from lake.catalog import docs
from lake.cli import main
from lake.errors import NotASourceCheckoutError
from lake.headers.schema import table_names
from lake.pixels.codecs import IMAGE_CODEC_CLASSES
from lake.resources import schema_dir, source_checkout

ROOT = Path(lake.__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"


def _schema_files() -> list[str]:
    files = sorted(p.relative_to(SCHEMAS).as_posix() for p in SCHEMAS.rglob("*") if p.is_file())
    assert any(f.startswith("tables/") for f in files) and any(f.startswith("views/") for f in files)
    assert {"deid/ps3.15-table-e.1-1.json", "deid/private-safelist.toml"} <= set(files)
    return files


def test_package_schemas_is_the_top_level_folder() -> None:
    """``lake/schemas`` points at ``schemas/`` (one source), and the readers see every table."""
    assert (ROOT / "lake" / "schemas").resolve() == SCHEMAS.resolve()
    assert table_names() == sorted(p.stem for p in (SCHEMAS / "tables").glob("*.toml"))
    assert {p.name for p in schema_dir("views").iterdir()} == {p.name for p in (SCHEMAS / "views").iterdir()}
    assert source_checkout() == ROOT


def test_no_module_computes_paths_from_its_own_file() -> None:
    """Package data goes through lake.resources; ``Path(__file__).parents[...]`` breaks in a wheel."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "lake").rglob("*.py")
        if re.search(r"__file__\)?\.(resolve\(\)\.)?parents?\b", p.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_zarr_codec_entry_points_name_every_image_codec() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = project["entry-points"]["zarr.codecs"]
    expected = {cls.codec_name: f"{cls.__module__}:{cls.__qualname__}" for cls in IMAGE_CODEC_CLASSES.values()}
    assert declared == expected


def test_docs_refuses_outside_a_source_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(docs, "DOCS_PATH", None)  # what an installed wheel sees
    with pytest.raises(NotASourceCheckoutError, match="source checkout"):
        docs.write()
    for argv in (["docs"], ["docs", "--check"], ["docs", "--output", str(tmp_path / "t.md")]):
        assert main(argv) == 2
        assert "source checkout" in capsys.readouterr().err
    assert not (tmp_path / "t.md").exists()


@pytest.mark.slow
def test_wheel_and_sdist_hold_every_schema_file(tmp_path: Path) -> None:
    """Build as a user would (sdist, then the wheel from it) from a copy of the checkout."""
    pytest.importorskip("build", reason="needs the test extras (pip install -e '.[test]')")
    pytest.importorskip("setuptools", minversion="70.1", reason="needs setuptools>=70.1 (the test extras)")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "lake", src / "lake", symlinks=True, ignore=ignore)
    shutil.copytree(SCHEMAS, src / "schemas", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in in_wheel if n.endswith(".dist-info/entry_points.txt"))
    with tarfile.open(sdist) as tf:
        in_sdist = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    expected = [f"lake/schemas/{f}" for f in _schema_files()]
    assert [f for f in expected if f not in in_wheel] == []
    assert [f for f in expected if f not in in_sdist] == []
    assert "lake/py.typed" in in_wheel and "lake/resources.py" in in_wheel
    assert "[zarr.codecs]" in entry_points and "lake.gradient = lake.pixels.codecs:GradientCodec" in entry_points
    assert "lake = lake.cli:main" in entry_points
