"""The demo lake: a synthetic longitudinal archive (default) or pydicom's test files, ingested as they are.

``build_demo(LAKE)`` writes the archive to a temporary folder and ingests it (:mod:`lake.demo.build`);
``write_archive(folder, ArchiveSpec())`` writes the archive (:mod:`lake.demo.archive`);
``SUMMARY_QUERIES`` show what it holds over time, by SQL over the ``studies`` view
(:mod:`lake.demo.summary`); ``demo_sources()`` are the test-file folders (:mod:`lake.demo.testfiles`).
"""

from __future__ import annotations

from lake.demo.archive import Archive, ArchiveSpec, PatientRecord, StudyRecord, write_archive
from lake.demo.build import DEMO_IDENTITY, DemoBuild, build_demo
from lake.demo.summary import SUMMARY_QUERIES
from lake.demo.testfiles import TEST_FILES_QUERY, demo_sources

#: The test-file demo's example query (the name ``lake demo --from-test-files`` always used).
DEMO_QUERY = TEST_FILES_QUERY

__all__ = [
    "DEMO_IDENTITY",
    "DEMO_QUERY",
    "SUMMARY_QUERIES",
    "TEST_FILES_QUERY",
    "Archive",
    "ArchiveSpec",
    "DemoBuild",
    "PatientRecord",
    "StudyRecord",
    "build_demo",
    "demo_sources",
    "write_archive",
]
