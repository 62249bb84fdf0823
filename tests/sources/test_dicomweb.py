"""``lake ingest dicomweb://...``, proven against a real Orthanc loaded with ``dcmsend``.

Each pulled lake must equal the lake built from the same files in a folder (same SOP Instance
UIDs, same rows but the run's own columns), with the same key. Orthanc runs on test-only ports
with remote access off and is stopped by PID (:mod:`lake.testing.orthanc`).
"""

from __future__ import annotations

import subprocess
import threading
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

import lake
from lake.cli import main
from lake.errors import ConfigError, SourceError
from lake.ingest import ingest
from lake.sources.dicomweb import DicomWebSource, _Series, _series_parts, _sop_instance_uid
from lake.sources.filters import PullOptions
from lake.testing.orthanc import Orthanc, dcmsend
from lake.testing.synthetic import PatientSpec, write_study
from tests.sources.helpers import (
    FAST,
    Corpus,
    assert_same_lake,
    kill_mid_pull_and_rerun,
    lake_bytes,
    orthanc_or_skip,
    rows,
)

pytest.importorskip("dicomweb_client", reason="dicomweb-client is a dependency: pip install -e '.[test]'")


# -- the pull equals the folder ---------------------------------------------------------------------
def test_a_pull_equals_the_lake_built_from_the_same_files_and_a_rerun_pulls_nothing(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path
) -> None:
    messages: list[str] = []
    progress: list[Any] = []
    first = ingest(
        tmp_path / "lake", [loaded.dicomweb], key_file=corpus.key_file, pull=FAST, on_progress=progress.append
    )
    n_studies = len(loaded.get("/studies"))
    assert first.ingested == first.seen == len(rows(corpus.folder_lake, corpus.key_file))
    assert first.studies["studies_found"] == first.studies["studies_complete"] == n_studies
    assert first.studies["instances_received"] == first.studies["instances_expected"] == first.seen
    assert [p.studies_done for p in progress] == list(range(1, n_studies + 1))
    assert progress[-1].instances == first.seen and progress[-1].instances_per_second > 0
    assert_same_lake(tmp_path / "lake", corpus)
    second = ingest(
        tmp_path / "lake", [loaded.dicomweb], key_file=corpus.key_file, pull=FAST, on_message=messages.append
    )
    assert (second.seen, second.studies["studies_skipped"], second.studies["studies_pulled"]) == (0, n_studies, 0)
    assert not messages


def test_nothing_of_the_sources_identifiers_is_in_the_lake_or_on_the_console(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["ingest", loaded.dicomweb, "--lake", str(tmp_path / "lake"), "--key-file", str(corpus.key_file)]
    assert main([*args, "--workers", "2", "--max-requests", "2", "--rate", "50"]) == 0
    printed = capsys.readouterr()
    assert "studies: found 8, pulled 8, complete 8, incomplete 0, skipped 0, failed 0" in printed.out
    seeded = {s for spec in corpus.specs for s in spec.identifiers() if len(s) >= 4}
    uids = {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in corpus.files()}
    data = lake_bytes(tmp_path / "lake").upper()
    console = (printed.out + printed.err).upper()
    for value in seeded | uids:
        assert value.upper().encode() not in data, value
        assert value.upper() not in console, value
    assert loaded.url.split("//")[1] not in console  # the PACS's address goes to the vault only


# -- incremental, resumable -------------------------------------------------------------------------
def test_a_second_pull_after_adding_one_study_pulls_only_that_study(corpus: Corpus, tmp_path: Path) -> None:
    with orthanc_or_skip(tmp_path / "orthanc") as server:
        dcmsend(server, corpus.files())
        ingest(tmp_path / "lake", [server.dicomweb], key_file=corpus.key_file, pull=FAST)
        extra = write_study(
            PatientSpec("NEW^PATIENT", "MRN-NEW-01", "19600101", "ACCNEW1"), tmp_path / "new", date(2001, 2, 3), 4
        )
        dcmsend(server, extra)
        again = ingest(tmp_path / "lake", [server.dicomweb], key_file=corpus.key_file, pull=FAST)
    assert again.studies["studies_pulled"] == again.studies["studies_complete"] == 1
    assert again.studies["studies_skipped"] == again.studies["studies_found"] - 1
    assert (again.seen, again.ingested, again.duplicates) == (4, 4, 0)


def test_a_pull_killed_mid_way_and_run_again_gives_the_same_lake(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path
) -> None:
    kill_mid_pull_and_rerun(loaded.dicomweb, tmp_path / "lake", corpus)


def test_a_retrieve_hands_over_the_bytes_the_pacs_stores_without_parsing_and_writing_them_again(
    loaded: Orthanc,
) -> None:
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(loaded.url + "/dicom-web")
    series = loaded.get("/series")[0]
    study = loaded.get(f"/series/{series}/study")["MainDicomTags"]["StudyInstanceUID"]
    uid = loaded.get(f"/series/{series}")["MainDicomTags"]["SeriesInstanceUID"]
    stored = {}
    for instance in loaded.get(f"/series/{series}/instances"):
        with urllib.request.urlopen(f"{loaded.url}/instances/{instance['ID']}/file", timeout=30) as response:
            stored[instance["MainDicomTags"]["SOPInstanceUID"]] = response.read()
    parts = list(_series_parts(client, study, uid))
    assert sorted(parts) == sorted(stored.values())  # byte for byte: no dcmread + dcmwrite on the way
    assert {_sop_instance_uid(p) for p in parts} == set(stored)
    assert _sop_instance_uid(b"not DICOM") == _sop_instance_uid(b"not DICOM") != _sop_instance_uid(b"nor this")


# -- completeness -----------------------------------------------------------------------------------
def test_a_study_short_of_its_reported_count_is_retried_reported_and_pulled_again_next_run(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = DicomWebSource._series_of
    lied: list[str] = []
    lock = threading.Lock()  # studies are listed by several request threads at once

    def one_more(self: DicomWebSource, client: Any, study: Any) -> list[_Series]:
        series = real(self, client, study)
        with lock:  # the PACS reports one instance more than it sends, in one study only
            if lied and lied[0] != study.ref:
                return series
            if not lied:
                lied.append(study.ref)
        series[0].expected = (series[0].expected or 0) + 1
        study.expected += 1
        return series

    monkeypatch.setattr(DicomWebSource, "_series_of", one_more)
    messages: list[str] = []
    first = ingest(
        tmp_path / "lake", [loaded.dicomweb], key_file=corpus.key_file, pull=FAST, on_message=messages.append
    )
    assert first.studies["studies_incomplete"] == 1 and first.studies["studies_complete"] == 7
    assert first.studies["instances_expected"] == first.studies["instances_received"] + 1
    assert any(m.startswith(f"study {lied[0]} incomplete: ") and " of " in m for m in messages)
    monkeypatch.setattr(DicomWebSource, "_series_of", real)
    second = ingest(tmp_path / "lake", [loaded.dicomweb], key_file=corpus.key_file, pull=FAST)
    assert (second.studies["studies_pulled"], second.studies["studies_skipped"]) == (1, 7)
    assert second.ingested == 0 and second.duplicates == second.seen > 0  # pulled again, nothing new
    assert_same_lake(tmp_path / "lake", corpus)


# -- filters ----------------------------------------------------------------------------------------
def _studies_where(corpus: Corpus, keep: Any) -> set[str]:
    headers = [dcmread(p, stop_before_pixels=True) for p in corpus.files()]
    return {str(ds.StudyInstanceUID) for ds in headers if keep(ds)}


def _pulled_studies(root: Path, corpus: Corpus) -> int:
    return int(
        lake.open(root, key_file=corpus.key_file).sql("SELECT count(DISTINCT StudyInstanceUID) AS n FROM instances")[
            "n"
        ][0]
    )


def test_filters_select_studies_by_modality_date_and_accession_list(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path
) -> None:
    mr = _studies_where(corpus, lambda ds: ds.Modality == "MR")
    by_modality = ingest(
        tmp_path / "mr", [loaded.dicomweb], key_file=corpus.key_file, pull=PullOptions(modalities=("MR",))
    )
    assert by_modality.studies["studies_found"] == len(mr) == _pulled_studies(tmp_path / "mr", corpus) >= 1
    modalities = lake.open(tmp_path / "mr", key_file=corpus.key_file).sql("SELECT DISTINCT Modality FROM instances")
    assert set(modalities["Modality"]) == {"MR"}
    headers = (dcmread(p, stop_before_pixels=True) for p in corpus.files())
    wanted = next(str(ds.AccessionNumber) for ds in headers if ds.get("AccessionNumber"))
    accessions = tmp_path / "acc.csv"
    accessions.write_text(f"AccessionNumber\n{wanted}\n")
    args = ["ingest", loaded.dicomweb, "--lake", str(tmp_path / "acc"), "--key-file", str(corpus.key_file)]
    assert main([*args, "--accessions", str(accessions), "--no-progress"]) == 0
    assert (
        _pulled_studies(tmp_path / "acc", corpus)
        == len(_studies_where(corpus, lambda ds: ds.get("AccessionNumber") == wanted))
        == 1
    )
    dates = PullOptions(study_dates="18000101-18001231")
    none = ingest(tmp_path / "old", [loaded.dicomweb], key_file=corpus.key_file, pull=dates)
    assert (none.studies["studies_found"], none.seen) == (0, 0)


# -- credentials ------------------------------------------------------------------------------------
def test_basic_auth_from_the_environment_or_a_file_and_a_refusal_without(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"AuthenticationEnabled": True, "RegisteredUsers": {"puller": "s3cret-pw"}}
    with orthanc_or_skip(tmp_path / "orthanc", settings) as server:
        subprocess.run(
            ["dcmsend", "-aec", server.aet, "127.0.0.1", str(server.dicom_port), str(corpus.files()[0])],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        with pytest.raises(SourceError, match="HTTP 401") as refused:
            ingest(tmp_path / "none", [server.dicomweb], key_file=corpus.key_file, pull=FAST)
        assert "/studies" not in str(refused.value)
        monkeypatch.setenv("LAKE_DICOMWEB_USER", "puller")
        monkeypatch.setenv("LAKE_DICOMWEB_PASSWORD", "s3cret-pw")
        assert ingest(tmp_path / "env", [server.dicomweb], key_file=corpus.key_file, pull=FAST).ingested == 1
        monkeypatch.delenv("LAKE_DICOMWEB_USER")
        monkeypatch.delenv("LAKE_DICOMWEB_PASSWORD")
        auth = tmp_path / "auth"
        auth.write_text("Basic puller:s3cret-pw\n")
        auth.chmod(0o644)
        with pytest.raises(ConfigError, match="chmod 600"):
            ingest(tmp_path / "file", [server.dicomweb], key_file=corpus.key_file, pull=PullOptions(auth_file=auth))
        auth.chmod(0o600)
        pulled = ingest(
            tmp_path / "file", [server.dicomweb], key_file=corpus.key_file, pull=PullOptions(auth_file=auth)
        )
        assert pulled.ingested == 1
