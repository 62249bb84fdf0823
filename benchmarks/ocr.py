"""OCR text detection of burned-in identifiers (lake.deid.ocr): recall, false positives and cost.

Recall: the share of synthetic images with a line of text (lake.testing.text_corpus: CT, MR, US, SC
and photographs; names, IDs, dates; random place, size 8-30 px, font, contrast) whose every text
pixel is masked by what ``find_text`` found (padded as the lake pads). False positives: the share
of the same images without text in which anything was found (they would be altered).
Cost: seconds per image, and per series of 100 derived CT frames read as the ingest reads them
(4 instances, then 1 in 8). Run: ``python benchmarks/ocr.py [PAIRS]`` (default 200 pairs).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict

import numpy as np

from lake.deid import ocr
from lake.testing.text_corpus import corpus


def main(pairs: int = 200) -> None:
    if not ocr.available():
        sys.exit(f"OCR is not available: {ocr.unavailable_reason()}")
    images = corpus(seed=2024, count=pairs)
    hits: dict[str, list[bool]] = defaultdict(list)
    false_positives = 0
    seconds = []
    for image in images:
        t0 = time.perf_counter()
        found = ocr.find_text(image.pixels)
        seconds.append(time.perf_counter() - t0)
        if image.ink is None:
            false_positives += bool(found)
            continue
        mask = np.zeros(image.pixels.shape, dtype=bool)
        for line in found:
            x0, y0, x1, y1 = ocr.pad(line.box, *image.pixels.shape)
            mask[y0:y1, x0:x1] = True
        band = "8-11 px" if image.size < 12 else "12-19 px" if image.size < 20 else "20-30 px"
        hits[band].append(bool(mask[image.ink].all()))
        hits[image.kind].append(hits[band][-1])
    every = [h for band in ("8-11 px", "12-19 px", "20-30 px") for h in hits[band]]
    print(f"recall (every text pixel masked): {np.mean(every):.1%} of {len(every)} text images")
    for key in ("8-11 px", "12-19 px", "20-30 px", "CT", "MR", "US", "SC", "XC"):
        print(f"  {key}: {np.mean(hits[key]):.1%} of {len(hits[key])}")
    print(f"false positives (clean image altered): {false_positives / pairs:.1%} of {pairs}")
    print(f"OCR time per 512x512 image: median {np.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms")
    read = sum(1 for i in range(1, 101) if i <= 4 or i % 8 == 0)
    print(f"per derived series of 100 clean instances: {read} read, about {read * np.median(seconds):.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
