"""Keeping a lake whole over the years: verify, replicate and restore, forget a patient, vacuum.

Every operation here holds the lake's write lock while it changes anything and records one row in
the ``runs`` table (the audit log).
"""
