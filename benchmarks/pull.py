"""PACS pull throughput: ``lake ingest`` from a local Orthanc over DICOMweb and DIMSE (C-GET, C-MOVE)
against the raw transfer tools fetching the same studies in the same run: dcmtk's ``getscu`` and
``movescu`` (one call per study, files written to disk) and ``dicomweb-client`` alone (WADO-RS per
series into memory).

    .venv/bin/python benchmarks/pull.py [--no-shared] [--patients 4] [--workers 2] [--protocols dicomweb,c-get,c-move]

Prints instances/s, MB/s and CPU milliseconds per instance of each, the ratios of the lake to the
raw tool of its protocol (goal: the lake within 1.5x, de-identification, pixel store and commits
included) and to the lake's own ingest of the same files from a folder (what the pull adds to the
ingest), and where each pull's time lies between max(transfer, folder ingest), what a pull
overlapping its retrieval with the processing costs, and their sum, what it costs done one after
the other. Orthanc runs on 127.0.0.1 on free ports and is stopped by PID (:mod:`lake.testing.orthanc`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _corpus import SHARED
from pydicom import dcmread

from lake.ingest import ingest
from lake.sources.filters import PullOptions
from lake.testing.orthanc import Orthanc, dcmsend, free_port, modalities, run_orthanc, tool
from lake.testing.synthetic import PatientSpec, write_study

AET = "LAKEBENCH"


def corpus(base: Path, patients: int, shared: bool) -> list[Path]:
    """Synthetic CT studies (2 a patient, 24 slices each) and, if present, the shared dcm_qa_ct series."""
    files: list[Path] = []
    for i in range(patients):
        spec = PatientSpec(f"BENCH^P{i}", f"MRN-BENCH-{i:03d}", "19600101", f"ACCB{i:03d}")
        for j in range(2):
            files += write_study(spec, base / f"p{i}s{j}", date(2020, 1 + j, 1 + i), 24, seed=i * 10 + j)
    if shared and (SHARED / "dcm_qa_ct").is_dir():
        files += [p for p in sorted((SHARED / "dcm_qa_ct").rglob("*")) if p.is_file() and _part10(p)]
    return files


def _part10(path: Path) -> bool:
    """A DICOM file with its file meta and a SOP Instance UID (what dcmsend loads)."""
    try:
        return "SOPInstanceUID" in dcmread(path, stop_before_pixels=True)
    except Exception:
        return False


def lake_pull(url: str, key: Path, tmp: Path, options: PullOptions, workers: int) -> int:
    root = tmp / f"lake-{time.monotonic_ns()}"
    try:
        summary = ingest(root, [url], key_file=key, pull=options, workers=workers)
        return summary.seen
    finally:
        shutil.rmtree(root, ignore_errors=True)


def studies(server: Orthanc) -> list[str]:
    return [server.get(f"/studies/{s}")["MainDicomTags"]["StudyInstanceUID"] for s in server.get("/studies")]


def dcmtk(server: Orthanc, tmp: Path, move_port: int | None) -> int:
    out = tmp / f"dcmtk-{time.monotonic_ns()}"
    out.mkdir()
    try:
        for uid in studies(server):
            if move_port is None:
                cmd = [tool("getscu"), "-S", "-aet", AET, "-aec", server.aet]
            else:
                cmd = [tool("movescu"), "-S", "-aet", AET, "-aec", server.aet, "-aem", AET, "+P", str(move_port), "+xa"]
            cmd += ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uid}", "-od", str(out)]
            subprocess.run([*cmd, "127.0.0.1", str(server.dicom_port)], check=True, capture_output=True, timeout=600)
        return sum(1 for _ in out.iterdir())
    finally:
        shutil.rmtree(out, ignore_errors=True)


def dicomweb_client_alone(server: Orthanc) -> int:
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(server.url + "/dicom-web")
    n = 0
    for study in client.search_for_studies():
        uid = study["0020000D"]["Value"][0]
        for series in client.search_for_series(uid):
            for _ds in client.iter_series(
                uid, series["0020000E"]["Value"][0], media_types=(("application/dicom", "*"),)
            ):
                n += 1
    return n


def cpu_seconds() -> float:
    """CPU time of this process and of its children waited for (the lake's workers, dcmtk's tools;
    not Orthanc, waited for only when it stops): what a loaded machine disturbs least."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(name: str, fn: Callable[[], int], nbytes: int) -> float:
    t0, c0 = time.perf_counter(), cpu_seconds()
    n = fn()
    dt, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(
        f"{name:<40} {n:6d} instances {dt:8.2f} s {n / dt:8.1f} instances/s {nbytes / dt / 1e6:8.1f} MB/s "
        f"{1000 * cpu / n:7.2f} CPU ms/instance"
    )
    return n / dt


def overlap(name: str, folder: float, raw: float, pull: float) -> str:
    """Where the pull's time per instance lies: 0 at max(transfer, ingest) (fully overlapped), 1 at
    their sum (one after the other); rates in instances per second."""
    t_folder, t_raw, t_pull = 1 / folder, 1 / raw, 1 / pull
    low, high = max(t_folder, t_raw), t_folder + t_raw
    return f"{name} {(t_pull - low) / (high - low):.2f}"


PROTOCOLS = ("dicomweb", "c-get", "c-move")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-shared", action="store_true", help="synthetic studies only")
    parser.add_argument("--patients", type=int, default=4, help="synthetic patients (2 studies of 24 slices each)")
    parser.add_argument("--workers", type=int, default=2, help="the lake's worker processes")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help="which pulls, comma-separated")
    args = parser.parse_args()
    protocols = set(args.protocols.split(","))
    if not protocols <= set(PROTOCOLS):
        parser.error(f"--protocols: choose from {', '.join(PROTOCOLS)}")
    tmp = Path(tempfile.mkdtemp(prefix="lake-pull-bench-"))
    os.environ["LAKE_HOME"] = str(tmp / "home")
    try:
        files = corpus(tmp / "src", args.patients, not args.no_shared)
        nbytes = sum(p.stat().st_size for p in files)
        n_studies = len({str(dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in files})
        print(f"{len(files)} instances in {n_studies} studies, {nbytes / 1e6:.1f} MB; lake workers {args.workers}")
        warm = ingest(tmp / "warm-lake", [files[0].parent], workers=args.workers)  # imports and JIT paid once
        print(f"(warm-up ingest of {warm.seen} local files, not measured)")
        src = tmp / "flat"
        src.mkdir()
        for i, f in enumerate(files):  # one folder of links: the same files as the PACS holds
            (src / f"{i:06d}.dcm").symlink_to(f)
        key = tmp / "keys" / "lake.key"
        folder = measure(
            "lake ingest of the same files (a folder)",
            lambda: lake_pull(str(src), key, tmp, PullOptions(), args.workers),
            nbytes,
        )
        move_port, tool_port = free_port(), free_port()
        raw: dict[str, float] = {}
        pulled: dict[str, float] = {}
        fast = {"retries": 1, "backoff": 0.0, "calling_aet": AET}
        if protocols & {"dicomweb", "c-get"}:
            with run_orthanc(tmp / "orthanc", modalities((AET, move_port))) as server:
                dcmsend(server, files)
                if "dicomweb" in protocols:
                    raw["dicomweb"] = measure(
                        "dicomweb-client alone (WADO-RS)", lambda: dicomweb_client_alone(server), nbytes
                    )
                    pulled["dicomweb"] = measure(
                        "lake ingest dicomweb://",
                        lambda: lake_pull(server.dicomweb, key, tmp, PullOptions(**fast), args.workers),
                        nbytes,
                    )
                if "c-get" in protocols:
                    raw["c-get"] = measure("dcmtk getscu (a call per study)", lambda: dcmtk(server, tmp, None), nbytes)
                    pulled["c-get"] = measure(
                        "lake ingest dimse:// (C-GET)",
                        lambda: lake_pull(server.dimse, key, tmp, PullOptions(**fast), args.workers),
                        nbytes,
                    )
        if "c-move" in protocols:
            with run_orthanc(tmp / "orthanc-move", modalities((AET, tool_port))) as server:
                dcmsend(server, files)
                raw["c-move"] = measure(
                    "dcmtk movescu (a call per study)", lambda: dcmtk(server, tmp, tool_port), nbytes
                )
            with run_orthanc(tmp / "orthanc-move2", modalities((AET, move_port))) as server:
                dcmsend(server, files)
                options = PullOptions(**fast, move_port=move_port, move_bind="127.0.0.1")
                pulled["c-move"] = measure(
                    "lake ingest dimse:// (C-MOVE)",
                    lambda: lake_pull(server.dimse, key, tmp, options, args.workers),
                    nbytes,
                )
        done = [p for p in PROTOCOLS if p in pulled]
        print(
            "time ratios lake / raw tool (goal <= 1.5): "
            + ", ".join(f"{p} {raw[p] / pulled[p]:.2f}x" for p in done)
            + "; lake pull / folder ingest: "
            + ", ".join(f"{p} {folder / pulled[p]:.2f}x" for p in done)
        )
        print(
            "pull time between max(transfer, folder ingest) = 0 and their sum = 1: "
            + ", ".join(overlap(p, folder, raw[p], pulled[p]) for p in done)
            + f"; load average {os.getloadavg()[0]:.1f}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
