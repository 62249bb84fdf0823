"""Longitudinal cohorts: filters, baseline and follow-ups as one printable query; saved manifests.

``lk.cohort()`` returns a :class:`Cohort` (:mod:`lake.cohorts.builder`); the criteria helpers
(:mod:`lake.cohorts.filters`) build the common filters; ``cohort.save(PATH)`` and
:func:`load_cohort` pin and re-run a cohort (:mod:`lake.cohorts.manifest`).
"""

from __future__ import annotations

from lake.cohorts.builder import Cohort
from lake.cohorts.filters import (
    Criterion,
    Level,
    acquisition,
    body_part,
    contrast,
    description,
    instances,
    manufacturer,
    modality,
    sql,
)
from lake.cohorts.manifest import LoadedCohort, Manifest, load_cohort, save_query

__all__ = [
    "Cohort",
    "Criterion",
    "Level",
    "LoadedCohort",
    "Manifest",
    "acquisition",
    "body_part",
    "contrast",
    "description",
    "instances",
    "load_cohort",
    "manufacturer",
    "modality",
    "save_query",
    "sql",
]
