"""Start-up structure: ``import lake`` and the CLI parser load no heavy library, ``lake sql`` only what it uses.

Times are measured by ``benchmarks/startup.py``; these tests check the import structure that gives
them (which modules a fresh process has loaded), never a time.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lake
from lake.ingest import ingest
from lake.pixels.codecs import IMAGE_CODEC_CLASSES, supports
from lake.pixels.store import PixelStore
from lake.testing.synthetic import make_cohort

#: Never needed to start the command line or to import lake.
HEAVY = {"dask", "distributed", "zarr", "numba", "deltalake", "pydicom", "imagecodecs", "deid", "polars", "duckdb"}
HEAVY |= {"pyarrow", "numpy", "tqdm", "numcodecs", "pylibjpeg", "openjpeg", "libjpeg"}
#: What a query needs (DuckDB, its Arrow result as polars, the Delta snapshot); the rest stays out.
SQL_NEEDS = {"duckdb", "polars", "pyarrow", "numpy", "deltalake"}


def _fresh(code: str, tmp_path: Path) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter (same ``lake`` as these tests); return the ``out`` dict it fills.

    ``out["modules"]`` is set to the top-level names of every module loaded at the end.
    """
    script = (
        "import json, sys\nout = {}\n"
        + code
        + "\nout['modules'] = sorted({m.split('.')[0] for m in sys.modules})\nprint(json.dumps(out))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(lake.__file__).resolve().parents[1])])}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def _loaded(out: dict[str, object]) -> set[str]:
    modules = out["modules"]
    assert isinstance(modules, list)
    return set(modules)


def test_import_lake_loads_no_heavy_library(tmp_path: Path) -> None:
    loaded = _loaded(_fresh("import lake\nassert lake.__version__", tmp_path))
    assert not loaded & HEAVY, f"import lake loaded {sorted(loaded & HEAVY)}"


def test_cli_parser_builds_without_heavy_libraries(tmp_path: Path) -> None:
    code = "import lake.cli\nparser = lake.cli.build_parser()\nout['help'] = parser.format_help()"
    out = _fresh(code, tmp_path)
    loaded = _loaded(out)
    assert not loaded & HEAVY, f"building the CLI parser loaded {sorted(loaded & HEAVY)}"
    assert "sql" in str(out["help"]) and "ingest" in str(out["help"])  # every command registered


def test_lake_sql_loads_only_what_a_query_needs(tmp_path: Path) -> None:
    """``lake sql`` on a lake with rows: no pydicom (the dictionary is read without it), zarr, dask."""
    make_cohort(tmp_path / "src", n_patients=1, studies_per_patient=1, n_images=2)
    summary = ingest(tmp_path / "lk", [tmp_path / "src"], workers=1)
    assert summary.ingested == 2
    code = (
        "import contextlib, io\nfrom lake.cli import main\nbuf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    out['code'] = main(['sql', '--lake', 'lk', '--format', 'json', "
        "\"SELECT count(*) AS n, dicom_tag('PatientAge') AS tag FROM instances\"])\n"
        "out['stdout'] = buf.getvalue()"
    )
    out = _fresh(code, tmp_path)
    assert out["code"] == 0
    assert json.loads(str(out["stdout"])) == [{"n": 2, "tag": "00101010"}]
    extra = _loaded(out) & (HEAVY - SQL_NEEDS)
    assert not extra, f"lake sql loaded {sorted(extra)}"


def test_lake_sql_as_a_table_loads_only_duckdb_and_deltalake(tmp_path: Path) -> None:
    """The default table output is rendered by DuckDB: no pyarrow, polars or numpy to load."""
    make_cohort(tmp_path / "src", n_patients=1, studies_per_patient=1, n_images=2)
    assert ingest(tmp_path / "lk", [tmp_path / "src"], workers=1).ingested == 2
    code = (
        "import contextlib, io\nfrom lake.cli import main\nbuf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    out['code'] = main(['sql', '--lake', 'lk', \"SELECT count(*) AS n FROM studies\"])\n"
        "out['stdout'] = buf.getvalue()"
    )
    out = _fresh(code, tmp_path)
    assert out["code"] == 0
    assert "│     1 │" in str(out["stdout"])
    extra = _loaded(out) & (HEAVY - {"duckdb", "deltalake"})
    assert not extra, f"lake sql (table) loaded {sorted(extra)}"


def test_dictionary_without_pydicom_equals_pydicom_datadict(tmp_path: Path) -> None:
    code = (
        "from lake.catalog.macros import dictionary_arrow\n"
        "table = dictionary_arrow()\n"
        "out['pydicom_before'] = 'pydicom' in sys.modules\n"
        "from pydicom.datadict import DicomDictionary, keyword_dict\n"
        "with_keyword = set(keyword_dict.values())\n"
        "tags = sorted(t for t in DicomDictionary if t in with_keyword)\n"
        "expected = [[f'{t:08X}', DicomDictionary[t][4], DicomDictionary[t][0], DicomDictionary[t][2], "
        "bool(DicomDictionary[t][3])] for t in tags]\n"
        "columns = [table.column(c).to_pylist() for c in ('tag', 'keyword', 'vr', 'name', 'retired')]\n"
        "out['equal'] = [list(r) for r in zip(*columns)] == expected\n"
        "out['rows'] = table.num_rows"
    )
    out = _fresh(code, tmp_path)
    assert out["pydicom_before"] is False
    assert out["equal"] is True and int(str(out["rows"])) > 4000


def test_zarr_opens_lake_arrays_after_only_import_lake(tmp_path: Path) -> None:
    """The image codecs reach zarr through entry points: a fresh process needs no lake.pixels import."""
    names = {e.name for e in importlib.metadata.entry_points(group="zarr.codecs")}
    if not {c.codec_name for c in IMAGE_CODEC_CLASSES.values()} <= names:
        pytest.skip("the installed lake metadata predates its zarr.codecs entry points: pip install -e . again")
    rng = np.random.default_rng(11)
    frames = rng.integers(0, 4096, size=(2, 24, 20), dtype=np.uint16)
    np.save(tmp_path / "frames.npy", frames)
    codecs = [c for c in IMAGE_CODEC_CLASSES if supports(c, frames.dtype, 1)]
    for codec in codecs:
        PixelStore(tmp_path / "pixels", shard_frames=2, codec=codec.value).write(f"s/{codec.value}", 0, frames, {})
    code = (
        "import lake\nimport numpy as np\nimport zarr\n"
        "out['codecs_before'] = 'lake.pixels.codecs' in sys.modules\n"
        "frames = np.load('frames.npy')\nout['equal'] = {}\n"
        f"for name in {[c.value for c in codecs]!r}:\n"
        "    array = zarr.open_array(store=f'pixels/s/{name}', mode='r')\n"
        "    out['equal'][array.metadata.codecs[0].codecs[0].to_dict()['name']] = "
        "bool(np.array_equal(array[:], frames))"
    )
    out = _fresh(code, tmp_path)
    assert out["codecs_before"] is False  # import lake did not register them: zarr found them itself
    assert out["equal"] == {IMAGE_CODEC_CLASSES[c].codec_name: True for c in codecs}
