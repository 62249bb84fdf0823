"""A study corrected in the PACS is pulled again and applied by the lake's ``--on-update`` policy.

Orthanc corrects the PatientID of a study through its REST API (``/patients/{id}/modify``: Orthanc
1.10 refuses a PatientID change from ``/studies/{id}/modify``) with the UIDs kept and ``KeepSource``
false (the original goes): the same SOP Instance UIDs now come with other
content. Over DICOMweb and over DIMSE, a re-pull finds that study changed (its keyed fingerprint),
pulls it alone and applies each policy: ``replace`` moves it to the new pseudonym, ``keep-first``
and ``flag`` leave the lake as it was (``flag`` keeps the new versions in the vault for review).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pydicom import dcmread

import lake
from lake.ingest import ingest
from lake.testing.orthanc import dcmsend, modalities
from lake.testing.synthetic import PatientSpec, write_study
from tests.sources.helpers import FAST, LAKE_AET, orthanc_or_skip

pytest.importorskip("dicomweb_client", reason="dicomweb-client is a dependency: pip install -e '.[test]'")
pytest.importorskip("pynetdicom", reason="pynetdicom is a dependency: pip install -e .")

POLICIES = {"replace": "replaced", "keep-first": "kept_first", "flag": "flagged"}


def test_a_study_corrected_in_orthanc_is_pulled_again_and_applied_by_each_policy(tmp_path: Path) -> None:
    key = tmp_path / "keys" / "lake.key"
    wrong = write_study(
        PatientSpec("WRONG^PATIENT", "MRN-WRONG-1", "19700101", "ACCW"), tmp_path / "a", date(2020, 1, 2), 3
    )
    other = write_study(
        PatientSpec("OTHER^PATIENT", "MRN-OTHER-1", "19800101", "ACCO"), tmp_path / "b", date(2021, 3, 4), 2
    )
    with orthanc_or_skip(tmp_path / "orthanc", modalities((LAKE_AET, 1))) as server:
        dcmsend(server, [*wrong, *other])
        lakes = {}
        for policy in POLICIES:
            for protocol, url in (("dicomweb", server.dicomweb), ("dimse", server.dimse)):
                root = tmp_path / f"{protocol}-{policy}"
                lake.init(root, key_file=key, on_update=policy)
                assert ingest(root, [url], key_file=key, pull=FAST).ingested == 5
                lakes[root] = (policy, url, _study_patient(root, key))
        # Orthanc 1.10 refuses a new PatientID from /studies/{id}/modify ("the parent PatientID cannot be
        # manually modified"): the wrong patient, who holds that study alone, is corrected instead.
        [orthanc_id] = server.post("/tools/find", {"Level": "Patient", "Query": {"PatientID": "MRN-WRONG-1"}})
        server.post(
            f"/patients/{orthanc_id}/modify",
            {
                "Replace": {"PatientID": "MRN-RIGHT-1", "PatientName": "RIGHT^PATIENT"},
                "Keep": ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
                "KeepSource": False,
                "Force": True,  # Orthanc asks for it to keep UIDs or change PatientID
            },
        )
        assert len(server.get("/studies")) == 2  # the corrected study replaced the original
        for root, (policy, url, before) in lakes.items():
            again = ingest(root, [url], key_file=key, pull=FAST)
            assert (again.studies["studies_pulled"], again.studies["studies_skipped"]) == (1, 1), root.name
            assert (again.seen, again.ingested, again.duplicates, dict(again.updates)) == (
                3, 0, 0, {POLICIES[policy]: 3},
            ), root.name  # fmt: skip
            after = _study_patient(root, key)
            assert (after != before) == (policy == "replace"), root.name  # replace: the new pseudonym
            flagged = sorted((Path(f"{key}.vault") / "updates").glob("*.dcm"))
            if policy == "flag":
                assert flagged and all(dcmread(p).PatientID == "MRN-RIGHT-1" for p in flagged)
            third = ingest(root, [url], key_file=key, pull=FAST)
            assert (third.seen, third.studies["studies_skipped"]) == (0, 2), root.name


def _study_patient(root: Path, key: Path) -> tuple[str, ...]:
    """The pseudonymous PatientIDs of the lake's studies of three instances and of two."""
    lk = lake.open(root, key_file=key)
    query = "SELECT count(*) AS n, min(PatientID) AS p, count(DISTINCT PatientID) AS k FROM instances"
    rows = lk.sql(query + " GROUP BY StudyInstanceUID ORDER BY n DESC").to_dicts()
    assert [(r["n"], r["k"]) for r in rows] == [(3, 1), (2, 1)]
    return tuple(r["p"] for r in rows)
