"""Identifiers too short or too common to search for: the lake's and DICOM's own vocabulary.

An identifier that is a word every lake holds (a column name, a Zarr or Delta marker such as
``default``, a DICOM keyword, a defined term of a coded attribute such as ``CT`` or ``HEAD``, a
vendor such as ``OFFIS``) finds the lake's structure, not a patient: searching for it makes the
audit report hits on every clean lake. Such identifiers are not searched and are listed as
``not searched`` with the reason instead, so the auditor sees what was left out.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache

#: Shorter identifiers stand for nothing in particular ("CT", "M", "01").
MIN_LENGTH = 3
#: An identifier of digits only must have at least this many: shorter numbers are measurements,
#: counts and code values in every lake ("1234" is a code value of DCMTK's SR templates).
MIN_DIGITS = 6

#: Words of the lake's file formats: Zarr v3 metadata, Delta log actions, Parquet and Arrow types,
#: the lake's own JSON files (fixity, ranges, reports, lake.json), and values the lake writes.
FORMAT_WORDS = """
default regular bytes blosc zstd lz4 gzip snappy little big sharding_indexed crc32c end start shape data_type
chunk_grid chunk_shape chunk_key_encoding separator fill_value codecs name configuration typesize cname clevel
shuffle bitshuffle noshuffle blocksize index_codecs index_location attributes lake zarr zarr_format node_type
array group dimension_names storage_transformers int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16
float32 float64 bool commitInfo timestamp operation operationParameters operationMetrics write append overwrite
optimize delete merge vacuum engineInfo clientVersion protocol minReaderVersion minWriterVersion readerFeatures
writerFeatures timestampNtz metaData description add remove txn path size modificationTime dataChange stats
numRecords minValues maxValues nullCount tightBounds partitionValues partitionColumns schemaString struct string
long integer short byte double float date timestamp_ntz boolean binary decimal elementType containsNull
valueContainsNull keyType valueType nullable metadata fields type parquet provider format options createdTime
configuration checkpoint _last_checkpoint delta delta-rs part c000 sha256 files run covers first last version
format_version ARROW schema pandas true false null none nan inf unknown mode execution_time_ms num_retries
num_added_files num_removed_files num_partitions num_added_rows ingest ingested duplicates rejected seen
summary reports deid tables pixels key fingerprint vault runs rejects header_index header_json instances series
studies patients timeline identity crosswalk settings option options profile profile_edition recipe recipe_sha256
date_offset_days burned_in_policy mask-or-quarantine mask quarantine keep-crosswalk stored no_pixels quarantined
undecodable burned_in_annotation_yes masked file_too_large zip_member_size_mismatch zip_member_too_large_or_bomb
zip_total_too_large not_dicom truncated bad_zip not_a_regular_file unreadable_permission dicomdir_not_an_instance
missing_sop_class_uid missing_sop_instance_uid parse validate deidentify pixels_stage warnings decoder pydicom
interrupted completed failed ok success outcome seconds bytes_read pixel_status reject_reasons empty_sources
anonymous anonymized anonymised removed deidentified de-identified redacted dummy test phantom demo sample
example unnamed other yes no basic application level confidentiality annex dicom ps3.15
"""

#: Defined terms of coded (CS) attributes found in every archive: modalities (CID 29/33), image
#: types, body parts (PS3.16 Annex L), patient positions, photometric interpretations, sequence and
#: scan options, units, character sets.
DEFINED_TERMS = """
CT MR US CR DX MG NM PT XA RF OT SC SR KO PR SEG RTSTRUCT RTPLAN RTDOSE RTIMAGE RTRECORD ECG EPS HD IO IVUS OP
OPT PX SM XC ES GM DOC REG RWV BI BMD DG LS MS OAM OCT OPM OPR OPV OSS PLAN RESP SMR SRF STAIN TG VA VL AU AR
ASMT BDUS CTPROTOCOL DMS FID HC IVOCT LEN M3D OPTBSV OPTENF POS RTINTENT RTRAD RTSEGANN TEXTUREMAP XAPROTOCOL
CD DD DF DM DS EC FA FS LP MA MRA ST VF ANN
ORIGINAL DERIVED PRIMARY SECONDARY AXIAL LOCALIZER OTHER REFORMATTED MPR MIP MINIP PROJECTION IMAGE SCREEN SAVE
VOLUME PERFUSION DIFFUSION ADC TRACEW MOSAIC NORM DIS2D DIS3D MAG MAGNITUDE PHASE REAL IMAGINARY SUBTRACTION
POST_CONTRAST PRE_CONTRAST STATIC DYNAMIC GATED WHOLE BODY RECON TOMO TOMOSYNTHESIS SCOUT TOPOGRAM HELICAL
SPIRAL SEQUENCED CINE STATIONARY FLUOROSCOPY SINGLE PLANE BIPLANE CALIBRATION QUANTITATIVE MONTAGE RESAMPLED
HEAD BRAIN SKULL NECK CHEST THORAX ABDOMEN PELVIS SPINE CSPINE TSPINE LSPINE SSPINE COCCYX EXTREMITY ARM LEG
KNEE HIP SHOULDER ELBOW WRIST HAND FOOT ANKLE FINGER TOE BREAST HEART LIVER KIDNEY LUNG WHOLEBODY HEADNECK
ABDOMENPELVIS CHESTABDOMEN CHESTABDPELVIS JAW TMJ SELLA ORBIT EYE EAR SINUS LARYNX THYROID AORTA CAROTID
HUMERUS FEMUR TIBIA FIBULA RADIUS ULNA CLAVICLE SCAPULA PANCREAS SPLEEN STOMACH COLON PROSTATE UTERUS OVARY
BLADDER RIB SACRUM HEEL FOREARM THIGH CALF LOWER UPPER LEFT RIGHT BOTH BILATERAL
HFS HFP HFDR HFDL FFS FFP FFDR FFDL AFDR AFDL LFP LFS RFP RFS SITTING STANDING SUPINE PRONE
MONOCHROME1 MONOCHROME2 RGB PALETTE COLOR YBR_FULL YBR_FULL_422 YBR_PARTIAL_422 YBR_PARTIAL_420 YBR_ICT YBR_RCT
MONOCHROME MIXED TRUE_COLOR SAMPLED DISTORTED
SE IR GR EP RM SK MTC SS TRSS SP MP OSP NONE PER RG CG PPG FC PFF PFP SAT1 SAT2 SAT3 FILTERED_GRE
2D 3D ROW COL COLUMN AP PA LL RL RLD LLD RLO LLO LAT LATERAL OBLIQUE ATTN DECY NORM SCAT DTIM RAN
HU BQML CNTS GML MGML PCT CM2 PROPCNTS CPS US OD Z_EFF ED EDW HU_MOD MM MS DV DI WSD SD SI SYN
ISO_IR ISO_IR_100 ISO_IR_192 ISO_2022_IR_6 ISO_2022_IR_100 GB18030 GBK ISO_IR_13 ISO_IR_87 ISO_IR_149
ISO_8859 UTF-8 IDENTITY LINEAR SIGMOID LINEAR_EXACT INVERSE PLUS MINUS REFERENCE HALF FULL
DCM SRT SCT LN LOINC UCUM RADLEX 99SDM NCIT FMA BARCODE ISO ALPHABETIC IDEOGRAPHIC PHONETIC
PATIENT STUDY SERIES INSTANCE FRAME CONTAINER TEXT CODE NUM DATETIME TIME PNAME UIDREF SCOORD SCOORD3D TCOORD
COMPOSITE WAVEFORM SEPARATE CONTINUOUS CONTAINS HAS OBS CONTEXT ACQ PROPERTIES INFERRED SELECTED FROM
COMPLETE PARTIAL VERIFIED UNVERIFIED PRELIMINARY FINAL
WHITE BLACK FLAT WEDGE BUTTERFLY MULTIPLE
"""

#: Manufacturers and DICOM toolkits named in the Manufacturer, ImplementationVersionName and
#: coding-scheme attributes of public test corpora and clinical archives.
VENDORS = """
OFFIS DCMTK GDCM PYDICOM DCM4CHE DCM4CHEE DICOM3TOOLS DVTK MERGECOM ORTHANC CONQUEST DCMJS
HIGHDICOM DICOGNITO DEID SIEMENS GE GEMS PHILIPS TOSHIBA CANON HITACHI FUJI FUJIFILM AGFA KODAK CARESTREAM
HOLOGIC KONICA MINOLTA ESAOTE SAMSUNG MINDRAY VARIAN ELEKTA ACCURAY BRAINLAB MEDRAD BRACCO PICKER MARCONI
ELSCINT ADAC BRUKER VISAGE SECTRA MEDIMAGE DICOMSERVER LEADTOOLS ETIAM OSIRIX HOROS TERARECON
MEDICAL SYSTEMS SYSTEM HEALTHCARE HEALTHINEERS HEALTH IMAGING SOLUTIONS INC LTD GMBH CORP CORPORATION COMPANY
KURATORIUM
"""

#: Frequent English words (a name rarely is one, and these stand in every description).
ENGLISH = """
the and for are but not you all any can had her was one our out day get has him his how man new now old see two
way who boy did its let put say she too use here there this that these those with from into over under about
after before again then than them they their what when where which while will would could should shall may might
must have been being were is it in on at by of or an as be do go if me my no so to up us we am
image images study series report document documents structured reporting template templates name names none
test tests phantom sample samples demo example examples default unknown anonymous patient patients doctor
hospital clinic department radiology imaging physician operator station institution address phone
observer field beam neuro
"""


@lru_cache(maxsize=1)
def _dicom_keywords() -> frozenset[str]:
    from pydicom.datadict import keyword_dict

    return frozenset(k.casefold() for k in keyword_dict)


@lru_cache(maxsize=1)
def _lake_names() -> frozenset[str]:
    """Table, column and view names from ``schemas/``, and the names of the lake's enumerations."""
    from lake.deid.policy import PixelPolicy
    from lake.deid.profile import Action, ProfileOption
    from lake.resources import schema_dir

    names: set[str] = set()
    for entry in schema_dir("tables").iterdir():
        if entry.name.endswith(".toml"):
            doc = tomllib.loads(entry.read_text(encoding="utf-8"))
            names.add(str(doc.get("table", {}).get("name", "")))
            names.update(str(c.get("name", "")) for c in doc.get("columns", []))
    for entry in schema_dir("views").iterdir():
        if entry.name.endswith(".sql"):
            names.add(entry.name[:-4].split("_", 1)[-1])
    for enum in (ProfileOption, Action, PixelPolicy):
        names.update(str(member.value) for member in enum)
        names.update(str(member.name) for member in enum)
    return frozenset(n.casefold() for n in names if n)


@lru_cache(maxsize=1)
def _vocabulary() -> dict[str, str]:
    """Each word (casefolded) with the vocabulary it belongs to; the first source named wins."""
    out: dict[str, str] = {}
    from lake.deid.names import COMMON_TOKENS  # what the engine itself matches only as whole values

    sources = (
        ("lake vocabulary", set(FORMAT_WORDS.split()) | set(_lake_names())),
        ("DICOM defined term", set(DEFINED_TERMS.split())),
        ("DICOM or clinical word", set(COMMON_TOKENS)),
        ("DICOM keyword", set(_dicom_keywords())),
        ("manufacturer or toolkit", set(VENDORS.split())),
        ("English word", set(ENGLISH.split())),
    )
    for source, words in sources:
        for word in words:
            out.setdefault(word.casefold(), source)
            for part in re.split(r"[_\-]", word):  # option and reason codes: their words too
                if len(part) >= MIN_LENGTH and source == "lake vocabulary":
                    out.setdefault(part.casefold(), source)
    return out


def not_searched_reason(identifier: str) -> tuple[str, str] | None:
    """(reason, detail) when ``identifier`` is too short or too common to search for, else None.

    The reason is ``too short`` or ``too common``; the detail names the rule or vocabulary.
    """
    text = identifier.strip()
    significant = re.sub(r"[\W_]", "", text)
    if len(text) < MIN_LENGTH or len(significant) < MIN_LENGTH:
        return "too short", f"under {MIN_LENGTH} letters or digits"
    if significant.isdigit() and len(significant) < MIN_DIGITS:
        return "too short", f"under {MIN_DIGITS} digits"
    if len(set(significant.casefold())) <= 1:
        return "too common", "one character repeated"
    vocabulary = _vocabulary()
    source = vocabulary.get(text.casefold())
    if source is not None:
        return "too common", source
    words = [w for w in re.split(r"[\W_]+", text.casefold()) if w]
    if len(words) > 1 and all(w in vocabulary or len(w) < MIN_LENGTH for w in words):
        return "too common", "every word in a vocabulary"
    return None


def is_vocabulary(word: str) -> bool:
    """True for a word of the lake's, DICOM's or the other vocabularies above (case-insensitive)."""
    return word.casefold() in _vocabulary()


#: A pixel reason the lake writes (``instances.pixel_reason``) that names rules of the ``deid``
#: package's pixel filter: ``deid_rule:blacklist:<label>``, ``masked:deid_rule:<label>+<label>``.
_RULE_REASON = re.compile(r"(?:masked:)?deid_rule:(?:(?:graylist|blacklist|whitelist):)?(?P<labels>.+)", re.DOTALL)


@lru_cache(maxsize=1)
def _rule_labels() -> frozenset[str]:
    from lake.deid.burned_in import rule_labels

    return frozenset(label.casefold() for label in rule_labels())


def is_rule_reason(text: str) -> bool:
    """True for a pixel reason naming ``deid`` filter rules by their labels ("Stanford Blacklist ...").

    The labels are the ``deid`` package's curated vocabulary, never a file's value; a statistic may
    hold one cut short (Delta log ``minValues`` keep 32 characters), so the last label may be a prefix.
    """
    m = _RULE_REASON.fullmatch(text.strip())
    if m is None:
        return False
    labels = _rule_labels()
    *whole, last = m.group("labels").casefold().split("+")
    return all(label in labels for label in whole) and any(known.startswith(last) for known in labels)
