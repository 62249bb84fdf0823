"""A real Orthanc for tests: test-only ports on 127.0.0.1, ``RemoteAccessAllowed`` false, stopped by PID.

Debian's ``orthanc`` and ``orthanc-dicomweb`` (``.ci/run`` installs them); :func:`dcmsend` loads
files into it with dcmtk's ``dcmsend``. Both raise :class:`OrthancUnavailable` when a tool is
missing, so a test can skip naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AET = "LAKETEST"
#: Seconds Orthanc may take to answer its first request (a deadline, not a wait).
START_DEADLINE = 60.0


class OrthancUnavailable(RuntimeError):
    """Orthanc, its DICOMweb plugin or dcmtk is not installed (Debian packages)."""


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: its REST ``url``, DICOM ``dicom_port``, ``aet`` and process ``pid``."""

    url: str
    dicom_port: int
    aet: str
    pid: int
    log: Path

    @property
    def dimse(self) -> str:
        """The DICOM port as a lake source URL (``dimse://LAKETEST@127.0.0.1:PORT``)."""
        return f"dimse://{self.aet}@127.0.0.1:{self.dicom_port}"

    @property
    def dicomweb(self) -> str:
        """The DICOMweb root as a lake source URL (``dicomweb://127.0.0.1:PORT/dicom-web``)."""
        return self.url.replace("http://", "dicomweb://", 1) + "/dicom-web"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: object) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise OrthancUnavailable(f"{name} is not installed (Debian package; .ci/run installs it)")
    return path


def modalities(*peers: tuple[str, int]) -> dict[str, Any]:
    """Orthanc settings making each ``(aet, port)`` on 127.0.0.1 a known modality (C-FIND, C-GET,
    C-MOVE destination, C-STORE), for :func:`run_orthanc`'s ``settings``."""
    return {"DicomModalities": {f"peer{i}": [aet, "127.0.0.1", port] for i, (aet, port) in enumerate(peers)}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_orthanc(base: Path, settings: dict[str, Any] | None = None) -> Iterator[Orthanc]:
    """Start Orthanc with its database under ``base`` (``settings`` added to its configuration);
    stop it (SIGTERM, then SIGKILL) on exit."""
    binary = tool("Orthanc")
    if not DICOMWEB_PLUGIN.exists():
        raise OrthancUnavailable("orthanc-dicomweb is not installed (Debian package; .ci/run installs it)")
    base.mkdir(parents=True, exist_ok=True)
    http, dicom = free_port(), free_port()
    config = {
        "Name": "lake-test",
        "StorageDirectory": str(base / "db"),
        "IndexDirectory": str(base / "db"),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": AET,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        **(settings or {}),
    }
    (base / "orthanc.json").write_text(json.dumps(config))
    log_path = base / "orthanc.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([binary, str(base / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
        server = Orthanc(f"http://127.0.0.1:{http}", dicom, AET, proc.pid, log_path)
        try:
            deadline = time.monotonic() + START_DEADLINE
            while True:
                if _accepts(dicom):  # the DICOM port opens apart from the REST one
                    with contextlib.suppress(OSError):
                        server.get("/system")
                        break
                    if settings and settings.get("AuthenticationEnabled") and _answers(server.url):
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Orthanc did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)  # polling for a condition under a deadline
            yield server
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def _accepts(port: int) -> bool:
    """Whether a TCP connection to ``port`` on 127.0.0.1 is accepted."""
    with socket.socket() as s:
        s.settimeout(5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _answers(url: str) -> bool:
    """Whether an Orthanc that asks for credentials is up (it answers 401)."""
    try:
        urllib.request.urlopen(url + "/system", timeout=5).close()
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False
    return True


def dcmsend(server: Orthanc, files: Sequence[str | os.PathLike[str]]) -> None:
    """C-STORE ``files`` into ``server`` with dcmtk's ``dcmsend``; raises ``RuntimeError`` if it fails."""
    run = subprocess.run(
        [tool("dcmsend"), "-aec", server.aet, "127.0.0.1", str(server.dicom_port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"dcmsend failed ({run.returncode}): {run.stderr[-2000:]}")
