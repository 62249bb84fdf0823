"""Realistic synthetic ``instances`` rows at any scale, in Arrow chunks (for benchmarks and tests).

Patients have several studies over years (CT, MR, PET, CR, DX, US with typical series and
instance counts); each row carries typed columns and a DICOM JSON ``header_json`` of a few KB with
nested sequences and a private block, like a de-identified scanner header. Work is vectorised per
series (Arrow ``take`` and element-wise string joins), so ten million rows stream in minutes on
two cores without holding them all in memory. Every value is made up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lake.headers.schema import TableSchema, load_table_schema

SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
}


@dataclass(frozen=True)
class ModalityProfile:
    weight: float  # share of studies
    series: tuple[int, int]  # series per study (low, high)
    instances: tuple[int, int]  # instances per series (low, high)
    body_parts: tuple[str, ...]
    rows: int
    slice_thickness: float


PROFILES = {
    "CT": ModalityProfile(0.40, (2, 6), (40, 400), ("CHEST", "ABDOMEN", "HEAD", "PELVIS"), 512, 1.25),
    "MR": ModalityProfile(0.25, (4, 12), (20, 200), ("BRAIN", "KNEE", "SPINE", "PROSTATE"), 256, 3.0),
    "PT": ModalityProfile(0.05, (2, 3), (100, 300), ("WHOLEBODY",), 192, 3.0),
    "CR": ModalityProfile(0.12, (1, 2), (1, 1), ("CHEST", "HAND", "KNEE"), 2048, 0.0),
    "DX": ModalityProfile(0.10, (1, 3), (1, 2), ("CHEST", "SPINE"), 2500, 0.0),
    "US": ModalityProfile(0.08, (1, 3), (1, 40), ("ABDOMEN", "THYROID"), 600, 0.0),
}
_MODALITIES = list(PROFILES)
_WEIGHTS = np.array([p.weight for p in PROFILES.values()]) / sum(p.weight for p in PROFILES.values())


def _uid(rng: np.random.Generator) -> str:
    return f"2.25.{int(rng.integers(1, 2**62))}{int(rng.integers(0, 2**62)):019d}"


def _el(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _series_header(s: dict[str, Any]) -> dict[str, Any]:
    """The constant part of a series' instances' DICOM JSON headers (tag -> element)."""
    h = {
        "00080005": _el("CS", "ISO_IR 100"),
        "00080008": _el("CS", *s["ImageType"]),
        "00080016": _el("UI", s["SOPClassUID"]),
        "00080020": _el("DA", s["StudyDate"].strftime("%Y%m%d")),
        "00080021": _el("DA", s["StudyDate"].strftime("%Y%m%d")),
        "00080030": _el("TM", "101500"),
        "00080050": _el("SH"),
        "00080060": _el("CS", s["Modality"]),
        "00080070": _el("LO", s["Manufacturer"]),
        "00080090": _el("PN"),
        "00081030": _el("LO", s["StudyDescription"]),
        "0008103E": _el("LO", s["SeriesDescription"]),
        "00081090": _el("LO", s["ManufacturerModelName"]),
        "00081140": _el(
            "SQ", {"00081150": _el("UI", s["SOPClassUID"]), "00081155": _el("UI", s["FrameOfReferenceUID"])}
        ),
        "00100010": _el("PN", {"Alphabetic": s["PatientID"]}),
        "00100020": _el("LO", s["PatientID"]),
        "00100040": _el("CS", s["PatientSex"]),
        "00101010": _el("AS", s["PatientAge"]),
        "00120062": _el("CS", "YES"),
        "00120063": _el("LO", "DICOM PS3.15 E.1-1", "113100", "113107", "113108"),
        "00180015": _el("CS", s["BodyPartExamined"]),
        "00181020": _el("LO", "VE11C"),
        "00185100": _el("CS", "HFS"),
        "0020000D": _el("UI", s["StudyInstanceUID"]),
        "0020000E": _el("UI", s["SeriesInstanceUID"]),
        "00200011": _el("IS", s["SeriesNumber"]),
        "00200052": _el("UI", s["FrameOfReferenceUID"]),
        "00200037": _el("DS", *(s["ImageOrientationPatient"] or [])),
        "00280002": _el("US", 1),
        "00280004": _el("CS", "MONOCHROME2"),
        "00280010": _el("US", s["Rows"]),
        "00280011": _el("US", s["Columns"]),
        "00280030": _el("DS", *s["PixelSpacing"]),
        "00280100": _el("US", 16),
        "00280101": _el("US", 12),
        "00280102": _el("US", 11),
        "00280103": _el("US", 0),
        "00281050": _el("DS", 40),
        "00281051": _el("DS", 400),
        "00281052": _el("DS", -1024),
        "00281053": _el("DS", 1),
        "00400275": _el(
            "SQ",
            {
                "00401001": _el("SH", "RP" + s["SeriesInstanceUID"][-6:]),
                "00321064": _el("SQ", {"00080100": _el("SH", "X1"), "00080102": _el("SH", "99LAKE")}),
            },
        ),
        "00290010": _el("LO", "LAKE_SYNTHETIC"),
        "00291010": _el("LO", s["private_protocol"]),
    }
    if s["Modality"] == "CT":
        h |= {
            "00180050": _el("DS", s["SliceThickness"]),
            "00180060": _el("DS", s["KVP"]),
            "00181151": _el("IS", s["XRayTubeCurrent"]),
            "00181210": _el("SH", s["ConvolutionKernel"]),
            "00189345": _el("FD", s["CTDIvol"]),
            "00189311": _el("FD", 0.984),
        }
    elif s["Modality"] == "MR":
        h |= {
            "00180050": _el("DS", s["SliceThickness"]),
            "00180080": _el("DS", s["RepetitionTime"]),
            "00180081": _el("DS", s["EchoTime"]),
            "00180087": _el("DS", s["MagneticFieldStrength"]),
            "00181314": _el("DS", s["FlipAngle"]),
            "00180020": _el("CS", "SE"),
        }
    elif s["Modality"] == "PT":
        h["00540016"] = _el("SQ", {"00180031": _el("LO", "Fluorodeoxyglucose"), "00181074": _el("DS", 3.7e8)})
    return h


def _series_values(
    rng: np.random.Generator, patient: dict[str, Any], study: dict[str, Any], number: int
) -> dict[str, Any]:
    modality = study["Modality"]
    prof = PROFILES[modality]
    axial = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    tilt = float(rng.choice([0.0, 0.0, 0.0, 15.0])) if modality == "CT" else 0.0
    c, s_ = float(np.cos(np.radians(tilt))), float(np.sin(np.radians(tilt)))
    orientation: list[float] | None = [1.0, 0.0, 0.0, 0.0, round(c, 6), round(-s_, 6)] if tilt else axial
    if modality == "MR" and rng.random() < 0.3:
        orientation = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]  # sagittal
    if modality in ("CR", "DX", "US"):
        orientation = None  # projection and ultrasound images have no patient plane
    spacing = round(float(rng.choice([0.5, 0.7, 0.9])), 2)
    values = {
        **patient,
        **study,
        "SeriesInstanceUID": _uid(rng),
        "FrameOfReferenceUID": _uid(rng),
        "SeriesNumber": number,
        "SeriesDescription": f"{modality} series {number}",
        "SOPClassUID": SOP_CLASSES[modality],
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"] if modality in ("CT", "PT") else ["ORIGINAL", "PRIMARY"],
        "ImageOrientationPatient": orientation,
        "PixelSpacing": [spacing, spacing],
        "Rows": prof.rows,
        "Columns": prof.rows,
        "SliceThickness": prof.slice_thickness or None,
        "KVP": float(rng.choice([100.0, 120.0])) if modality in ("CT", "CR", "DX") else None,
        "XRayTubeCurrent": float(rng.integers(80, 400)) if modality == "CT" else None,
        "CTDIvol": round(float(rng.uniform(2, 20)), 2) if modality == "CT" else None,
        "ConvolutionKernel": str(rng.choice(["B30f", "B70f", "STANDARD"])) if modality == "CT" else None,
        "MagneticFieldStrength": float(rng.choice([1.5, 3.0])) if modality == "MR" else None,
        "RepetitionTime": round(float(rng.uniform(400, 6000)), 1) if modality == "MR" else None,
        "EchoTime": round(float(rng.uniform(10, 120)), 1) if modality == "MR" else None,
        "FlipAngle": float(rng.choice([90.0, 150.0])) if modality == "MR" else None,
        "Manufacturer": str(rng.choice(["SIEMENS", "GE MEDICAL SYSTEMS", "Philips"])),
        "ManufacturerModelName": str(rng.choice(["SOMATOM Force", "Discovery", "Ingenia"])),
        "private_protocol": f"proto-{int(rng.integers(0, 50))}",
        "tilt": tilt,
    }
    lo, hi = prof.instances
    values["n"] = int(rng.integers(lo, hi + 1))
    return values


def _patients(rng: np.random.Generator) -> Iterator[list[dict[str, Any]]]:
    """Series value dicts, one patient at a time."""
    while True:
        patient = {
            "PatientID": f"P-{int(rng.integers(0, 2**63)):016x}",
            "PatientSex": str(rng.choice(["F", "M"])),
            "PatientAge": f"{int(rng.integers(20, 90)):03d}Y",
        }
        day = date(2010, 1, 1) + timedelta(days=int(rng.integers(0, 3650)))
        series = []
        for _ in range(1 + min(int(rng.poisson(2.5)), 11)):
            modality = str(rng.choice(_MODALITIES, p=_WEIGHTS))
            prof = PROFILES[modality]
            study = {
                "StudyInstanceUID": _uid(rng),
                "StudyDate": day,
                "Modality": modality,
                "BodyPartExamined": str(rng.choice(prof.body_parts)),
                "StudyDescription": f"{modality} {prof.body_parts[0]}",
            }
            for number in range(1, int(rng.integers(prof.series[0], prof.series[1] + 1)) + 1):
                series.append(_series_values(rng, patient, study, number))
            day += timedelta(days=int(rng.exponential(240)) + 1)
        yield series


def _step_direction(s: dict[str, Any]) -> list[float]:
    orientation = s["ImageOrientationPatient"]
    if orientation is None or s["tilt"]:
        return [0.0, 0.0, 1.0]
    return [float(v) for v in np.cross(orientation[:3], orientation[3:])]


def _strings(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _hex_digests(rng: np.random.Generator, n: int) -> pa.Array:
    data = rng.bytes(32 * n).hex().encode()
    offsets = np.arange(0, 64 * n + 1, 64, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)])


def _chunk(rng: np.random.Generator, series: list[dict[str, Any]], schema: TableSchema, run: str) -> pa.Table:
    counts = np.array([s["n"] for s in series])
    n = int(counts.sum())
    which = np.repeat(np.arange(len(series)), counts)
    index = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)  # 0-based within series
    columns: dict[str, pa.Array] = {}
    per_series = {
        c.name: pa.array([s.get(c.name) for s in series], c.arrow_type)
        for c in schema.columns
        if c.name in series[0] and c.name != "n"
    }
    for name, array in per_series.items():
        columns[name] = array.take(which)
    # positions step along the slice direction: the normal, except for a tilted CT gantry, where
    # the table moves along z while the image plane is tilted
    spacing = np.array([s["SliceThickness"] or 0.0 for s in series])[which]
    steps = np.array([_step_direction(s) for s in series])[which]
    z = -200.0 + index * spacing
    positions = (np.array([-125.0, -125.0, -200.0]) + steps * (index * spacing)[:, None]).ravel()
    columns["ImagePositionPatient"] = pa.ListArray.from_arrays(np.arange(0, 3 * n + 1, 3, dtype=np.int32), positions)
    has_plane = np.array([s["ImageOrientationPatient"] is not None for s in series])[which]
    columns["ImagePositionPatient"] = pc.if_else(pa.array(has_plane), columns["ImagePositionPatient"], None)
    columns["SliceLocation"] = pa.array(z)
    columns["InstanceNumber"] = pa.array(index + 1)
    starts = np.array([datetime.combine(s["StudyDate"], datetime.min.time()) for s in series], "datetime64[us]")
    acquired = starts[which] + np.timedelta64(10, "h") + (index * 500_000).astype("timedelta64[us]")
    columns["AcquisitionDateTime"] = pa.array(acquired)
    columns["StudyTime"] = pa.array(np.full(n, 10 * 3600 * 1_000_000 + 15 * 60 * 1_000_000, np.int64))
    sop = pc.binary_join_element_wise(
        "2.25.", _strings(rng.integers(1, 2**62, n)), _strings(rng.integers(10**17, 10**18, n)), ""
    )
    columns["SOPInstanceUID"] = sop
    columns["PatientAgeYears"] = pc.cast(pc.utf8_slice_codeunits(columns["PatientAge"], 0, 3), pa.float64())
    columns["frame_count"] = pa.array(np.ones(n, np.int64))
    columns["BitsAllocated"] = pa.array(np.full(n, 16, np.int64))
    columns["BitsStored"] = pa.array(np.full(n, 12, np.int64))
    columns["PhotometricInterpretation"] = pa.array(np.full(n, "MONOCHROME2", object), pa.string())
    columns["pixel_status"] = pa.array(np.full(n, "stored", object), pa.string())
    rows_ = columns["Rows"].to_numpy(zero_copy_only=False)
    columns["pixel_bytes"] = pa.array(rows_ * rows_ * 2)
    columns["pixel_dtype"] = pa.array(np.full(n, "uint16", object), pa.string())
    columns["pixel_array"] = pc.binary_join_element_wise("series/", columns["SeriesInstanceUID"], "")
    columns["pixel_frame_start"] = pa.array(index)
    columns["pixel_sha256"] = _hex_digests(rng, n)
    columns["ingest_run"] = pa.array(np.full(n, run, object), pa.string())
    columns["PatientIdentityRemoved"] = pa.array(np.full(n, "YES", object), pa.string())
    heads = pa.array([json.dumps(_series_header(s), separators=(",", ":"))[:-1] for s in series]).take(which)
    columns["header_json"] = pc.binary_join_element_wise(
        heads,
        ',"00080018":{"vr":"UI","Value":["',
        sop,
        '"]},"00200013":{"vr":"IS","Value":[',
        _strings(index + 1),
        ']},"00200032":{"vr":"DS","Value":[-125.0,-125.0,',
        _strings(z),
        ']},"00201041":{"vr":"DS","Value":[',
        _strings(z),
        "]}}",
        "",
    )
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in schema.arrow_schema]
    return pa.Table.from_arrays(arrays, schema=schema.arrow_schema)


def synthetic_instances(
    n: int, seed: int = 0, chunk_rows: int = 250_000, run: str = "synthetic", schema: TableSchema | None = None
) -> Iterator[pa.Table]:
    """About ``n`` instance rows (whole patients: at least ``n``) in tables of ~``chunk_rows``."""
    schema = schema or load_table_schema("instances")
    rng = np.random.default_rng(seed)
    done = 0
    pending: list[dict[str, Any]] = []
    pending_rows = 0
    for patient in _patients(rng):
        pending.extend(patient)
        pending_rows += sum(s["n"] for s in patient)
        if pending_rows >= chunk_rows or done + pending_rows >= n:
            yield _chunk(rng, pending, schema, run)
            done += pending_rows
            pending, pending_rows = [], 0
            if done >= n:
                return
