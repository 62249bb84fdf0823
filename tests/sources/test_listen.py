"""``lake listen``: a storage SCP fed by dcmtk's ``dcmsend`` (two at once), proven against the folder lake.

The listener runs as a ``python -m lake listen`` process on a test-chosen port of 127.0.0.1 and is
stopped by PID (SIGTERM, or SIGKILL for the crash case). The tests wait for conditions (a line on
its stderr, the process's exit) under generous deadlines, never for a time.
"""

from __future__ import annotations

import io
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

import lake
from lake.testing.orthanc import dcmsend, free_port, modalities, tool
from tests.sources.helpers import REPO, Corpus, assert_same_lake, orthanc_or_skip

pytest.importorskip("pynetdicom", reason="pynetdicom is a dependency: pip install -e .")

AET = "LAKE_LISTEN"
#: Seconds a condition may take (a safety net: the tests wait for the condition, not for the time).
DEADLINE = 120.0


class Running:
    """A ``lake listen`` process: its port, and its stderr lines as they come.

    Each of its pipes has one reader, a thread of its own (a second reader such as ``communicate``
    would race it for the lines and close the pipe under it)."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.port = proc, port
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._out: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(proc.stderr, self.lines.put), daemon=True),
            threading.Thread(target=self._read, args=(proc.stdout, self._out.append), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(pipe: IO[str], put: Callable[[str], object]) -> None:
        with pipe:  # closed by its reader, at its end
            for line in pipe:
                put(line)

    def wait_for(self, text: str) -> str:
        """The first stderr line holding ``text`` (the lines before it are kept in ``seen``)."""
        while True:
            line = self.lines.get(timeout=DEADLINE)
            self.seen.append(line)
            if text in line:
                return line

    def stop(self, signum: int = signal.SIGTERM) -> str:
        """Signal the process, wait for it to end and for its pipes to close; its stdout."""
        os.kill(self.proc.pid, signum)
        self.proc.wait(timeout=DEADLINE)
        self.drain()
        return "".join(self._out)

    def drain(self) -> None:
        """Wait until both readers have read their pipe to its end (the process has ended)."""
        for reader in self._readers:
            reader.join(timeout=DEADLINE)
            assert not reader.is_alive(), "a pipe of the ended listener is still open"


@contextmanager
def listening(root: Path, key_file: Path, *options: str, port: int | None = None) -> Iterator[Running]:
    port = port or free_port()
    cmd = [sys.executable, "-m", "lake", "listen", "--lake", str(root), "--key-file", str(key_file)]
    cmd += ["--port", str(port), "--aet", AET, "--bind", "127.0.0.1", "--workers", "1", *options]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    running = Running(proc, port)
    try:
        running.wait_for("listening on port")
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=DEADLINE)
        running.drain()


def _send(port: int, files: list[Path]) -> subprocess.CompletedProcess[str]:
    cmd = [tool("dcmsend"), "-aec", AET, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE, check=False)


def _two_senders(port: int, files: list[Path]) -> None:
    """Two ``dcmsend`` at once, each half of the files; both must succeed."""
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [
        threading.Thread(target=lambda h=half: results.append(_send(port, h))) for half in (files[::2], files[1::2])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DEADLINE)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-1000:] for r in results]


def _new_lake(tmp_path: Path, corpus: Corpus) -> Path:
    root = tmp_path / "lake"
    lake.init(root, key_file=corpus.key_file)
    return root


def _spool(corpus: Corpus) -> Path:
    return corpus.key_file.with_name(corpus.key_file.name + ".spool")


@contextmanager
def chunked_send() -> Iterator[None]:
    """pynetdicom sends a file's data set as it is on disk, without decoding it."""
    from pynetdicom import _config

    before, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        yield
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = before


@pytest.fixture(autouse=True)
def _dcmtk() -> None:
    try:
        tool("dcmsend")
    except RuntimeError as exc:
        pytest.skip(str(exc))


def test_two_concurrent_senders_are_ingested_in_batches_and_sigterm_ends_with_a_summary(
    corpus: Corpus, tmp_path: Path
) -> None:
    root = _new_lake(tmp_path, corpus)
    files = corpus.files()
    with listening(root, corpus.key_file, "--batch-size", "4", "--quiet-seconds", "0.2") as running:
        echo = subprocess.run(
            [tool("echoscu"), "-aec", AET, "127.0.0.1", str(running.port)], capture_output=True, timeout=DEADLINE
        )
        assert echo.returncode == 0  # C-ECHO
        _two_senders(running.port, files)
        running.wait_for(f"(total ingested {len(files)})")  # committed while listening: full and quiet batches
        out = running.stop()
    assert running.proc.returncode == 0
    assert f"received {len(files)} instances in 3 associations (refused: none)" in out  # echo + two senders
    assert f"seen {len(files)}, ingested {len(files)}, duplicates 0" in out
    assert sum("batch committed" in line for line in running.seen) >= 2
    assert_same_lake(root, corpus)
    assert not _spool(corpus).exists()


def test_what_arrived_before_sigterm_is_ingested_and_what_cannot_be_read_is_refused(
    corpus: Corpus, tmp_path: Path
) -> None:
    from pydicom import dcmread
    from pydicom.filewriter import write_file_meta_info
    from pynetdicom import AE

    root = _new_lake(tmp_path, corpus)
    files = corpus.files()
    broken = tmp_path / "broken.dcm"  # a valid file meta, then bytes that are no data set
    ds = dcmread(files[0])
    meta = io.BytesIO()
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    broken.write_bytes(b"\0" * 128 + b"DICM" + meta.getvalue() + b"\x08\x00\x16\x00UI\xff\xffgarbage" * 3)
    with listening(root, corpus.key_file, "--batch-size", "1000", "--quiet-seconds", "3600") as running:
        _two_senders(running.port, files)
        ae = AE(ae_title="SENDER")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", running.port, ae_title=AET)
        assert assoc.is_established
        with chunked_send():
            status = assoc.send_c_store(broken)
        assoc.release()
        assert status.Status == 0xC000  # cannot understand: refused, not stored
        rejected = ae.associate("127.0.0.1", running.port, ae_title="NOT_" + AET[:8])
        assert rejected.is_rejected  # the wrong called AE title
        out = running.stop()  # nothing was due (batch 1000, quiet an hour): the stop ingests it all
    assert running.proc.returncode == 0
    assert f"received {len(files)} instances" in out and "refused: unreadable 1" in out
    assert f"1 batches: seen {len(files)}, ingested {len(files)}" in out
    assert_same_lake(root, corpus)


def test_a_listener_killed_outright_loses_nothing_it_acknowledged(corpus: Corpus, tmp_path: Path) -> None:
    root = _new_lake(tmp_path, corpus)
    files = corpus.files()
    with listening(root, corpus.key_file, "--batch-size", "1000", "--quiet-seconds", "3600") as running:
        _two_senders(running.port, files)
        running.stop(signal.SIGKILL)
    assert len(list((_spool(corpus) / "incoming").glob("*.dcm"))) == len(files)  # acknowledged = on disk
    with listening(root, corpus.key_file, "--batch-size", "1000", "--quiet-seconds", "3600") as again:
        out = again.stop()
    assert f"seen {len(files)}, ingested {len(files)}" in out
    assert_same_lake(root, corpus)
    assert not _spool(corpus).exists()


def test_a_pacs_pushing_with_c_store_fills_the_lake_like_the_folder(corpus: Corpus, tmp_path: Path) -> None:
    root = _new_lake(tmp_path, corpus)
    port = free_port()
    with orthanc_or_skip(tmp_path / "orthanc", modalities((AET, port))) as server:
        dcmsend(server, corpus.files())
        with listening(root, corpus.key_file, "--batch-size", "1000", "--quiet-seconds", "3600", port=port) as running:
            pushed = server.post(
                "/modalities/peer0/store", {"Resources": server.get("/instances"), "Synchronous": True}
            )
            assert pushed["InstancesCount"] == len(corpus.files()) and pushed["FailedInstancesCount"] == 0
            out = running.stop()
    assert f"received {len(corpus.files())} instances in " in out and "refused: none" in out
    assert_same_lake(root, corpus)
