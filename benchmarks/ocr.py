"""OCR text detection of burned-in identifiers (lake.deid.ocr): recall, false positives and cost.

Recall: the share of synthetic images with a line of text (lake.testing.text_corpus: CT, MR, US, SC
and photographs; names, IDs, dates; random place, size 8-30 px, font, contrast) whose every text
pixel that can be seen is masked by what ``find_text`` found (padded as the lake pads). False
positives: the share of the same images without text in which anything was found (they would be
altered). Hard cases (``hard_corpus``: speckle, low contrast, inverse, rotated 90 degrees, 8-9 px)
are reported apart. Cost: milliseconds per image, and per series of 100 derived CT frames read as
the ingest reads them (instances 1-4, then about 1 in 8). Multi-frame (``CINE`` 1, needs pip ``deid-data``):
the masked share of the frames of deid-data's ``ultrasound-multiframe.dcm`` (30 frames, 800x600;
overlays masked in every frame, lines on the moving image in their own frames) and its OCR time.
Run: ``python benchmarks/ocr.py [PAIRS [HARD [CINE]]]`` (default 200 pairs, 100 hard images, 0).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict

import numpy as np

from lake.deid import ocr, pixels
from lake.testing.text_corpus import TextImage, corpus, hard_corpus

BANDS = ("8-11 px", "12-19 px", "20-30 px")


def masked(image: TextImage, found: list[ocr.TextBox]) -> np.ndarray:
    """The pixels the lake would mask for what was found in ``image``."""
    mask = np.zeros(image.pixels.shape, dtype=bool)
    for line in found:
        x0, y0, x1, y1 = ocr.pad(line.box, *image.pixels.shape)
        mask[y0:y1, x0:x1] = True
    return mask


def cine() -> None:
    """deid-data's ultrasound cine loop through the lake's pixel decision (as the ingest reads it)."""
    from pathlib import Path

    import deid_data
    import pydicom

    from lake.pixels.decode import decode

    ds = pydicom.dcmread(Path(deid_data.__file__).parent / "data" / "ultrasounds" / "ultrasound-multiframe.dcm")
    decoded = decode(ds)
    assert decoded.frames is not None
    pixels.set_text_finder(ocr.find_text)
    t0 = time.perf_counter()
    decision = pixels.decide(ds, decoded, pixels.PixelPolicy.MASK_OR_QUARANTINE, pixels.assess(ds))
    seconds = time.perf_counter() - t0
    assert decision.frames is not None
    frames = decoded.frames.shape[0]
    per_frame = seconds / max(decision.phi.frames_read, 1) * 1000
    print(
        f"ultrasound-multiframe.dcm ({frames} frames): {decision.phi.masked_fraction:.1%} of the frame masked most, "
        f"{decision.phi.boxes} boxes, {seconds:.1f} s ({per_frame:.0f} ms a frame)"
    )


def main(pairs: int = 200, hard: int = 100, multiframe: int = 0) -> None:
    if not ocr.available():
        sys.exit(f"OCR is not available: {ocr.unavailable_reason()}")
    hits: dict[str, list[bool]] = defaultdict(list)
    areas: list[float] = []
    false_positives = 0
    seconds = []
    for image in corpus(seed=2024, count=pairs):
        t0 = time.perf_counter()
        found = ocr.find_text(image.pixels)
        seconds.append(time.perf_counter() - t0)
        if image.ink is None:
            false_positives += bool(found)
            continue
        mask = masked(image, found)
        areas.append(float(mask.mean()))
        band = BANDS[0] if image.size < 12 else BANDS[1] if image.size < 20 else BANDS[2]
        hits[band].append(bool(mask[image.ink].all()))
        hits[image.kind].append(hits[band][-1])
    every = [h for band in BANDS for h in hits[band]]
    print(f"recall (every text pixel masked): {np.mean(every):.1%} of {len(every)} text images")
    for key in (*BANDS, "CT", "MR", "US", "SC", "XC"):
        print(f"  {key}: {np.mean(hits[key]):.1%} of {len(hits[key])}")
    print(f"false positives (clean image altered): {false_positives / pairs:.1%} of {pairs}")
    print(f"masked area of a text image: median {np.median(areas):.2%}, max {max(areas):.2%}")
    print(f"OCR time per 512x512 image: median {np.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms")
    read = round(pixels.SERIES_FULL + (100 - pixels.SERIES_FULL) / pixels.SERIES_STRIDE)  # expected sample
    print(f"per derived series of 100 clean instances: {read} read, about {read * np.median(seconds):.2f} s")
    if hard:
        cases: dict[str, list[bool]] = defaultdict(list)
        for image in hard_corpus(seed=2025, count=hard):
            assert image.ink is not None
            cases[image.kind.split(":")[0]].append(bool(masked(image, ocr.find_text(image.pixels))[image.ink].all()))
        every = [h for v in cases.values() for h in v]
        print(f"hard cases recall: {np.mean(every):.1%} of {len(every)}")
        for case, values in cases.items():
            print(f"  {case}: {np.mean(values):.1%} of {len(values)}")
    if multiframe:
        cine()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:4]]
    main(*args)
