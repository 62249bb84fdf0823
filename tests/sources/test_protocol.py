"""The source protocol without a PACS: schemes, URLs, credentials, ID lists, windows, the throttle."""

from __future__ import annotations

import threading
from datetime import time
from pathlib import Path

import pytest

from lake.errors import ConfigError, SourceError
from lake.sources import SourceContext, check_source, iter_sources, open_source
from lake.sources.auth import load_credentials
from lake.sources.dicomweb import http_url
from lake.sources.dimse import dimse_address
from lake.sources.filters import PullOptions, Window, read_id_csv
from lake.sources.polite import Stopped, Throttle
from lake.testing.synthetic import make_cohort


def test_a_folder_opened_through_the_protocol_yields_what_iter_sources_yields(tmp_path: Path) -> None:
    make_cohort(tmp_path / "src", n_patients=1, studies_per_patient=1, n_images=2)
    source = open_source(tmp_path / "src", SourceContext())
    got = [(i.label, i.read()) for i in source.items()]
    assert got == [(i.label, i.read()) for i in iter_sources([tmp_path / "src"])] and len(got) == 2
    assert not source.report()


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("ftp://host/x", "unknown source scheme ftp://"),
        ("dicomweb://user:pw@host:8042/dicom-web", "credentials in a source URL are refused"),
        ("dicomweb://host:99999/dicom-web", "port"),
        ("dicomweb:///dicom-web", "expected dicomweb://HOST:PORT/PATH"),
        ("dicomweb://host/dicom-web?PatientID=X", "no query in the source URL"),
        ("dimse://host:104", "expected dimse://AET@HOST:PORT"),
        ("dimse://PACS@host", "give the DICOM port"),
        ("dimse://PACS@host:0", "give the DICOM port"),
        ("dimse://PACS:pw@host:104", "nothing else"),
        ("dimse://PACS@host:104/studies?PatientID=X", "nothing else"),
        ("dimse://A%5CB@host:104", "called AE title"),
        ("dimse://SEVENTEEN-CHARS-AE@host:104", "called AE title"),
    ],
)
def test_bad_source_urls_are_refused_before_anything_is_written(spec: str, why: str) -> None:
    with pytest.raises(SourceError, match=why) as refused:
        check_source(spec)
    assert "pw" not in str(refused.value) and "PatientID=X" not in str(refused.value)


def test_dicomweb_urls_map_to_http_and_https() -> None:
    assert http_url("dicomweb://pacs:8042/dicom-web/") == "http://pacs:8042/dicom-web"
    assert http_url("dicomweb+https://pacs.example:443/wado") == "https://pacs.example:443/wado"


def test_dimse_urls_name_the_called_ae_title_host_and_port() -> None:
    address = dimse_address("dimse://PACS_1@pacs.example:11112")
    assert (address.aet, address.host, address.port) == ("PACS_1", "pacs.example", 11112)
    assert address.url == "dimse://PACS_1@pacs.example:11112"
    for kwargs in ({"calling_aet": ""}, {"calling_aet": "A\\B"}, {"move_aet": "X"}, {"move_port": 70000}):
        with pytest.raises(ConfigError):
            PullOptions(**kwargs)  # type: ignore[arg-type]
    assert PullOptions(move_port=11113, move_aet="LAKE_SCP").move_aet == "LAKE_SCP"


def test_credentials_come_from_a_private_file_or_the_environment(tmp_path: Path) -> None:
    assert load_credentials(None, {}).kind == "none"
    assert load_credentials(None, {"LAKE_DICOMWEB_TOKEN": "tok"}).token == "tok"
    basic = load_credentials(None, {"LAKE_DICOMWEB_USER": "u", "LAKE_DICOMWEB_PASSWORD": "p"})
    assert (basic.user, basic.password) == ("u", "p") and "p'" not in repr(basic)
    with pytest.raises(ConfigError, match="LAKE_DICOMWEB_PASSWORD"):
        load_credentials(None, {"LAKE_DICOMWEB_USER": "u"})
    f = tmp_path / "auth"
    f.write_text("Bearer SECRET-TOKEN\n")
    f.chmod(0o600)
    assert load_credentials(f, {}).token == "SECRET-TOKEN"
    assert load_credentials(None, {"LAKE_DICOMWEB_AUTH_FILE": str(f)}).token == "SECRET-TOKEN"
    f.write_text("SECRET-TOKEN\n")
    with pytest.raises(ConfigError, match="Bearer TOKEN") as bad:
        load_credentials(f, {})
    assert "SECRET" not in str(bad.value)


def test_id_lists_read_a_named_column_or_the_only_one_and_never_quote_a_value(tmp_path: Path) -> None:
    f = tmp_path / "ids.csv"
    f.write_text("name,AccessionNumber\nA,ACC1\nB,ACC2\nC,ACC1\nD,\n")
    assert read_id_csv(f, "accession") == ("ACC1", "ACC2")
    f.write_text("MRN-1\nMRN-2\n")
    assert read_id_csv(f, "patient") == ("MRN-1", "MRN-2")
    f.write_text("a,b\nMRN-SECRET,x\n")
    with pytest.raises(ConfigError, match="none is named patientid") as bad:
        read_id_csv(f, "patient")
    assert "MRN-SECRET" not in str(bad.value)


def test_windows_wrap_past_midnight_and_bad_options_are_refused() -> None:
    night = Window.parse("19:00-07:00")
    assert night.open_at(time(23, 0)) and night.open_at(time(6, 59)) and not night.open_at(time(12, 0))
    day = Window.parse("08:00-18:00")
    assert day.open_at(time(8, 0)) and not day.open_at(time(18, 0))
    for bad in ("7-19", "19:00-19:00"):
        with pytest.raises(ConfigError, match="window"):
            Window.parse(bad)
    for kwargs in ({"study_dates": "2020"}, {"modalities": ("ct;",)}, {"max_requests": 0}, {"rate": 0.0}):
        with pytest.raises(ConfigError):
            PullOptions(**kwargs)  # type: ignore[arg-type]


def test_the_throttle_holds_requests_beyond_its_limit_until_closed() -> None:
    stop = threading.Event()
    throttle = Throttle(1, None, stop)
    with throttle.request():
        stop.set()  # a second request finds no free slot and the pull closed: it gives up
        with pytest.raises(Stopped):
            throttle._turn()
    assert throttle.requests == 1
