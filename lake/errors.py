"""One error hierarchy for the whole package.

Every error subclasses :class:`LakeError` and, where one fits, the built-in it specialises, so
callers can catch ``FileNotFoundError`` or ``ValueError`` as they already do. Messages name the
offending value (never a patient's data) and say how to fix the problem.
"""

from __future__ import annotations


class LakeError(Exception):
    """Base of every error raised by ``lake``."""


class LakeNotFoundError(LakeError, FileNotFoundError):
    """The folder is not a lake (no ``lake.json``)."""

    def __init__(self, path: object) -> None:
        if "://" in str(path):  # object storage
            super().__init__(
                f"no lake at {path!s}: create one with `lake init {path!s}` or `lake ingest ... --lake {path!s}`, "
                "or copy a folder lake "
                f"there with `lake replicate --lake DIR --to {path!s}`"
            )
            return
        super().__init__(
            f"no lake at {path!s}: create one with `lake init {path!s}` or `lake ingest ... --lake {path!s}`"
        )


class LakeExistsError(LakeError, FileExistsError):
    """``init`` was asked to create a lake where one already is."""


class LakePathError(LakeError, NotADirectoryError):
    """The lake path is a file, or lies under one, so it cannot be a lake folder."""


class KeyFileError(LakeError, OSError):
    """The secret key file is missing, unreadable, malformed or too widely readable."""


class KeyMismatchError(LakeError, PermissionError):
    """The key given does not belong to this lake (its fingerprint differs)."""


class LockTimeoutError(LakeError, TimeoutError):
    """Another process holds the lake's write lock for longer than we were willing to wait."""


class ConfigError(LakeError, ValueError):
    """A lake option, profile or schema file is invalid."""


class SchemaError(ConfigError):
    """A table schema in ``schemas/`` is inconsistent."""


class NotASourceCheckoutError(LakeError, FileNotFoundError):
    """A developer command (``lake docs``) that works on a source checkout ran from an installed wheel."""


class SourceError(LakeError, OSError):
    """A source path given on the command line cannot be read at all."""


class RejectedInput(LakeError, ValueError):
    """One input file is rejected; carries a PHI-free reason code and stage.

    ``detail`` may contain PHI (it can quote the file) and goes only to the vault's run log.
    """

    def __init__(self, stage: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason
        self.detail = detail


class NotInLakeError(LakeError, KeyError):
    """A UID or table name asked for is not in the lake."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0]) if self.args else ""


class PixelDataError(LakeError, ValueError):
    """Pixel data cannot be decoded or stored."""


class IntegrityError(LakeError, RuntimeError):
    """A write could not be verified (e.g. a codec round trip mismatch that has no fallback)."""


class CodecMismatchError(IntegrityError):
    """An encoded pixel chunk did not decode back to its input (the store falls back to a generic codec)."""


class GeometryError(LakeError, ValueError):
    """A series cannot be stacked into one volume (mixed orientations, several stacks, no positions)."""


class GeometryWarning(UserWarning):
    """A volume was built from a series with irregular spacing, gantry tilt or missing slices."""


class RecipeError(ConfigError):
    """A site de-identification recipe is invalid or would re-admit what the profile removes."""


class InvalidUIDError(LakeError, ValueError):
    """A value given as a DICOM UID is not one (UIDs are digits and dots, at most 64 characters)."""


class ReplicaError(LakeError, ValueError):
    """The destination of a replica is unusable (inside the lake, or holds another lake)."""


class QueryRefusedError(LakeError, PermissionError):
    """A SQL statement would write, change a setting, run more than one statement or open a file
    other than the lake's tables (see :mod:`lake.catalog.sandbox`); nothing was run."""


class VersionsVacuumedError(LakeError, FileNotFoundError):
    """Table versions asked for (a snapshot, a saved cohort) are no longer readable: ``lake vacuum``
    removed their files, or ``lake forget`` purged the table history."""


class LakeMismatchError(LakeError, ValueError):
    """A saved cohort (or other pinned reference) belongs to another lake (its lake id differs)."""


class CohortError(LakeError, ValueError):
    """A cohort definition or manifest is invalid, or a re-run does not give the saved rows."""


class ColumnError(LakeError, ValueError):
    """A DataFrame given to a helper (``lake.viz``, ``lake.pixels.batches``) lacks a documented column
    or holds values it cannot use (nulls where a value is needed)."""


class OcrUnavailableError(LakeError, RuntimeError):
    """Text detection cannot run: the ``ocr`` extra or Tesseract's language data is missing."""


class NotUnderReviewError(LakeError, ValueError):
    """``lake review`` was asked to act on an instance that is not in the review queue (stored and
    not flagged, already decided otherwise, or without the held copy the action needs)."""


class ExportError(LakeError, ValueError):
    """An export (``lake export teaching``) cannot be made: no studies selected, an output folder inside
    a lake or a key folder, unreadable teaching notes, an instance that cannot be rebuilt."""


class StorageError(LakeError, OSError):
    """The lake's storage (a folder or an object store) could not be read or written."""


class StoragePathError(LakeError, ValueError):
    """A path given to the storage layer leaves the lake (absolute, ``..``, empty parts, backslashes)."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """An object or file asked for is not in the lake's storage."""


class LeaseLostError(LakeError, RuntimeError):
    """The lake's write lease on object storage expired or was taken over before the work was committed;
    nothing more may be committed under it (run the command again)."""


class PixelWriteError(StorageError):
    """An ingest worker could not write or verify a pixel array (a problem of the lake's storage, not of
    an input file); the lake keeps its last committed batch: run the ingest again."""


class ClusterError(LakeError, ConnectionError):
    """The Dask scheduler given to ``lake ingest --scheduler`` could not be reached, or the cluster
    failed while the ingest ran (the lake keeps its last committed batch: run the ingest again)."""


class FolderLakeOnlyError(LakeError, NotImplementedError):
    """A command or operation that works on a lake in a folder only was given an object store lake."""

    def __init__(self, what: str, location: str) -> None:
        super().__init__(
            f"{what} needs a lake in a folder; {location} is in object storage: `lake replicate --lake "
            f"{location} --to DIR` makes a folder copy to run it on (see README, Scale and storage)"
        )


class StorageConflictError(StorageError):
    """Another writer changed the lake in object storage while a staged write was being published."""
