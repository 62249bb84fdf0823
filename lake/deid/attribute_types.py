"""Which variant of a combined action (X/Z, X/D, X/Z/D, Z/D) keeps an instance's IOD conformant.

PS3.15 E.1-1 lets a combined action fall back to Z (Type 2 attributes) or D (Type 1 attributes)
only where the IOD requires the attribute. This is the small table of the attributes with a
combined action, with the attribute type the standard composite IODs give them (PS3.3), taken as
the strongest type among the modules that carry the attribute in the IODs where it is used:

- ``"1"``: D (a dummy value),
- ``"2"``: Z (zero length),
- ``"3"``: X (removed).

``ENHANCED`` overrides the type in enhanced multi-frame IODs (those with Shared Functional Groups),
where the Enhanced General Equipment and Multi-frame Functional Groups modules make a few of these
attributes Type 1.
"""

from __future__ import annotations

from pydicom import Dataset

from lake.deid.profile import Action

#: tag -> attribute type in the standard composite IODs that use it.
TYPES: dict[int, str] = {
    0x00080012: "3",  # InstanceCreationDate, SOP Common
    0x00080013: "3",  # InstanceCreationTime, SOP Common
    0x00080021: "3",  # SeriesDate, General Series
    0x00080022: "3",  # AcquisitionDate, General Image
    0x00080023: "2",  # ContentDate, General Image (2C)
    0x0008002A: "3",  # AcquisitionDateTime, General Image
    0x00080031: "3",  # SeriesTime, General Series
    0x00080032: "3",  # AcquisitionTime, General Image
    0x00080033: "2",  # ContentTime, General Image (2C)
    0x00080080: "3",  # InstitutionName, General Equipment
    0x00080082: "3",  # InstitutionCodeSequence
    0x00081010: "3",  # StationName, General Equipment
    0x00081070: "3",  # OperatorsName, General Series
    0x00081072: "3",  # OperatorIdentificationSequence
    0x00081110: "3",  # ReferencedStudySequence, General Study
    0x00081111: "3",  # ReferencedPerformedProcedureStepSequence, General Series
    0x00100020: "2",  # PatientID, Patient
    0x00102203: "3",  # PatientSexNeutered, Patient (2C: non-human patients only, see below)
    0x00180010: "2",  # ContrastBolusAgent, Contrast/Bolus
    0x00181000: "3",  # DeviceSerialNumber, General Equipment
    0x00181030: "3",  # ProtocolName, General Series
    0x00181400: "3",  # AcquisitionDeviceProcessingDescription, DX Image
    0x0018700A: "3",  # DetectorID, DX Detector
    0x0018700C: "3",  # DateOfLastDetectorCalibration, DX Detector
    0x0018700E: "3",  # TimeOfLastDetectorCalibration, DX Detector
    0x00189516: "3",  # StartAcquisitionDateTime, X-Ray 3D reconstruction
    0x00189517: "3",  # EndAcquisitionDateTime
    0x00189919: "1",  # InstructionPerformedDateTime, Instruction Sequence items
    0x00321060: "3",  # RequestedProcedureDescription, Request Attributes
    0x00400555: "2",  # AcquisitionContextSequence, Acquisition Context
    0x0040A032: "3",  # ObservationDateTime, SR Document Content (1C only for some templates)
    0x00700084: "2",  # ContentCreatorName, Presentation State Identification
    0x22000002: "3",  # LabelText, Media Creation Management
    0x22000005: "3",  # BarcodeValue
    0x30080054: "2",  # FirstTreatmentDate, RT Treatment Summary Record
    0x30080056: "2",  # MostRecentTreatmentDate
    0x30080105: "3",  # SourceSerialNumber, RT Treatment Record
    0x30080250: "2",  # TreatmentDate, RT General Treatment Record
    0x30080251: "2",  # TreatmentTime
    0x300A0006: "2",  # RTPlanDate, RT General Plan
    0x300A0007: "2",  # RTPlanTime
    0x300A00B2: "2",  # TreatmentMachineName, RT Beams
    0x300E0008: "2",  # ReviewerName, Approval (2C: when approved)
    0x3010004C: "3",  # IntendedPhaseStartDate
    0x3010004D: "3",  # IntendedPhaseEndDate
    0x30100056: "3",  # RTTreatmentApproachLabel
    0x30100077: "3",  # TreatmentSite
}

#: Type in enhanced multi-frame IODs, where it differs.
ENHANCED: dict[int, str] = {
    0x00080023: "1",  # ContentDate, Multi-frame Functional Groups
    0x00080033: "1",  # ContentTime
    0x0008002A: "1",  # AcquisitionDateTime (1C, Enhanced MR/CT Image)
    0x00080080: "1",  # InstitutionName, Enhanced General Equipment
    0x00181000: "1",  # DeviceSerialNumber, Enhanced General Equipment
}


def attribute_type(tag: int, ds: Dataset) -> str:
    """The attribute type ("1", "2" or "3") of ``tag`` in the IOD ``ds`` (a top-level dataset)."""
    if tag in ENHANCED and "SharedFunctionalGroupsSequence" in ds:
        return ENHANCED[tag]
    if tag == 0x00102203:
        # Type 2C: required (may be empty) only for non-human patients.
        return "2" if "PatientSpeciesDescription" in ds or "PatientSpeciesCodeSequence" in ds else "3"
    return TYPES.get(tag, "3")


def concrete_action(action: Action, tag: int, ds: Dataset) -> Action:
    """Resolve X/Z, X/D, X/Z/D and Z/D to X, Z or D for this IOD; other actions are returned unchanged."""
    if action not in (
        Action.REMOVE_OR_ZERO,
        Action.REMOVE_OR_DUMMY,
        Action.REMOVE_OR_ZERO_OR_DUMMY,
        Action.ZERO_OR_DUMMY,
    ):
        return action
    kind = attribute_type(tag, ds)
    if action is Action.ZERO_OR_DUMMY:
        return Action.DUMMY if kind == "1" else Action.ZERO
    if action is Action.REMOVE_OR_ZERO:
        return Action.ZERO if kind in ("1", "2") else Action.REMOVE
    if action is Action.REMOVE_OR_DUMMY:
        # X/D: "X unless D is required"; a Type 2 attribute must be present too, and D is the
        # only non-removal the row allows.
        return Action.DUMMY if kind in ("1", "2") else Action.REMOVE
    return {"1": Action.DUMMY, "2": Action.ZERO}.get(kind, Action.REMOVE)
