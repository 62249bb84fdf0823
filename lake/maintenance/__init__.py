"""Keeping a lake whole over the years: verify, replicate and restore, forget a patient, vacuum.

Every operation here holds the lake's write lock while it changes anything and records one row in
the ``runs`` table (the audit log).
"""

#: How long ``lake vacuum`` keeps table files an old snapshot needs (time travel); here, not in
#: :mod:`lake.maintenance.vacuum`, so that ``lake --help`` shows it without importing deltalake.
DEFAULT_RETENTION_HOURS = 7 * 24
