"""``lake ingest dimse://AET@HOST:PORT``: C-FIND then C-GET or C-MOVE, proven against a real Orthanc.

Each pulled lake must equal the lake built from the same files in a folder (same SOP Instance
UIDs, same rows but the run's own columns, same pixels). Orthanc knows the lake's AE title at a
test-chosen port (its ``DicomModalities``), where the lake's own storage SCP listens for C-MOVE.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from lake.cli import main
from lake.errors import SourceError
from lake.ingest import ingest
from lake.sources.dimse import DimseSource, _Failure, _Series
from lake.sources.filters import PullOptions
from lake.testing.orthanc import Orthanc, free_port
from tests.sources.helpers import (
    FAST,
    LAKE_AET,
    Corpus,
    assert_same_lake,
    kill_mid_pull_and_rerun,
    lake_bytes,
    orthanc_or_skip,
    rows,
)

pytest.importorskip("pynetdicom", reason="pynetdicom is a dependency: pip install -e .")


def _move(port: int, **kwargs: Any) -> PullOptions:
    return PullOptions(retries=1, backoff=0.0, move_port=port, move_bind="127.0.0.1", **kwargs)


def _spool(key_file: Path) -> list[Path]:
    """What the pulls left in the vault's spool (nothing, once they end)."""
    vault = key_file.parent / f"{key_file.name}.vault" / "spool"
    return sorted(p for p in vault.rglob("*")) if vault.exists() else []


# -- C-GET and C-MOVE pulls equal the folder --------------------------------------------------------
def test_a_c_get_pull_equals_the_folder_lake_a_rerun_pulls_nothing_and_the_spool_is_emptied(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path
) -> None:
    progress: list[Any] = []
    first = ingest(tmp_path / "lake", [loaded.dimse], key_file=corpus.key_file, pull=FAST, on_progress=progress.append)
    n_studies = len(loaded.get("/studies"))
    assert first.ingested == first.seen == len(rows(corpus.folder_lake, corpus.key_file))
    assert first.seen == first.ingested + first.duplicates + first.rejected
    assert first.studies["studies_found"] == first.studies["studies_complete"] == n_studies
    assert first.studies["instances_received"] == first.studies["instances_expected"] == first.seen
    assert [p.studies_done for p in progress] == list(range(1, n_studies + 1))
    assert_same_lake(tmp_path / "lake", corpus)  # JPEG 2000 included: a context per transfer syntax
    assert _spool(corpus.key_file) == []
    second = ingest(tmp_path / "lake", [loaded.dimse], key_file=corpus.key_file, pull=FAST)
    assert (second.seen, second.studies["studies_skipped"], second.studies["studies_pulled"]) == (0, n_studies, 0)


def test_a_c_move_pull_from_the_cli_equals_the_folder_lake_and_shows_no_identifier(
    corpus: Corpus, loaded: Orthanc, move_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["ingest", loaded.dimse, "--lake", str(tmp_path / "lake"), "--key-file", str(corpus.key_file)]
    args += ["--calling-aet", LAKE_AET, "--move-port", str(move_port), "--move-bind", "127.0.0.1"]
    assert main([*args, "--workers", "2", "--max-requests", "2", "--retries", "1"]) == 0
    printed = capsys.readouterr()
    assert "studies: found 8, pulled 8, complete 8, incomplete 0, skipped 0, failed 0" in printed.out
    assert_same_lake(tmp_path / "lake", corpus)
    assert _spool(corpus.key_file) == []
    seeded = {s for spec in corpus.specs for s in spec.identifiers() if len(s) >= 4}
    uids = {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in corpus.files()}
    data = lake_bytes(tmp_path / "lake").upper()
    console = (printed.out + printed.err).upper()
    for value in seeded | uids:
        assert value.upper().encode() not in data, value
        assert value.upper() not in console, value
    assert f"127.0.0.1:{loaded.dicom_port}" not in console  # the PACS's address goes to the vault only


def test_pynetdicom_logs_no_uid_even_at_debug_level(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uids = {str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in corpus.files()}
    with caplog.at_level(logging.DEBUG):
        pulled = ingest(tmp_path / "lake", [loaded.dimse], key_file=corpus.key_file, pull=FAST, workers=1)
    assert pulled.ingested > 0
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("pynetdicom"))
    assert not any(uid in logged for uid in uids)


def test_a_c_move_to_a_destination_the_pacs_does_not_know_fails_clearly_and_leaves_no_study_pulled(
    corpus: Corpus, loaded: Orthanc, move_port: int, tmp_path: Path
) -> None:
    summary = ingest(
        tmp_path / "lake", [loaded.dimse], key_file=corpus.key_file, pull=_move(move_port, move_aet="NOT_KNOWN")
    )
    assert summary.seen == 0 and summary.studies["studies_failed"] == summary.studies["studies_found"] == 8
    assert _spool(corpus.key_file) == []


# -- incremental, resumable -------------------------------------------------------------------------
def test_a_dimse_pull_killed_mid_way_and_run_again_gives_the_same_lake(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path
) -> None:
    def spool_kept() -> None:
        assert _spool(corpus.key_file)  # the killed pull's spool folder is still there

    # killed after its first commit: the ingest reads ahead of its commits (two units of work per
    # worker), and by the second it may have taken every instance of this small pull from the spool
    kill_mid_pull_and_rerun(loaded.dimse, tmp_path / "lake", corpus, spool_kept, commits=1)
    assert [p for p in _spool(corpus.key_file) if p.is_file()] == []  # the next pull removed the stale one


# -- completeness and politeness --------------------------------------------------------------------
def test_a_study_short_of_its_reported_count_is_retried_reported_and_pulled_again(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = DimseSource._series_of
    lied: list[str] = []
    lock = threading.Lock()

    def one_more(self: DimseSource, client: Any, study: Any) -> list[_Series]:
        series = real(self, client, study)
        with lock:  # the PACS reports one instance more than it sends, in one study only
            if lied and lied[0] != study.ref:
                return series
            if not lied:
                lied.append(study.ref)
        series[0].expected = (series[0].expected or 0) + 1
        study.expected += 1
        return series

    monkeypatch.setattr(DimseSource, "_series_of", one_more)
    messages: list[str] = []
    first = ingest(tmp_path / "lake", [loaded.dimse], key_file=corpus.key_file, pull=FAST, on_message=messages.append)
    assert first.studies["studies_incomplete"] == 1 and first.studies["studies_complete"] == 7
    assert any(m.startswith(f"study {lied[0]} incomplete: ") for m in messages)
    monkeypatch.setattr(DimseSource, "_series_of", real)
    second = ingest(tmp_path / "lake", [loaded.dimse], key_file=corpus.key_file, pull=FAST)
    assert (second.studies["studies_pulled"], second.studies["studies_skipped"]) == (1, 7)
    assert second.ingested == 0 and second.duplicates == second.seen > 0
    assert_same_lake(tmp_path / "lake", corpus)


# pynetdicom 3.0.4 leaves its socket to the collector when a connection is refused (transport.py connect)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failure_status_is_retried_with_back_off_and_an_unreachable_pacs_fails_clearly(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = DimseSource._get
    calls: list[int] = []

    def busy_once(self: DimseSource, series: _Series, deliver: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # the PACS answers "out of resources" once
            raise _Failure("C-GET: status 0xA702", 0xA702, True)
        real(self, series, deliver)

    monkeypatch.setattr(DimseSource, "_get", busy_once)
    summary = ingest(tmp_path / "lake", [loaded.dimse], key_file=corpus.key_file, pull=FAST)
    assert summary.studies["studies_complete"] == 8 and summary.ingested == summary.seen > 0
    assert len(calls) == summary.studies["studies_found"] + 1  # one retry, then every series once (1 a study)
    with pytest.raises(SourceError, match="failed after 2 attempts: no association"):
        ingest(tmp_path / "gone", [f"dimse://X@127.0.0.1:{free_port()}"], key_file=corpus.key_file, pull=FAST)


def test_a_rejected_association_is_not_retried_and_says_which_ae_titles_to_check(
    corpus: Corpus, tmp_path: Path
) -> None:
    with orthanc_or_skip(tmp_path / "orthanc", {"DicomCheckCalledAet": True}) as server:
        wrong = f"dimse://NOT_{server.aet}@127.0.0.1:{server.dicom_port}"
        # pynetdicom sees about 1 in 40 of Orthanc's rejections as an abort (the socket closes first), which
        # is retried: the rejection that follows is not, so the pull ends within the first two attempts.
        retrying = PullOptions(retries=3, backoff=0.0)
        with pytest.raises(
            SourceError, match=r"after (1 attempt|2 attempts).*: association rejected .*AE title"
        ) as refused:
            ingest(tmp_path / "lake", [wrong], key_file=corpus.key_file, pull=retrying)
    assert str(server.dicom_port) not in str(refused.value)


# -- filters ----------------------------------------------------------------------------------------
def test_filters_select_studies_by_modality_date_and_accession_over_c_find(
    corpus: Corpus, loaded: Orthanc, tmp_path: Path
) -> None:
    headers = [dcmread(p, stop_before_pixels=True) for p in corpus.files()]
    mr = {str(ds.StudyInstanceUID) for ds in headers if ds.Modality == "MR"}
    by_modality = ingest(
        tmp_path / "mr", [loaded.dimse], key_file=corpus.key_file, pull=PullOptions(modalities=("MR",))
    )
    assert by_modality.studies["studies_found"] == len(mr) >= 1
    wanted = next(str(ds.AccessionNumber) for ds in headers if ds.get("AccessionNumber"))
    one = ingest(
        tmp_path / "acc", [loaded.dimse], key_file=corpus.key_file, pull=PullOptions(accession_numbers=(wanted,))
    )
    assert (
        one.studies["studies_found"]
        == len({str(ds.StudyInstanceUID) for ds in headers if ds.get("AccessionNumber") == wanted})
        == 1
    )
    none = ingest(
        tmp_path / "old", [loaded.dimse], key_file=corpus.key_file, pull=PullOptions(study_dates="18000101-18001231")
    )
    assert (none.studies["studies_found"], none.seen) == (0, 0)
