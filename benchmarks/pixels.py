"""Pixel store: codec comparison, storage size, and read speed against pydicom, measured in one run.

    python benchmarks/pixels.py [--quick]

1. Codecs: every lossless codec the store offers, one frame per call on one core (size ratio,
   encode and decode MB/s), on the shared GE CT, the 196-slice MR and a Philips CT when present,
   and on pydicom's test series. It names the smallest codec that encodes at >= 50 MB/s and how
   far the store's default (``auto``) is from it.
2. Storage: bytes of the lake's pixel arrays versus the original DICOM files and versus the
   smallest codec on the same pixels.
3. Reads: random single-frame latency (``lk.pixels``) and whole-volume throughput
   (``lk.volume``) versus pydicom reading the original files, uncompressed and re-encoded
   lossless (RLE, JPEG 2000) in a temporary folder. Volume reads decode on every core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numcodecs
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, RLELossless

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lake
from lake.ingest import ingest
from lake.pixels import fastread
from lake.pixels.codecs import (
    DEFAULT_IMAGE_CODEC,
    IMAGE_CODEC_CLASSES,
    IMAGE_CODECS,
    PixelCodec,
    measure_codecs,
    supports,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dicom"
MIN_ENCODE_MBPS = 50.0


def _series() -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    if (SHARED / "dcm_qa_ct" / "GE").is_dir():
        out["GE head CT 28x512x512"] = sorted((SHARED / "dcm_qa_ct" / "GE").glob("*.dcm"))
    if (SHARED / "dcm_qa_deident").is_dir():
        out["GE MR 196x256x256"] = sorted((SHARED / "dcm_qa_deident").glob("*.dcm"))
    philips = SHARED / "dcm_qa_ct" / "Philips" / "S21610" / "S3010"
    if philips.is_dir():
        out["Philips CT"] = sorted(p for p in philips.rglob("*") if p.is_file())
    for name in ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "US1_UNCR.dcm", "RG1_UNCR.dcm"):
        path = get_testdata_file(name, download=False)
        if path:
            out[f"pydicom {name}"] = [Path(str(path))]
    return out


def _frames(files: list[Path]) -> np.ndarray:
    arrays = []
    for f in files:
        ds = pydicom.dcmread(f)
        a = ds.pixel_array
        base = 3 if int(ds.get("SamplesPerPixel", 1)) > 1 else 2
        arrays.append(a[np.newaxis] if a.ndim == base else a)
    shapes = {a.shape[1:] for a in arrays}
    keep = max(shapes, key=lambda s: sum(a.shape[0] for a in arrays if a.shape[1:] == s))
    return np.concatenate([a for a in arrays if a.shape[1:] == keep])


def _generic(codec: PixelCodec, dtype: np.dtype) -> tuple[Callable[[np.ndarray], bytes], Callable[[bytes], object]]:
    if codec == PixelCodec.ZSTD:
        z = numcodecs.Zstd(level=3)
        return (lambda f: bytes(z.encode(f))), z.decode
    cname = "lz4" if "lz4" in codec.value else "zstd"
    shuffle = numcodecs.Blosc.BITSHUFFLE if codec.value.endswith("bitshuffle") else numcodecs.Blosc.SHUFFLE
    b = numcodecs.Blosc(cname=cname, clevel=5, shuffle=shuffle, typesize=dtype.itemsize)
    return (lambda f: bytes(b.encode(f))), b.decode


def compare_codecs(name: str, frames: np.ndarray) -> dict[str, tuple[float, float, float]]:
    numcodecs.blosc.set_nthreads(1)  # one core, like the image codecs here
    samples = frames.shape[3] if frames.ndim == 4 else 1
    results: dict[str, tuple[float, float, float]] = {}
    for codec in PixelCodec:
        if codec == PixelCodec.AUTO or not supports(codec, frames.dtype, samples):
            continue
        if codec in IMAGE_CODECS:
            impl = IMAGE_CODEC_CLASSES[codec]()
            encode = lambda f, impl=impl: impl.encode_frame(impl.to_codec_values(f))  # noqa: E731
            into = np.empty(frames.shape[1:], dtype=frames.dtype)
            decode = lambda b, impl=impl, into=into: impl.decode_into(b, into)  # noqa: E731  (as the store reads)
        else:
            encode, decode = _generic(codec, frames.dtype)
        decode(encode(np.ascontiguousarray(frames[0])))  # warm up (loads numba's compiled kernels)
        t = time.perf_counter()
        blobs = [encode(np.ascontiguousarray(f)) for f in frames]
        t_enc = time.perf_counter() - t
        t = time.perf_counter()
        for blob in blobs:
            decode(blob)
        t_dec = time.perf_counter() - t
        mb = frames.nbytes / 1e6
        results[codec.value] = (frames.nbytes / sum(map(len, blobs)), mb / t_enc, mb / t_dec)
    fast = {k: v for k, v in results.items() if v[1] >= MIN_ENCODE_MBPS}
    best = max(fast, key=lambda k: fast[k][0]) if fast else None
    chosen = measure_codecs(frames)[0]  # what the store picks for a new array of these frames
    print(f"\n## {name}: {frames.shape} {frames.dtype}")
    print(f"{'codec':24} {'ratio':>7} {'enc MB/s':>9} {'dec MB/s':>9}")
    for k, (ratio, enc, dec) in sorted(results.items(), key=lambda kv: -kv[1][0]):
        mark = " <- auto" if k == chosen else ""
        print(f"{k:24} {ratio:7.2f} {enc:9.0f} {dec:9.0f}{mark}")
    if best:
        gap = results[best][0] / results[chosen][0] - 1
        print(f"smallest codec at >= {MIN_ENCODE_MBPS:.0f} MB/s encode: {best}; auto ({chosen}) is {gap:+.0%} larger")
    numcodecs.blosc.set_nthreads(os.cpu_count() or 1)
    return results


def _compress_copy(files: list[Path], folder: Path, syntax: object) -> list[Path] | None:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    try:
        for i, f in enumerate(files):
            ds = pydicom.dcmread(f)
            ds.compress(syntax)  # type: ignore[arg-type]
            path = folder / f"{i:04d}.dcm"
            ds.save_as(path)
            out.append(path)
    except Exception as exc:  # an encoder plugin may be missing for this dtype
        print(f"  (cannot write {syntax} copies: {type(exc).__name__})")
        return None
    return out


def _pydicom_volume(files: list[Path]) -> float:
    t = time.perf_counter()
    for f in files:
        pydicom.dcmread(f).pixel_array  # noqa: B018
    return time.perf_counter() - t


def _best_of(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def reads(name: str, files: list[Path], smallest_bytes: float, work: Path, repeats: int) -> None:
    root = work / f"lake-{abs(hash(name))}"
    key = work / f"{root.name}.key"
    lake.init(root, key_file=key, burned_in_policy="keep-flagged")
    ingest(root, [files[0].parent] if len(files) > 1 else files, key_file=key, workers=2)
    lk = lake.open(root)
    series = lk.sql("SELECT SeriesInstanceUID, count(*) n FROM instances GROUP BY ALL ORDER BY n DESC")
    uid = str(series[0, 0])
    sops = [str(s) for s in lk.sql("SELECT SOPInstanceUID FROM instances WHERE SeriesInstanceUID = ?", [uid])[:, 0]]
    original = sum(f.stat().st_size for f in files)
    stored = lk.info()["bytes_pixels"]
    print(f"\n## {name}: storage and reads")
    print(
        f"original DICOM {original / 1e6:8.2f} MB   lake pixels {stored / 1e6:8.2f} MB   "
        f"ratio {original / stored:.2f}:1"
    )
    print(f"lake pixels vs smallest codec on the same pixels: {stored / smallest_bytes - 1:+.0%}")
    rng = np.random.default_rng(0)
    picks = [sops[int(i)] for i in rng.integers(0, len(sops), 20)]
    lk.pixels(picks[0], frame=0)  # warm the connection
    t_lake = statistics.median(_best_of(lambda s=s: lk.pixels(s, frame=0), 3) for s in picks)
    t_pyd = statistics.median(_best_of(lambda f=f: pydicom.dcmread(f).pixel_array, 3) for f in files[:20])
    print(f"random frame: lake {t_lake * 1e3:7.2f} ms   pydicom {t_pyd * 1e3:7.2f} ms   speedup {t_pyd / t_lake:5.2f}x")
    key = str(lk.sql("SELECT pixel_array FROM instances WHERE SOPInstanceUID = ?", [sops[0]])[0, 0])
    n_frames = int(lk.pixel_store.metadata(key)["shape"][0])
    t_store = statistics.median(
        _best_of(lambda i=int(i): lk.pixel_store.read(key, i, 1), 3) for i in rng.integers(0, n_frames, 20)
    )
    print(f"  of which the store read (no SQL lookup, as series_array does) {t_store * 1e3:7.2f} ms")
    saved = fastread._pool
    fastread._pool = ThreadPoolExecutor(max_workers=1)
    t_one = _best_of(lambda: lk.pixel_store.read(key, 0, n_frames), repeats)
    fastread._pool.shutdown()
    fastread._pool = saved
    t_all = _best_of(lambda: lk.pixel_store.read(key, 0, n_frames), repeats)
    print(
        f"decode the array: 1 thread {t_one * 1e3:7.1f} ms   {os.cpu_count()} threads {t_all * 1e3:7.1f} ms"
        f"   speedup {t_one / t_all:4.2f}x"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")

        def read_volume() -> None:
            try:
                lk.volume(uid)
            except lake.LakeError:  # no geometry or several stacks: read the frames in order
                lk.series_array(uid).compute()

        t_vol = _best_of(read_volume, repeats)
    mb = sum(pydicom.dcmread(f).pixel_array.nbytes for f in files) / 1e6
    print(f"whole volume: lake {t_vol * 1e3:8.1f} ms ({mb / t_vol:6.0f} MB/s)")
    variants = {"uncompressed original": files}
    if len(files) > 1:
        for label, syntax in (("RLE lossless", RLELossless), ("JPEG 2000 lossless", JPEG2000Lossless)):
            copies = _compress_copy(files, work / f"{root.name}-{label.replace(' ', '_')}", syntax)
            if copies:
                variants[label] = copies
    for label, paths in variants.items():
        t = min(_pydicom_volume(paths) for _ in range(repeats))
        print(f"  pydicom {label:24} {t * 1e3:8.1f} ms   lake speedup {t / t_vol:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, pydicom files only")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; default image codec: {DEFAULT_IMAGE_CODEC.value}")
    series = _series()
    if args.quick:
        series = {k: v for k, v in series.items() if k.startswith("pydicom")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ.setdefault("LAKE_HOME", str(work / "home"))
        for name, files in series.items():
            frames = _frames(files)
            results = compare_codecs(name, frames)
            fast = [v[0] for v in results.values() if v[1] >= MIN_ENCODE_MBPS] or [v[0] for v in results.values()]
            reads(name, files, frames.nbytes / max(fast), work, 1 if args.quick else 3)


if __name__ == "__main__":
    main()
