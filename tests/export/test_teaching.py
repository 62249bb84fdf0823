"""``lake export teaching``: the set, proven with dciodvfy (dicom3tools), Orthanc + dcmsend and Chromium.

The tools are Debian packages (``.ci/run`` installs them); each test skips, naming the tool, where
one is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

import lake
from lake.cli import main
from lake.errors import ExportError
from lake.export import export_teaching
from lake.ingest import ingest
from lake.testing.orthanc import AET, OrthancUnavailable, run_orthanc
from lake.testing.synthetic import PatientSpec, write_study
from tests.export.conftest import ExportLake

ALL_STUDIES = "SELECT DISTINCT StudyInstanceUID FROM instances ORDER BY StudyInstanceUID"
NOTES_CSV = (
    "case,title,history,findings,diagnosis,discussion\n1,Case of the week,Headache,Nothing,DIAGNOSIS-ALPHA,Why\n"
)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package; .ci/run installs it)")
    return path


@pytest.fixture(scope="module")
def exported(export_lake: ExportLake, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teaching") / "set"
    notes = out.parent / "notes.csv"
    notes.write_text(NOTES_CSV, encoding="utf-8")
    export_teaching(export_lake.open(), out, sql=ALL_STUDIES, make_zip=True, title="Neuro <teaching>", notes=notes)
    return out


def _dicom_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("IM*") if p.is_file())


# -- the set ---------------------------------------------------------------------------------------
def test_the_set_holds_every_stored_instance_with_its_header_pixels_and_marks(
    export_lake: ExportLake, exported: Path
) -> None:
    lk = export_lake.open()
    rows = {r["SOPInstanceUID"]: r for r in lk.sql("SELECT * FROM instances").to_dicts()}
    files = _dicom_files(exported)
    assert len(files) == len(rows) == 9
    for path in files:
        ds = dcmread(path)
        row = rows[str(ds.SOPInstanceUID)]
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.PatientIdentityRemoved == "YES" and "DeidentificationMethodCodeSequence" in ds
        assert ds.PatientID == row["PatientID"] and ds.StudyInstanceUID == row["StudyInstanceUID"]
        assert np.array_equal(ds.pixel_array.reshape(lk.pixels(ds.SOPInstanceUID).shape), lk.pixels(ds.SOPInstanceUID))
    records = dcmread(exported / "DICOMDIR").DirectoryRecordSequence
    images = [r for r in records if r.DirectoryRecordType == "IMAGE"]
    assert {str(r.ReferencedSOPInstanceUIDInFile) for r in images} == set(rows)
    for record in images:  # each record names its file (File ID components under the DICOMDIR's folder)
        assert (
            dcmread(exported.joinpath(*record.ReferencedFileID)).SOPInstanceUID == record.ReferencedSOPInstanceUIDInFile
        )
    assert len([r for r in records if r.DirectoryRecordType == "STUDY"]) == 5


def test_nothing_of_the_sources_identifiers_is_in_any_exported_file(export_lake: ExportLake, exported: Path) -> None:
    seeded = {s for spec in export_lake.specs for s in spec.identifiers() if len(s) >= 4}
    archive = exported.with_name("set.zip")
    for path in [*exported.rglob("*"), archive]:
        if path.is_file():
            data = path.read_bytes().upper()
            found = [s for s in seeded if s.upper().encode() in data]
            assert not found, f"{path.name} holds {found}"


def test_manifest_records_snapshot_options_and_counts_and_a_runs_row_is_added(
    export_lake: ExportLake, exported: Path
) -> None:
    lk = export_lake.open()
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["lake_id"] == lk.config.lake_id
    assert manifest["snapshot"]["instances"] == lk.snapshot().versions["instances"]
    assert manifest["selection"] == {"sql": ALL_STUDIES}
    assert manifest["options"] == {"title": "Neuro <teaching>", "zip": True, "notes": True}
    assert manifest["counts"]["instances"] == 9 and manifest["counts"]["quarantined"] == 0
    assert sorted(manifest["files"]) == sorted(lk.sql("SELECT SOPInstanceUID FROM instances")["SOPInstanceUID"])
    assert manifest["cases"][0]["note"]["diagnosis"] == "DIAGNOSIS-ALPHA"
    runs = lk.sql("SELECT * FROM runs WHERE run_id = ?", [manifest["run_id"]]).to_dicts()
    assert len(runs) == 1 and runs[0]["operation"] == "export-teaching" and runs[0]["outcome"] == "ok"
    assert json.loads(runs[0]["counts"])["instances"] == 9


def test_the_page_escapes_text_and_the_zip_holds_the_folder(exported: Path) -> None:
    import zipfile

    page = (exported / "index.html").read_text()
    assert "Neuro &lt;teaching&gt;" in page and "<teaching>" not in page
    assert page.count("<img ") == 5 and "DIAGNOSIS-ALPHA" in page
    with zipfile.ZipFile(exported.with_name("set.zip")) as archive:
        names = set(archive.namelist())
    assert {"set/DICOMDIR", "set/index.html", "set/manifest.json"} <= names


def test_quarantined_instances_are_left_out_and_counted(tmp_path: Path) -> None:
    src = tmp_path / "src"
    spec = PatientSpec("ROE^JANE", "MRN777001", "19700101", "ACCQ")
    write_study(spec, src / "ct", date(1987, 6, 2), 2)
    burned = write_study(spec, src / "b", date(1987, 6, 9), 1)
    ds = dcmread(burned[0])
    ds.BurnedInAnnotation = "YES"
    ds.save_as(burned[0])
    key_file = tmp_path / "keys" / "lake.key"
    lake.init(tmp_path / "lake", key_file=key_file, burned_in_policy="quarantine")
    ingest(tmp_path / "lake", [src], key_file=key_file, workers=1)
    lk = lake.open(tmp_path / "lake", key_file=key_file)
    assert lk.sql("SELECT count(*) AS n FROM instances WHERE pixel_status = 'quarantined'")["n"][0] == 1
    done = export_teaching(lk, tmp_path / "out", sql=ALL_STUDIES)
    assert (done.instances, done.quarantined) == (2, 1)
    assert len(_dicom_files(tmp_path / "out")) == 2
    assert "1 quarantined" in (tmp_path / "out" / "index.html").read_text()


# -- refusals: nothing is left behind ---------------------------------------------------------------
def test_outputs_inside_a_lake_or_the_key_folder_or_not_empty_are_refused(
    export_lake: ExportLake, tmp_path: Path
) -> None:
    lk = export_lake.open()
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    for out, why in (
        (export_lake.root / "tables" / "out", "inside the lake"),
        (export_lake.key_file.parent / "out", "keys or a vault"),
        (full, "not empty"),
    ):
        with pytest.raises(ExportError, match=why):
            export_teaching(lk, out, sql=ALL_STUDIES)
        assert not (out / "DICOMDIR").exists()
    assert not (export_lake.root / "tables" / "out").exists() and not (export_lake.key_file.parent / "out").exists()


def test_a_failed_export_removes_what_it_created_and_records_a_failed_run(
    export_lake: ExportLake, tmp_path: Path
) -> None:
    lk = export_lake.open()
    bad = tmp_path / "notes.csv"
    bad.write_text("case,diagnosis\n99,X\n")
    out = tmp_path / "new" / "set"
    with pytest.raises(ExportError, match="case 99 is not one of the 5 exported cases"):
        export_teaching(lk, out, sql=ALL_STUDIES, notes=bad, make_zip=True)
    with pytest.raises(ExportError, match="no StudyInstanceUID column"):
        export_teaching(lk, out, sql="SELECT DISTINCT SeriesInstanceUID FROM instances")
    assert not (tmp_path / "new").exists()
    failed = lk.sql("SELECT count(*) AS n FROM runs WHERE operation = 'export-teaching' AND outcome = 'failed'")
    assert failed["n"][0] >= 2


def test_the_command_exports_a_saved_cohort(
    export_lake: ExportLake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "ct.json"
    sql = "SELECT DISTINCT PatientID, StudyInstanceUID FROM instances WHERE Modality = 'CT'"
    key = ["--key-file", str(export_lake.key_file)]
    assert main(["cohort", "save", "--lake", str(export_lake.root), "--sql", sql, "--out", str(manifest)]) == 0
    out = tmp_path / "set"
    assert (
        main(
            ["export", "teaching", "--lake", str(export_lake.root), "--cohort", str(manifest), "--out", str(out), *key]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "exported 3 studies" in printed
    assert json.loads((out / "manifest.json").read_text())["selection"]["cohort_hash"]


# -- dciodvfy ---------------------------------------------------------------------------------------
#: Messages dciodvfy gives exported files that the stored instance implies, with the reason.
ACCEPTED = {
    # the pseudonym written in PatientName has no "^" (it is one opaque token, not a person's name)
    "Retired Person Name form": "pseudonymised PatientName",
    # StudyID is emptied by the profile (Table E.1-1: Z); the DICOMDIR record gets the case number
    "needed to build DICOMDIR - Study ID": "StudyID emptied by de-identification",
    # Z (zero length) is the profile's action for these Type 2 attributes
    "Laterality": "emptied by the profile (Z), Type 2",
}


def _dciodvfy(path: Path) -> set[str]:
    run = subprocess.run([_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = {line.strip() for line in (run.stdout + run.stderr).splitlines()}
    return {line for line in lines if line.startswith(("Error", "Warning"))}


def _without_values(messages: set[str]) -> set[str]:
    import re

    return {re.sub(r"= <[^>]*>", "= <>", m) for m in messages}


def test_every_exported_file_passes_dciodvfy_but_for_what_the_stored_instance_implies(
    export_lake: ExportLake, exported: Path
) -> None:
    sources = export_lake.sources()
    for path in _dicom_files(exported):
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        before = _without_values(_dciodvfy(sources[uid]))
        new = {m for m in _without_values(_dciodvfy(path)) - before if not any(a in m for a in ACCEPTED)}
        new_errors = {m for m in new if m.startswith("Error")}
        assert not new_errors, f"{path.relative_to(exported)} ({sources[uid].name}): {sorted(new_errors)}"
    directory_errors = {m for m in _dciodvfy(exported / "DICOMDIR") if m.startswith("Error")}
    assert not directory_errors


# -- Orthanc ----------------------------------------------------------------------------------------
def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    try:
        with run_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
            yield server.url, server.dicom_port
    except OrthancUnavailable as exc:
        pytest.skip(str(exc))


def test_orthanc_accepts_the_set_over_c_store_and_lists_it_over_qido_rs(
    export_lake: ExportLake, exported: Path, orthanc: tuple[str, int]
) -> None:
    url, port = orthanc
    files = [str(p) for p in _dicom_files(exported)]
    run = subprocess.run(
        [_tool("dcmsend"), "-aec", AET, "127.0.0.1", str(port), *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lk = export_lake.open()
    expected = {
        r["StudyInstanceUID"]: (r["series"], r["instances"])
        for r in lk.sql(
            "SELECT StudyInstanceUID, count(DISTINCT SeriesInstanceUID) AS series, count(*) AS instances "
            "FROM instances GROUP BY ALL"
        ).to_dicts()
    }
    studies = _get(url + "/dicom-web/studies?includefield=00201206&includefield=00201208")
    assert isinstance(studies, list)
    got = {s["0020000D"]["Value"][0]: (s["00201206"]["Value"][0], s["00201208"]["Value"][0]) for s in studies}
    assert got == expected
    for study, (n_series, n_instances) in expected.items():
        series = _get(f"{url}/dicom-web/studies/{study}/series?includefield=00201209")
        assert isinstance(series, list) and len(series) == n_series
        assert sum(s["00201209"]["Value"][0] for s in series) == n_instances


# -- Chromium ---------------------------------------------------------------------------------------
_CHECK = """
<script>
window.addEventListener('load', function(){
  var shown = function(el){ return el.checkVisibility(); };  // false inside a closed <details>
  var diagnosis = document.querySelector('#case-1 .diagnosis');
  var out = {images: [], hiddenAtLoad: !shown(diagnosis)};
  document.querySelectorAll('img').forEach(function(i){ out.images.push(i.complete && i.naturalWidth > 0); });
  document.querySelector('#case-1 details.answer summary').click();
  out.shownAfterClick = shown(diagnosis);
  document.querySelector('#case-1 details.answer summary').click();
  out.hiddenAgain = !shown(diagnosis);
  var box = document.getElementById('unknown-mode');
  box.click();
  out.shownWithoutUnknownMode = shown(diagnosis);
  var pre = document.createElement('pre'); pre.id = 'lake-check'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def test_index_page_in_chromium_loads_every_thumbnail_and_hides_the_diagnosis_until_clicked(
    exported: Path, tmp_path: Path
) -> None:
    import re

    browser = _tool("chromium")
    check = exported / "lake-check.html"  # beside index.html, so the thumbnails' relative paths hold
    check.write_text((exported / "index.html").read_text().replace("</body>", _CHECK + "</body>"))
    try:
        run = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                check.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        check.unlink()
    found = re.search(r'<pre id="lake-check">(.*?)</pre>', run.stdout)
    assert found, run.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"'))
    assert result["images"] == [True] * 5
    assert result["hiddenAtLoad"] and result["shownAfterClick"] and result["hiddenAgain"]
    assert result["shownWithoutUnknownMode"]
