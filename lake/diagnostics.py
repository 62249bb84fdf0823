"""Warnings and log records of the libraries, captured per input file as PHI-free reason codes.

pydicom, the pixel decoders and ``deid`` describe a file's problems in messages that quote its
values (``Invalid value for VR UI: '1.2.123...'``), through Python ``warnings``, ``logging``
records (``pydicom`` and any other logger; the decoders' ``logger.exception`` tracebacks too) or,
for ``deid``, its own stream writer. While a file is processed, :func:`capture` takes all of them
off the console and gives each a reason code made only from a fixed pattern table or from the
logger / warning category name, never from the message text (:func:`classify`). The ingest counts
the codes in the run summary and writes the messages to the vault's run log only.

Captures are per process and not thread-safe (they swap the root logger's handlers and use
``warnings.catch_warnings``): one file at a time per process, as the ingest workers do.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

#: At most this many distinct messages per file are kept for the vault log (codes are all counted).
MAX_MESSAGES = 50
#: Characters kept of one message in the vault log.
MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True)
class FileWarning:
    """One kind of message seen while processing a file: ``code`` is PHI-free, ``message`` is not."""

    code: str
    message: str = field(repr=False)  # may quote the file: the vault's run log only
    count: int = 1


# -- reason codes ----------------------------------------------------------------------------------
# (pattern searched in the message, code). A code may use the pattern's named groups, each of
# which matches only a fixed vocabulary (a VR is two capital letters), so no value reaches a code.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), code)
    for pattern, code in (
        (r"libjpeg", "decoder:libjpeg_failed"),
        (r"Pillow does not support .*12-bit", "decoder:jpeg_12bit_fallback"),
        (r"J2K data|openjpeg|JPEG 2000", "decoder:openjpeg_failed"),
        (r"decompression bomb", "decoder:decompression_bomb"),
        (r"decoding plugin has changed", "decoder:plugin_changed"),
        (r"JPEG-LS|charls", "decoder:jpegls_failed"),
        (r"Unable to decode", "decoder:all_plugins_failed"),
        (r"Invalid value for VR (?P<vr>[A-Z]{2})\b", "pydicom:invalid_value_vr_{vr}"),
        (r"exceeds the maximum length of \d+ allowed for VR (?P<vr>[A-Z]{2})\b", "pydicom:value_too_long_vr_{vr}"),
        (r"PN component length", "pydicom:value_too_long_vr_pn"),
        (r"Expected explicit VR, but found implicit VR", "pydicom:implicit_vr_in_explicit_file"),
        (r"Expected implicit VR, but found explicit VR", "pydicom:explicit_vr_in_implicit_file"),
        (r"VR lookup failed", "pydicom:unknown_vr"),
        (r"Unknown VR", "pydicom:unknown_vr"),
        (r"Error while processing tag", "pydicom:value_conversion_failed"),
        (r"End of file reached before delimiter", "pydicom:truncated_before_delimiter"),
        (r"Expected sequence item|Expected delimiter|Delimiter .* found", "pydicom:bad_sequence_delimiter"),
        (r"excess padding", "pydicom:pixel_data_excess_padding"),
        (r"pixel data .*(shorter|longer|missing)|does not match the expected length", "pydicom:pixel_data_length"),
        (r"character set|unknown encoding", "pydicom:character_set"),
        (r"Invalid tag|invalid element", "pydicom:invalid_element"),
        (r"cannot be assigned|has been converted|value of type", "pydicom:value_type_converted"),
        (r"Bits Stored.*does not match", "pydicom:bits_stored_mismatch"),
        (r"Photometric Interpretation", "pydicom:photometric_interpretation_mismatch"),
        (r"module will be removed|deprecated", "library:deprecated_api"),
    )
)
_NAME = re.compile(r"[^A-Za-z0-9_]+")
_PACKAGE = re.compile(r"[/\\](?:site-packages|dist-packages)[/\\]([A-Za-z0-9_]+)")
_CATEGORY = re.compile(r": ([A-Za-z_]*Warning): ")  # in a warning formatted by logging.captureWarnings


def _name(text: str, default: str) -> str:
    """``text`` reduced to an identifier (logger, package and class names come from code, not files)."""
    return _NAME.sub("_", text).strip("_")[:60] or default


def _match(message: str) -> str | None:
    for pattern, code in _RULES:
        found = pattern.search(message)
        if found:
            groups = {k: (v or "").lower() for k, v in found.groupdict().items()}
            return code.format(**groups)
    return None


def _package(filename: str) -> str:
    """The top-level package a warning came from, by its source file (``python`` when unknown)."""
    found = _PACKAGE.search(filename)
    if found:
        return _name(found.group(1), "python")
    if "/lake/" in filename.replace("\\", "/"):
        return "lake"
    return "python"


def classify_record(record: logging.LogRecord) -> str:
    """The reason code of a log record: from the pattern table, else from the logger's name."""
    source = _name(record.name.split(".")[0], "python")
    if record.name.startswith("pydicom.pixels.decoders"):
        source = "decoder"
    message = _message_of(record)
    code = _match(message)
    if code is not None:
        return code
    if record.name == "py.warnings":
        category = _CATEGORY.search(message)
        return f"{_package(message)}:{_name(category.group(1), 'Warning') if category else 'Warning'}"
    if record.exc_info and record.exc_info[0] is not None:
        return f"{source}:{_name(record.exc_info[0].__name__, 'Exception')}"
    return f"{source}:{record.levelname.lower()}"


def classify_warning(message: warnings.WarningMessage) -> str:
    """The reason code of a Python warning: from the pattern table, else from its category and package."""
    code = _match(str(message.message))
    if code is not None:
        return code
    return f"{_package(str(message.filename))}:{_name(message.category.__name__, 'Warning')}"


def _message_of(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # a malformed format string in a library's call
        text = str(record.msg)
    if record.exc_info and record.exc_info[0] is not None and record.exc_info[0].__name__ not in text:
        text = f"{record.exc_info[0].__name__}: {text}"
    return text


# -- capturing -------------------------------------------------------------------------------------
class Capture:
    """What was reported while a :func:`capture` block ran."""

    def __init__(self) -> None:
        self.logged: Counter[tuple[str, str]] = Counter()
        self.warned: Counter[tuple[str, str]] = Counter()
        self._caught: list[warnings.WarningMessage] = []

    def _drain(self) -> None:
        for message in self._caught:
            self.warned[(classify_warning(message), str(message.message)[:MAX_MESSAGE_CHARS])] += 1
        self._caught.clear()

    def note(self, code: str, message: str) -> None:
        """Record a message that did not come as a warning or log record (e.g. ``deid``'s own output)."""
        self.logged[(code, message[:MAX_MESSAGE_CHARS])] += 1

    def merge(self, other: Capture) -> None:
        other._drain()
        self._drain()
        self.logged.update(other.logged)
        self.warned.update(other.warned)

    @property
    def messages(self) -> list[str]:
        """Every distinct message so far (may quote the file)."""
        return [message for _code, message in self._counts()]

    def _counts(self) -> Counter[tuple[str, str]]:
        # pydicom's warn_and_log sends each message both as a warning and as a log record: count it once.
        self._drain()
        keys = set(self.logged) | set(self.warned)
        return Counter({k: max(self.logged[k], self.warned[k]) for k in keys})

    def codes(self) -> set[str]:
        return {code for code, _message in self._counts()}

    def results(self) -> tuple[FileWarning, ...]:
        """One :class:`FileWarning` per distinct (code, message), at most :data:`MAX_MESSAGES`."""
        counts = self._counts()
        ordered = sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))
        out = [FileWarning(code, message, n) for (code, message), n in ordered[:MAX_MESSAGES]]
        shown = {w.code for w in out}
        # Every code stays represented even when the messages are cut.
        for (code, message), n in ordered[MAX_MESSAGES:]:
            if code not in shown:
                shown.add(code)
                out.append(FileWarning(code, message, n))
        return tuple(out)


class _Handler(logging.Handler):
    def __init__(self, target: Capture) -> None:
        super().__init__(logging.WARNING)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.logged[(classify_record(record), _message_of(record)[:MAX_MESSAGE_CHARS])] += 1


_active: list[Capture] = []


def current() -> Capture | None:
    """The innermost active capture of this process, if any."""
    return _active[-1] if _active else None


@contextmanager
def capture(forward: bool = True) -> Iterator[Capture]:
    """Take every warning and log record (WARNING and above, any logger) off the console.

    Inside the block the root logger has only the capturing handler, so nothing else prints.
    With ``forward`` what was captured is added to the enclosing capture when the block ends
    (without one it is dropped); ``forward=False`` drops it always (noise that is not about a file,
    such as a library's deprecation message at import).
    """
    cap = Capture()
    root = logging.getLogger()
    handlers = root.handlers[:]
    handler = _Handler(cap)
    root.handlers = [handler]
    _active.append(cap)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cap._caught = caught
            try:
                yield cap
            finally:
                cap._drain()
    finally:
        _active.pop()
        root.handlers = handlers
        parent = current()
        if forward and parent is not None:
            parent.merge(cap)


def silence_process() -> None:
    """For a worker process: nothing it logs or warns outside a capture reaches stdout or stderr.

    A forked worker inherits the parent's handlers (the command line's stderr handler); a spawned
    one would print through ``logging.lastResort``. Records go to a ``NullHandler`` instead, and
    warnings into logging. File descriptors 1 and 2 are pointed at ``/dev/null`` too, for what C
    libraries (decoders) write there directly.
    """
    manager = logging.Logger.manager
    loggers = [logging.getLogger()] + [lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for h in list(lg.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                lg.removeHandler(h)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    logging.captureWarnings(True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)
