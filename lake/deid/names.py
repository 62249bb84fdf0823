"""Spelling-tolerant matching of identifier tokens: Unicode folding, transliteration, distinctiveness.

A name is written ``MÜLLER`` in PatientName, ``Mueller`` or ``MULLER`` in a descriptor, ``JMULLER``
in a series name. Matching therefore happens on *folded* text (:func:`fold_text`): NFKD without
combining marks, upper case, and a small transliteration table for the letters NFKD does not
decompose (``ß``, ``ø``, ``æ``, ``ł``...). Identifier patterns (:func:`variant_regex`) accept both
transliterations of the letters that have two (``ü`` -> ``UE`` or ``U``, ``å`` -> ``AA`` or ``A``),
and an ASCII digraph in an identifier (``MUELLER``) also matches the folded single letter
(``Müller`` folds to ``MULLER``).

Distinctiveness (:func:`distinctiveness`) decides how far a token may reach: long tokens are
found inside other tokens (``SMITH`` in ``HEAD_SMITHJ``), short ones only as whole tokens, and
tokens that are too short or are common DICOM or clinical vocabulary (``CT``, ``PERFUSION``,
``HEAD``, ``DEFAULT``) only as a whole value, so a patient named like a technical term does not
erase that term from every header.
"""

from __future__ import annotations

import re
import unicodedata
from enum import IntEnum
from functools import lru_cache

#: letters NFKD leaves alone (or decomposes in a way German/Nordic/Slavic spellings do not use)
_SINGLE = {
    "ß": "SS",
    "ẞ": "SS",
    "Ø": "O",
    "ø": "O",
    "Æ": "AE",
    "æ": "AE",
    "Œ": "OE",
    "œ": "OE",
    "Ł": "L",
    "ł": "L",
    "Đ": "D",
    "đ": "D",
    "Ð": "D",
    "ð": "D",
    "Þ": "TH",
    "þ": "TH",
    "ı": "I",
    "Ħ": "H",
    "ħ": "H",
}
#: letters with two usual transliterations: the digraph and the bare letter
_TWO_WAY = {"ä": "AE", "ö": "OE", "ü": "UE", "å": "AA", "ø": "OE"}
_DIGRAPHS = {"AE": "A", "OE": "O", "UE": "U", "AA": "A"}
_DIGRAPH_RE = re.compile("|".join(_DIGRAPHS))

#: identifier tokens at least this long (letters and digits) are found inside other tokens
SUBSTRING_MIN = 5
#: shorter than this, a token is found only as a whole value
TOKEN_MIN = 3

#: Common words: DICOM vocabulary (modalities, image types, body parts, sequence and vendor names)
#: and words that archives use as placeholders. A patient or ID spelled like one of these is
#: matched only as a whole value: ``PERFUSION`` as ImageType is research data, not a name.
_COMMON_WORDS = """
    CT MR US PT NM CR DX MG XA RF OT SR PR SEG KO DOC RTSTRUCT RTPLAN RTDOSE RTIMAGE RTRECORD REG IO PX
    ES SM OP OPT OPM OPV IVOCT IVUS XC GM ECG EPS HD BI BMD AR AU DG LS MS PLAN FID HC ASMT TG VA OSS OAM
    LEN KER SRF RESP POS STAIN RWV BDUS CP DS DF DM EC FA LP MA OCT
    ORIGINAL DERIVED PRIMARY SECONDARY AXIAL SAGITTAL CORONAL OBLIQUE LOCALIZER REFORMATTED MPR MIP MINIP
    PERFUSION DIFFUSION ADC TRACEW CINE SCREEN SAVE OTHER NORM MOSAIC SUBTRACTION VOLUME PROJECTION
    IMAGE IMAGES CALIBRATION SCOUT SURVEY TOPOGRAM SPIRAL HELICAL SEQUENCED STANDARD SOFT BONE LUNG
    MAGNITUDE PHASE REAL IMAGINARY FMRI BOLD DWI DTI EPI GRE TSE FSE STIR FLAIR SWI TOF MPRAGE SPACE
    VIBE HASTE TRUFI FISP FLASH PROPELLER BLADE FIESTA CISS DIXON WATER FAT INPHASE OUTPHASE
    HEAD BRAIN SKULL NECK CHEST THORAX BREAST ABDOMEN PELVIS SPINE CSPINE TSPINE LSPINE SSPINE COCCYX
    SHOULDER ARM ELBOW FOREARM WRIST HAND FINGER HIP LEG THIGH KNEE ANKLE FOOT HEART LIVER KIDNEY
    EXTREMITY WHOLEBODY HEADNECK ABDOMENPELVIS CHESTABDOMEN ORBIT SINUS JAW EAR EYE PROSTATE BLADDER
    UTERUS OVARY PANCREAS SPLEEN COLON CARDIAC CAROTID AORTA RECTUM STOMACH ESOPHAGUS LARYNX PAROTID
    DEFAULT PHANTOM TEST TESTING ANONYMOUS ANONYMIZED ANONYMISED ANON UNKNOWN NONE NULL EMPTY NAME
    PATIENT STUDY SERIES SCAN EXAM EXAMINATION RESEARCH CLINICAL ROUTINE CONTRAST NONCONTRAST
    WITH WITHOUT LEFT RIGHT BILATERAL UPPER LOWER ANTERIOR POSTERIOR PORTABLE EMERGENCY REPORT
    DOCTOR NURSE STAFF HOSPITAL CLINIC CENTER CENTRE DEPARTMENT RADIOLOGY IMAGING MEDICAL UNIVERSITY
    SIEMENS PHILIPS TOSHIBA CANON HITACHI AGFA FUJI FUJIFILM KODAK CARESTREAM HOLOGIC OFFIS ACME
    GENERAL ELECTRIC HEALTHCARE SYSTEMS DICOM VALUE NORMAL ABNORMAL FINDING FINDINGS
"""
COMMON_TOKENS = frozenset(_COMMON_WORDS.split())


def _fold_char(c: str) -> str:
    if c in _SINGLE:
        return _SINGLE[c]
    if c.isascii():
        return c.upper()
    base = "".join(ch for ch in unicodedata.normalize("NFKD", c) if not unicodedata.combining(ch))
    return base.upper()


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Upper case, NFKD without combining marks, ``ß`` -> ``SS``, ``ø`` -> ``O``, ``ł`` -> ``L``..."""
    if text.isascii():
        return text.upper()
    return "".join(_fold_char(c) for c in text)


def fold_text(text: str) -> tuple[str, list[int] | None]:
    """The folded text and, for each of its characters, the index of the character it came from.

    ``None`` as the map means the identity (ASCII text folds character for character).
    """
    if text.isascii():
        return text.upper(), None
    out: list[str] = []
    origin: list[int] = []
    for i, c in enumerate(text):
        f = _fold_char(c)
        out.append(f)
        origin.extend([i] * len(f))
    return "".join(out), origin


def alnum(text: str) -> str:
    """The letters and digits of a folded token (its length measures distinctiveness)."""
    return "".join(c for c in fold(text) if c.isalnum())


class Reach(IntEnum):
    """How an identifier token is matched in text."""

    VALUE = 0  # only when it is the whole value
    TOKEN = 1  # as a whole token (letters and digits around it end the match)
    INSIDE = 2  # also inside a longer token: JSMITH, SMITH2, HEAD_SMITHJ


@lru_cache(maxsize=8192)
def distinctiveness(identifier: str) -> Reach:
    """Short or common tokens only as whole values; medium as tokens; long inside tokens."""
    letters = alnum(identifier)
    words = re.findall(r"[^\W_]+", fold(identifier))
    if len(letters) < TOKEN_MIN or all(w in COMMON_TOKENS or (w.isdigit() and len(w) < TOKEN_MIN) for w in words):
        return Reach.VALUE
    if len(words) > 1:
        return Reach.TOKEN  # a phrase ("12 Imaginary Lane", "Alonso Quixote"): its ends are token ends
    if len(letters) >= SUBSTRING_MIN and not letters.isdigit():
        return Reach.INSIDE
    return Reach.TOKEN


@lru_cache(maxsize=8192)
def variant_regex(identifier: str) -> str:
    """A regex over folded text matching the identifier's spellings (transliterations, separators).

    Runs of separators (spaces, ``^``, commas, hyphens, apostrophes) match any run of separators,
    including none: ``O'BRIEN`` matches ``OBRIEN``, ``QUIXOTE^ALONSO`` matches ``Quixote Alonso``.
    """
    parts: list[str] = []
    sep = False
    for c in identifier.strip():
        low = c.lower()
        if low in _TWO_WAY:
            pair = _TWO_WAY[low]
            parts.append(f"(?:{pair}|{_DIGRAPHS[pair]})")
            sep = False
            continue
        f = _fold_char(c)
        if not any(ch.isalnum() for ch in f):
            if not sep:
                parts.append(r"[\W_]*")
            sep = True
            continue
        sep = False
        parts.append(re.escape(f))
    regex = "".join(parts)
    # an ASCII digraph typed in the identifier also matches the folded bare letter
    return _DIGRAPH_RE.sub(lambda m: f"(?:{m.group(0)}|{_DIGRAPHS[m.group(0)]})", regex) if regex else regex
