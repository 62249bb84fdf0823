"""The BulkDataURIs ``header_json`` holds (no imports: the header lookup must stay light).

``bulk:<sha256 hex>`` resolves to the ``bulk`` table's row with the header's SOPInstanceUID and
that ``sha256``; ``lake:bulkdata-omitted`` marks a value the lake left out (see :mod:`lake.headers.bulk`).
"""

#: Scheme of a BulkDataURI that resolves to a ``bulk`` row: ``bulk:<sha256 hex>``.
BULK_SCHEME = "bulk:"
#: The BulkDataURI of a value left out of the lake (over a cap, or pixel data inside a sequence).
BULK_OMITTED = "lake:bulkdata-omitted"
#: The view of every stored ``bulk`` row (the ``bulk`` view shows those of committed instances only).
STORED_BULK_VIEW = "_stored_bulk"
