"""Bulk imports of the user base: CSV or JSONL files, gzipped or not, read line by line."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import IO, Any, cast

import psycopg
import sqlalchemy as sa
from marshmallow import ValidationError
from psycopg.rows import dict_row

from koc.core.db import utcnow
from koc.core.fields import INT32_MAX, INT64_MAX
from koc.core.storage import Storage
from koc.extensions import db
from koc.members.schemas import UserImportRowSchema
from koc.members.services.candidate_rules import (
    EXCLUDED_SCORE,
    current_rules,
    merge_score_sql,
)
from koc.members.services.users import upsert_users_bulk

IMPORT_BATCH_SIZE = 1000
# Lines per COPY chunk on PostgreSQL: one commit each, so a killed job loses at most this many.
PG_CHUNK_ROWS = 200_000
CHUNK_BYTES = 1024 * 1024
# The encodings a CRM export declares, and how a report names them.
ENCODINGS = {"utf-8": "UTF-8", "gb18030": "GB18030"}
FORMATS = ("csv", "jsonl")

@dataclass
class ImportReport:
    """How far an import is; saved with its job after each chunk, so a re-run resumes."""

    processed: int = 0
    failed: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # Lines naming a forgotten person: skipped, never merged (see koc.members.services.privacy).
    forgotten: int = 0
    # The last line of the file whose chunk is merged (committed, once the caller commits).
    lines_done: int = 0
    bytes_read: int = 0
    finished: bool = False
    # The first bad lines, with reasons; a file of millions of bad lines keeps memory flat.
    errors: list[dict[str, Any]] = field(default_factory=list)
    max_errors: int = 1000
    # Every line refused since the caller last took them (the full report, saved chunk by
    # chunk beside the job: `take_recent`); never part of the job's row.
    recent: list[tuple[int, str]] = field(default_factory=list)
    # Seconds this run spent in each phase (reading, copy, checks and merge, progress/commit):
    # what the bench prints; never saved with the job.
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - started

    def refuse(self, line: int, message: str) -> None:
        self.failed += 1
        self.recent.append((line, message))
        if len(self.errors) < self.max_errors:
            self.errors.append({"line": line, "message": message})

    def take_recent(self) -> list[tuple[int, str]]:
        taken, self.recent = self.recent, []
        return taken

    def progress(self) -> dict[str, Any]:
        """What a job keeps beside processed, failed and errors (and resumes from)."""
        return {name: value for name, value in asdict(self).items()
                if name not in ("processed", "failed", "errors", "max_errors", "recent", "timings")}

    @classmethod
    def restore(cls, *, processed: int, failed: int, errors: list[dict[str, Any]],
                progress: dict[str, Any] | None) -> ImportReport:
        known = {name: value for name, value in (progress or {}).items()
                 if name in cls.__dataclass_fields__
                 and name not in ("errors", "max_errors", "recent", "timings")}
        # An earlier attempt's "stopped on an internal error" is not about a line of the file.
        lines = [error for error in errors if error.get("line") is not None]
        return cls(processed=processed, failed=failed, errors=lines, **known)


# One physical line of an import file: far above any real user's line (50 tags of 64 characters
# take 13 KiB), small enough that a file without newlines cannot fill the worker's memory.
MAX_LINE_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 500
_GZIP_MAGIC = b"\x1f\x8b"
# Characters no column should hold: C0 and C1 controls (PostgreSQL refuses NUL outright) and lone
# surrogates, which JSON escapes can produce and which neither database driver can encode.
_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# JSON may give these as 3.5; the schema would truncate that to 3 rather than refuse it.
_COUNT_FIELDS = frozenset({"orders_count", "spend_cents", "shares_count", "community_posts_count"})


def _printable(text: str, limit: int = 40) -> str:
    """A name taken from the file, safe to store and print: escapes, and cut short."""
    text = _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= limit else text[:limit] + "..."


def _binary_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes, str | None]]:
    """(number, bytes, why the line cannot be used, or None) per physical line."""
    buffered = (stream if isinstance(stream, io.BufferedReader)
                else io.BufferedReader(cast(io.RawIOBase, stream)))
    source: io.BufferedIOBase = buffered
    if buffered.peek(len(_GZIP_MAGIC))[:len(_GZIP_MAGIC)] == _GZIP_MAGIC:
        source = gzip.GzipFile(fileobj=buffered, mode="rb")
    number = 0
    try:
        while raw := source.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := source.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                # The head stands in for the line, so a CSV record it belongs to is refused
                # with it rather than read without it.
                yield number, raw[:MAX_LINE_BYTES] + b"\n", f"longer than {MAX_LINE_BYTES} bytes"
                continue
            yield number, raw, None
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        yield number + 1, b"\n", f"the compressed data is damaged from here on ({exc})"


def _text_lines(stream: IO[bytes], encoding: str = "utf-8"
                ) -> Iterator[tuple[int, str, str | None]]:
    """Decode each line on its own, so one bad byte costs one line, not the file.

    A line that cannot be used is still yielded (with U+FFFD for bad bytes) with the reason,
    so a CSV reader keeps its place and the caller refuses the line. GB18030 never uses the
    newline byte inside a character, so splitting at it first is safe for both encodings.
    """
    label = ENCODINGS[encoding]
    bom = codecs.BOM_UTF8 if encoding == "utf-8" else b""
    for number, line, unusable in _binary_lines(stream):
        raw = line.removeprefix(bom) if number == 1 and bom else line
        try:
            yield number, raw.decode(encoding), unusable
        except UnicodeDecodeError as exc:
            yield number, raw.decode(encoding, "replace"), unusable or (
                f"not valid {label} (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})")


ParsedLine = tuple[int, dict[str, Any] | str]


def _parse_jsonl(stream: IO[bytes], encoding: str = "utf-8") -> Iterator[ParsedLine]:
    for number, line, problem in _text_lines(stream, encoding):
        if problem is not None:
            yield number, problem
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"not valid JSON: {exc.msg}"
            continue
        except ValueError:  # Python refuses to convert integers of more than 4,300 digits
            yield number, "a number has too many digits"
            continue
        except RecursionError:
            yield number, "nested too deeply"
            continue
        yield number, record if isinstance(record, dict) else "a line must be a JSON object"


def _parse_csv(stream: IO[bytes], encoding: str = "utf-8") -> Iterator[ParsedLine]:
    problems: dict[int, str] = {}

    def lines() -> Iterator[str]:
        for number, line, problem in _text_lines(stream, encoding):
            if problem is not None:
                problems[number] = problem
            yield line

    reader = csv.DictReader(lines())
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        yield 1, f"the header row is not valid CSV: {exc}"
        return
    if 1 in problems:
        yield 1, f"the header row is {problems[1]}; nothing was read"
        return
    if fieldnames is None or "external_id" not in fieldnames:
        yield 1, "the header row must name an external_id column"
        return
    last_line = reader.line_num
    while True:
        row: dict[str | None, Any] | str
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row = f"not valid CSV: {exc}"
        first_line, last_line = last_line + 1, reader.line_num
        # A record refused for its own reasons is reported once, at its last line (where the
        # reader is); lines that could not be read are reported each at its own number.
        unreadable = [n for n in range(first_line, last_line + 1) if n in problems]
        for number in unreadable:
            yield number, problems.pop(number)
        if unreadable:
            continue
        if isinstance(row, str):
            yield last_line, row
            continue
        if None in row:
            yield last_line, "more cells than header columns"
            continue
        record: dict[str, Any] = {k: v for k, v in row.items()
                                  if k is not None and v not in ("", None)}
        if "tags" in record:
            record["tags"] = [t.strip() for t in record["tags"].split("|") if t.strip()]
        yield last_line, record
    # The damaged end of a gzipped file reaches the reader as a blank line, which it skips.
    yield from sorted(problems.items())


def _flatten(messages: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(messages, dict):
        for key, inner in messages.items():
            name = _printable(str(key))
            yield from _flatten(inner, f"{prefix}.{name}" if prefix else name)
    elif isinstance(messages, list):
        for message in messages:
            yield from _flatten(message, prefix)
    else:
        yield prefix or "_", str(messages)


def _describe(problems: dict[str, Any]) -> str:
    by_field: dict[str, list[str]] = {}
    for name, message in _flatten(problems):
        by_field.setdefault(name, []).append(message)
    text = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in by_field.items())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def _raw_problems(raw: dict[str, Any]) -> dict[str, list[str]]:
    """What the schema would let through but no column can store, or would silently change."""
    problems: dict[str, list[str]] = {}
    for name, value in raw.items():
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            if isinstance(text, str) and (found := _UNSTORABLE.search(text)):
                kind = ("a lone surrogate" if "\ud800" <= found.group() <= "\udfff"
                        else "a control character")
                problems[str(name)] = [f"holds {kind} (U+{ord(found.group()):04X})"]
                break
        if name in _COUNT_FIELDS and isinstance(value, float) and not value.is_integer():
            problems[name] = ["must be a whole number"]
    return problems


def _check_line(schema: UserImportRowSchema, raw: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(record, problems): every field's problem at once, so one pass fixes the line.

    The schema's fields bound numbers and dates to what their columns hold (koc.core.fields).
    """
    problems: dict[str, Any] = _raw_problems(raw)
    try:
        record = schema.load(raw)
    except ValidationError as exc:
        record = exc.valid_data if isinstance(exc.valid_data, dict) else {}
        messages = exc.messages if isinstance(exc.messages, dict) else {"_": exc.messages}
        for name, message in messages.items():
            problems.setdefault(str(name), message)
    return record, problems


class CountingReader(io.RawIOBase):
    """A readable stream over another stream or over an iterator of chunks (an object in the
    store), counting the bytes read so progress and time left can be told from the size."""

    def __init__(self, source: IO[bytes] | Iterable[bytes]) -> None:
        super().__init__()
        self.bytes_read = 0
        self._file: IO[bytes] | None = None
        self._chunks: Iterator[bytes] | None = None
        if isinstance(source, io.IOBase) or hasattr(source, "read"):
            self._file = cast(IO[bytes], source)
        else:
            self._chunks = iter(source)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._file is not None:
            data = self._file.read(len(view))
        else:
            if not self._pending and self._chunks is not None:
                self._pending = next(self._chunks, b"")
            data, self._pending = self._pending[:len(view)], self._pending[len(view):]
        view[:len(data)] = data
        self.bytes_read += len(data)
        return len(data)


class Throughput:
    """Rate and time left of a running import, from the lines and bytes read so far.

    A stopwatch, not the calendar: it measures this run (a resumed one counts from where it
    resumed).
    """

    def __init__(self, *, size: int | None, start: ImportReport | None = None) -> None:
        self.size = size
        self.started = time.monotonic()
        self.lines_at_start = start.lines_done if start else 0

    def figures(self, report: ImportReport) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        lines = report.lines_done - self.lines_at_start
        # A resumed run reads the file again from its first byte (skipping merged lines).
        read = report.bytes_read
        eta = None
        if self.size and read > 0 and not report.finished:
            eta = round(max(self.size - report.bytes_read, 0) * elapsed / read, 1)
        return {"lines_read": report.lines_done, "rows_per_second": round(lines / elapsed),
                "bytes_read": report.bytes_read, "size": self.size,
                "eta_seconds": 0.0 if report.finished else eta}


def _restore(report: ImportReport | None) -> ImportReport:
    return report if report is not None else ImportReport()


def import_users(stream: IO[bytes] | CountingReader, *, fmt: str = "csv",
                 encoding: str = "utf-8", on_progress: Callable[[ImportReport], None] | None
                 = None, resume: ImportReport | None = None, now: datetime | None = None,
                 chunk_rows: int | None = None) -> ImportReport:
    """Validate every line, merge the good ones chunk by chunk, report the bad ones by line.

    The file is bytes (CSV with a header in any column order, or JSONL; UTF-8 with or without
    a BOM, or GB18030; gzipped or not), read line by line: a line with a bad byte, a value its
    column cannot hold or a JSON error is refused on its own. After each chunk `on_progress`
    gets the report and the caller commits: `resume` (the report of the last committed chunk)
    skips the lines already merged, so a run killed half-way and run again ends with the same
    rows as one uninterrupted run. Merges are upserts keyed on external_id that touch only the
    rows whose values changed, so an unchanged file updates nothing.

    PostgreSQL gets the file through COPY into a staging table and checks it in SQL
    (`_merge_chunk`); SQLite takes batched upserts checked by the schema.
    """
    report = _restore(resume)
    counted = stream if isinstance(stream, CountingReader) else CountingReader(stream)
    buffered = io.BufferedReader(counted, buffer_size=CHUNK_BYTES)
    parse = _parse_jsonl if fmt == "jsonl" else _parse_csv
    done = report.lines_done
    lines = ((n, raw) for n, raw in parse(cast(IO[bytes], buffered), encoding) if n > done)
    now = now or utcnow()
    if db.session.get_bind().dialect.name == "postgresql":
        _session_settings()
    if db.session.get_bind().dialect.name == "postgresql" and fmt == "csv" and encoding == "utf-8":
        chunks = _fast_csv_chunks(cast(IO[bytes], buffered), report, now,
                                  chunk_rows or PG_CHUNK_ROWS)
    elif db.session.get_bind().dialect.name == "postgresql":
        chunks = _copy_chunks(lines, report, now, chunk_rows or PG_CHUNK_ROWS)
    else:
        chunks = _batch_chunks(lines, report, chunk_rows or IMPORT_BATCH_SIZE)
    for _ in chunks:
        report.bytes_read = counted.bytes_read
        if on_progress:
            with report.timed("commit"):
                on_progress(report)
    report.bytes_read = counted.bytes_read
    report.finished = True
    return report


def _take_refusals(report: ImportReport, refused: list[tuple[int, str]]) -> None:
    for number, message in sorted(refused):
        report.refuse(number, message)
    refused.clear()


def _batch_chunks(lines: Iterator[ParsedLine], report: ImportReport,
                  size: int) -> Iterator[None]:
    """SQLite: the schema checks each line, a batch is one INSERT ... ON CONFLICT."""
    schema = UserImportRowSchema()
    batch: list[dict[str, Any]] = []
    refused: list[tuple[int, str]] = []
    last = report.lines_done
    for number, raw in lines:
        last = number
        if isinstance(raw, str):
            refused.append((number, raw))
            continue
        record, problems = _check_line(schema, raw)
        if problems:
            refused.append((number, _describe(problems)))
            continue
        batch.append(record)
        if len(batch) >= size:
            _flush_batch(batch, refused, report, last)
            yield
    _flush_batch(batch, refused, report, last)
    yield


def _flush_batch(batch: list[dict[str, Any]], refused: list[tuple[int, str]],
                 report: ImportReport, last: int) -> None:
    created, updated, merged, forgotten = upsert_users_bulk(batch)
    report.forgotten += forgotten
    report.processed += merged
    report.created += created
    report.updated += updated
    report.unchanged += merged - created - updated
    batch.clear()
    db.session.flush()
    _take_refusals(report, refused)
    report.lines_done = last


# --- PostgreSQL: COPY into staging, checks and merge in SQL --------------------------------------

_TEXT_COLUMNS = ("external_id", "display_name", "city", "store_code", "last_order_at")
_STAGED = (*_TEXT_COLUMNS, *sorted(_COUNT_FIELDS), "tags")
_KNOWN_FIELDS = frozenset(_STAGED)
# Session-private and never written to the WAL; emptied by each commit, so a chunk's rows live
# exactly as long as its transaction, and a worker that dies leaves nothing behind (a named
# UNLOGGED table would outlive it).
_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS koc_user_import_staging (line bigint NOT NULL, "
    + ", ".join(f"{name} text" for name in _STAGED) + ") ON COMMIT DELETE ROWS; "
    "CREATE TEMP TABLE IF NOT EXISTS koc_user_import_refused (line bigint NOT NULL, "
    "problems text[] NOT NULL, "
    + ", ".join(f"{name} text" for name in _STAGED) + ") ON COMMIT DELETE ROWS"
)
_COPY_SQL = f"COPY koc_user_import_staging (line, {', '.join(_STAGED)}) FROM STDIN"


def _copy_text(value: str) -> str:
    # COPY's text format: backslash is its escape (\N is NULL); tabs and newlines cannot occur
    # (no line with a control character gets this far).
    return value.replace("\\", "\\\\") if "\\" in value else value


def _staging_row(number: int, raw: dict[str, Any]) -> str | None:
    """The line as one COPY text row, or None when only the schema can judge it (a JSON value
    of an odd type, an unknown field, a character no column can hold)."""
    if not raw.keys() <= _KNOWN_FIELDS:
        return None
    cells: list[str] = [str(number)]
    plain: list[str] = []  # the values as given, checked for characters no column can hold
    for name in _STAGED:
        value: Any = raw.get(name)
        kind = type(value)
        if kind is str:
            plain.append(value)
            cells.append(_copy_text(value))
        elif value is None:
            if name in raw and name not in _NULLABLE:
                return None
            cells.append("\\N")
        elif name == "tags":
            if kind is not list or not all(type(tag) is str for tag in value):
                return None
            plain.extend(value)
            cells.append(_copy_text(_JSON.encode(value)))
        elif kind is int and name in _COUNT_FIELDS:  # bool is not int here
            cells.append(str(value))
        else:
            return None
    if _UNSTORABLE.search(" ".join(plain)):
        return None
    return "\t".join(cells) + "\n"


# One encoder, not one per line (json.dumps with options builds a new one each call).
_JSON = json.JSONEncoder(ensure_ascii=False)
_NULLABLE = frozenset({"display_name", "city", "store_code", "last_order_at"})


def _as_raw(record: dict[str, Any]) -> dict[str, Any]:
    """A record the schema accepted, as the text the staging table takes."""
    raw: dict[str, Any] = {}
    for name in _STAGED:
        value = record.get(name)
        if isinstance(value, datetime):
            value = value.isoformat()
        raw[name] = value
    return raw


# Local buffers for the session's staging tables (PostgreSQL's default, 8 MB, holds a third of
# one chunk's raw rows: the rest would go to and from the file system at each step).
TEMP_BUFFERS = "128MB"


def _session_settings() -> None:
    """Once per import, before its first staging table: room for a chunk in local buffers. A
    session that used temporary tables before keeps its size (PostgreSQL refuses a change)."""
    with _driver().cursor() as cursor:
        cursor.execute("SAVEPOINT koc_temp_buffers")
        try:
            cursor.execute(f"SET temp_buffers = '{TEMP_BUFFERS}'")
        except psycopg.errors.InvalidParameterValue:
            cursor.execute("ROLLBACK TO SAVEPOINT koc_temp_buffers")
        cursor.execute("RELEASE SAVEPOINT koc_temp_buffers")


def _chunk_settings() -> None:
    """First statement of each chunk's transaction. Its commit need not wait for the WAL to
    reach the disk: the merged rows and the job's progress are written by the same commit, so
    a crash that loses it loses both, and the job resumes from the last chunk that did reach
    the disk; nothing outside the database has been told about the lost one (the refused lines'
    report is named after its lines and written again)."""
    _driver().execute("SET LOCAL synchronous_commit = off")


def _driver() -> psycopg.Connection[Any]:
    """The session's own psycopg connection: COPY runs inside the session's transaction."""
    driver = db.session.connection().connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError("the PostgreSQL import path needs the psycopg driver")
    return driver


def _copy_chunks(lines: Iterator[ParsedLine], report: ImportReport, now: datetime,
                 chunk_rows: int) -> Iterator[None]:
    schema = UserImportRowSchema()
    refused: list[tuple[int, str]] = []
    exhausted = False
    while not exhausted:
        _chunk_settings()
        db.session.execute(sa.text(_STAGING_DDL))
        # Emptied by each commit, and here too for a caller that commits only at the end.
        db.session.execute(sa.text("TRUNCATE koc_user_import_staging, koc_user_import_refused"))
        driver = _driver()
        last = report.lines_done
        staged = 0
        with driver.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
            buffer: list[str] = []
            for number, raw in lines:
                last = number
                if isinstance(raw, str):
                    refused.append((number, raw))
                    continue
                row = _staging_row(number, raw)
                if row is None:
                    record, problems = _check_line(schema, raw)
                    if problems:
                        refused.append((number, _describe(problems)))
                        continue
                    row = _staging_row(number, _as_raw(record))
                    if row is None:
                        refused.append((number, "a value cannot be stored"))
                        continue
                buffer.append(row)
                staged += 1
                if len(buffer) >= 2000:
                    copy.write("".join(buffer))
                    buffer.clear()
                if staged >= chunk_rows:
                    break
            else:
                exhausted = True
            if buffer:
                copy.write("".join(buffer))
        if staged:
            _merge_chunk(report, refused, schema, now)
        _take_refusals(report, refused)
        report.lines_done = last
        yield


# --- PostgreSQL, fast path: the file's own bytes into COPY's CSV parser -------------------------
#
# A clean CRM export (UTF-8, the known columns, one record per line) never passes through Python
# line by line: blocks of it go to COPY (FORMAT csv) as they are, and the same SQL checks and
# merge as the careful path run over what COPY parsed. Anything the careful path would judge
# line by line (a control character, a blank line, a very long line, a record spanning lines,
# bytes that are not UTF-8, a cell too many) sends that block through the careful path instead,
# so both paths refuse the same lines with the same words.

# Bytes that the careful path refuses or reads differently: controls (a tab included), C1
# controls as UTF-8. One character class, so the scan stays at memory speed.
_CONTROLS = re.compile(rb"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")
_C1_CONTROL = re.compile(rb"\xc2[\x80-\x9f]")


def _needs_care(block: bytes) -> bool:
    """Whether the careful path must read this block: a control character, a CR not before an
    LF, a blank line, C1 controls, or a line over the limit."""
    return bool(
        _CONTROLS.search(block)
        or block.count(b"\r") != block.count(b"\r\n")
        or block.startswith((b"\n", b"\r\n")) or b"\n\n" in block or b"\n\r\n" in block
        or (b"\xc2" in block and _C1_CONTROL.search(block))
        or max(map(len, block.split(b"\n"))) > MAX_LINE_BYTES)
_RAW_DDL = (
    "CREATE TEMP SEQUENCE IF NOT EXISTS koc_user_import_line; "
    "CREATE TEMP TABLE IF NOT EXISTS koc_user_import_raw (line bigint NOT NULL DEFAULT "
    "nextval('koc_user_import_line'), " + ", ".join(f"{name} text" for name in _STAGED)
    + ") ON COMMIT DELETE ROWS"
)


class _Prefixed(io.RawIOBase):
    """`head` then the rest of `stream`: the careful path reads a block as if it were a file."""

    def __init__(self, head: bytes, stream: IO[bytes] | None = None) -> None:
        self._head, self._stream = memoryview(head), stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        if self._stream is None:
            return 0
        data = self._stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _careful(report: ImportReport, now: datetime, chunk_rows: int, head: bytes, *, shift: int,
             rest: IO[bytes] | None = None) -> Iterator[None]:
    """The careful path over `head` (then `rest`), a CSV text whose header is its first line;
    `shift` turns its line numbers into the file's."""
    stream = io.BufferedReader(_Prefixed(head, rest), buffer_size=CHUNK_BYTES)
    lines = ((number + shift, raw) for number, raw in _parse_csv(cast(IO[bytes], stream))
             if number + shift > report.lines_done)
    yield from _copy_chunks(lines, report, now, chunk_rows)


def _header_columns(header: bytes) -> list[str] | None:
    """The header's columns, when the fast path can take the file: known names, once each."""
    try:
        text = header.removeprefix(codecs.BOM_UTF8).decode("utf-8")
        names = next(csv.reader([text]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return None
    if "external_id" not in names or len(set(names)) != len(names):
        return None
    return names if set(names) <= _KNOWN_FIELDS else None


def _fast_csv_chunks(stream: IO[bytes], report: ImportReport, now: datetime,
                     chunk_rows: int) -> Iterator[None]:
    source: IO[bytes] = stream
    if cast(io.BufferedReader, stream).peek(2)[:2] == _GZIP_MAGIC:
        source = cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
    try:
        header = source.readline(MAX_LINE_BYTES + 1)
    except (OSError, EOFError, zlib.error):
        header = b""
    columns = _header_columns(header)
    if columns is None or not header.endswith(b"\n"):
        # Whatever is odd about the header, the careful path says it in its own words.
        yield from _careful(report, now, chunk_rows, header, shift=0, rest=source)
        return
    line = 1
    try:
        while line < report.lines_done and source.readline():  # resume after committed lines
            line += 1
    except (OSError, EOFError, zlib.error):
        pass
    copy_sql = (f"COPY koc_user_import_raw ({', '.join(columns)}) FROM STDIN (FORMAT csv, "
                f"FORCE_NULL ({', '.join(columns)}))")
    # Blocks of about chunk_rows lines, taking the header's length as a guide to a line's.
    block_bytes = chunk_rows * max(len(header), 64)
    while True:
        with report.timed("read"):
            block, damage = _read_block(source, block_bytes)
            first = line + 1
            line += block.count(b"\n")
            careful = bool(block) and _needs_care(block)
        if not block and damage is None:
            return
        if block:
            if careful or not _copy_block(report, copy_sql, block, first, line - first + 1):
                yield from _careful(report, now, chunk_rows, header + block, shift=first - 2)
            else:
                _merge_fast_block(report, now)
                report.lines_done = line
                yield
        if damage is not None:
            report.refuse(line + 1, f"the compressed data is damaged from here on ({damage})")
            yield
            return


def _read_block(source: IO[bytes], size: int) -> tuple[bytes, Exception | None]:
    """(about `size` bytes of whole lines, the damage that ended the file early or None).

    A block ends at the end of a line outside any quoted cell (an even number of quote
    characters), so that it never cuts a record in two; the file's last line gets its newline.
    """
    parts: list[bytes] = []
    taken = quotes = 0
    try:
        while taken < size and (piece := source.read(min(CHUNK_BYTES, size - taken))):
            parts.append(piece)
            taken += len(piece)
            quotes += piece.count(b'"')
        while parts and not (parts[-1].endswith(b"\n") and quotes % 2 == 0):
            more = source.readline(MAX_LINE_BYTES + 1)
            if not more:
                parts.append(b"\n")
                break
            parts.append(more)
            quotes += more.count(b'"')
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        whole = b"".join(parts)
        return whole[:whole.rfind(b"\n") + 1], exc
    return b"".join(parts), None


def _copy_block(report: ImportReport, copy_sql: str, block: bytes, first_line: int,
                lines: int) -> bool:
    """COPY one block into the raw table, numbered from `first_line`; False (and nothing kept)
    when COPY refuses it or its records are not one per line."""
    with report.timed("copy"):
        return _copy_block_timed(copy_sql, block, first_line, lines)


def _copy_block_timed(copy_sql: str, block: bytes, first_line: int, lines: int) -> bool:
    _chunk_settings()
    db.session.execute(sa.text(_STAGING_DDL + "; " + _RAW_DDL))
    db.session.execute(sa.text("TRUNCATE koc_user_import_staging, koc_user_import_refused, "
                               "koc_user_import_raw"))
    driver = _driver()
    # A savepoint of the driver's own: COPY runs on the driver connection, beside SQLAlchemy.
    with driver.cursor() as cursor:
        cursor.execute("SAVEPOINT koc_fast_copy")
        try:
            cursor.execute("SELECT setval('koc_user_import_line', %s, false)", (first_line,))
            with cursor.copy(copy_sql) as copy:
                for start in range(0, len(block), CHUNK_BYTES):
                    copy.write(block[start:start + CHUNK_BYTES])
            if cursor.rowcount != lines:
                raise _NotOnePerLine
            # A temporary table has no statistics until asked: the merge's plan needs its size.
            cursor.execute("ANALYZE koc_user_import_raw")
        except (psycopg.DataError, psycopg.errors.BadCopyFileFormat, _NotOnePerLine):
            cursor.execute("ROLLBACK TO SAVEPOINT koc_fast_copy")
            cursor.execute("RELEASE SAVEPOINT koc_fast_copy")
            return False
        cursor.execute("RELEASE SAVEPOINT koc_fast_copy")
    return True


class _NotOnePerLine(Exception):
    pass


def _merge_fast_block(report: ImportReport, now: datetime) -> None:
    """Check and merge a copied block with the fast checks; if a value makes one of their casts
    fail, with the careful ones instead (the same outcomes, one guard per value)."""
    refused: list[tuple[int, str]] = []
    driver = _driver()
    driver.execute("SAVEPOINT koc_fast_merge")
    try:
        _merge_chunk(report, refused, UserImportRowSchema(), now, source=_RAW_SOURCE,
                     checked=_FAST_CHECKED, counts=_FAST_COUNTS)
    except psycopg.DataError:
        driver.execute("ROLLBACK TO SAVEPOINT koc_fast_merge")
        refused.clear()
        _merge_chunk(report, refused, UserImportRowSchema(), now, source=_RAW_SOURCE)
    driver.execute("RELEASE SAVEPOINT koc_fast_merge")
    _take_refusals(report, refused)


def _merge_chunk(report: ImportReport, refused: list[tuple[int, str]],
                 schema: UserImportRowSchema, now: datetime, *,
                 source: str = "koc_user_import_staging", checked: str | None = None,
                 counts: str | None = None) -> None:
    """Check the staged chunk in SQL, report its refused lines, merge the rest in one statement.

    The merge inserts the new users with a plain INSERT (half the work of ON CONFLICT's
    speculative insertion) and updates the changed ones; should another writer create one of
    the same users meanwhile, the unique key says so and the chunk is merged again with the
    upsert, which waits for that writer instead."""
    rules = current_rules().rules
    # Straight to the driver: the SQL holds colons (times, regular expressions) that
    # SQLAlchemy's text() would read as bind parameters.
    with _driver().cursor(row_factory=dict_row) as cursor:
        # The DISTINCT ON sort of a chunk fits in memory instead of spilling to disk; a chunk's
        # plan is too cheap to gain from JIT compilation, which costs a fixed share of a second.
        cursor.execute("SET LOCAL work_mem = '256MB'; SET LOCAL jit = off")
        with report.timed("merge"):
            cursor.execute("SAVEPOINT koc_merge_insert")
            try:
                found = cursor.execute(_merge_sql(rules, source=source, checked=checked,
                                                  counts=counts, upsert=False),
                                       {"now": now}).fetchone() or {}
            except psycopg.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT koc_merge_insert")
                found = cursor.execute(_merge_sql(rules, source=source, checked=checked,
                                                  counts=counts, upsert=True),
                                       {"now": now}).fetchone() or {}
            cursor.execute("RELEASE SAVEPOINT koc_merge_insert")
        with report.timed("refused"):
            for row in cursor.execute(_REFUSED_SQL):
                refused.append((row["line"], _refusal_message(schema, row)))
    merged, created, updated, forgotten = (int(value or 0) for value in found.values())
    report.forgotten += forgotten
    merged -= forgotten
    report.processed += merged
    report.created += created
    report.updated += updated
    report.unchanged += merged - created - updated


_SQL_REASONS = {
    "required": "Missing data for required field.",
    "format": "may hold only letters, digits and _ . : - (at most 64)",
    "length": "too long",
    "integer": "Not a valid integer.",
    "range": "out of range",
    "datetime": "Not a valid datetime (use YYYY-MM-DDTHH:MM:SS+08:00).",
    "offset": "the offset must be within 15:59 of UTC",
    "items": "Length must be between 0 and 50.",
    "item": "each tag must hold 1 to 64 characters",
}


def _refusal_message(schema: UserImportRowSchema, row: Any) -> str:
    """The schema's own words for a line SQL refused (the same messages as the SQLite path);
    SQL's reasons where the schema would have let the line through."""
    raw = {name: row[name] for name in _STAGED if row[name] is not None}
    if "tags" in raw:
        raw["tags"] = json.loads(raw["tags"])
    _record, problems = _check_line(schema, raw)
    if problems:
        return _describe(problems)
    return _describe({name: [_SQL_REASONS[reason]] for name, _, reason in
                      (problem.partition(":") for problem in row["problems"])})


def _int_check(name: str, maximum: int) -> str:
    return (f"CASE WHEN s.{name} IS NULL THEN NULL "
            f"WHEN s.{name} !~ '^\\s*[+-]?[0-9]+\\s*$' THEN '{name}:integer' "
            f"WHEN s.{name}::numeric NOT BETWEEN 0 AND {maximum} THEN '{name}:range' END")


def _length_check(name: str, maximum: int) -> str:
    return f"CASE WHEN char_length(s.{name}) > {maximum} THEN '{name}:length' END"


# Shape first, with a plain match (PostgreSQL's regular expressions are slow with captures);
# the fixed-width parts are then read by position.
_DATE_SHAPE = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
               r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)$")
_BAD_OFFSET = r"[+-]([2-9][0-9]|1[6-9])(:?[0-9]{2})?$|[+-][0-9]{2}:?[6-9][0-9]$"
# What PostgreSQL's cast would refuse with an error (aborting the chunk) is checked first, in
# order: CASE evaluates its branches one by one. (%% is psycopg's escape for the operator.)
_DATE_TS = (
    "CASE WHEN s.last_order_at IS NULL OR s.last_order_at !~ '" + _DATE_SHAPE + "' "
    "OR s.last_order_at ~ '" + _BAD_OFFSET + "' THEN NULL "
    "WHEN substr(s.last_order_at, 1, 4)::int < 1 "
    "OR substr(s.last_order_at, 6, 2)::int NOT BETWEEN 1 AND 12 "
    "OR substr(s.last_order_at, 9, 2)::int < 1 OR substr(s.last_order_at, 12, 2)::int > 23 "
    "OR substr(s.last_order_at, 15, 2)::int > 59 "
    "OR (substr(s.last_order_at, 17, 1) = ':' AND substr(s.last_order_at, 18, 2)::int > 59) "
    "THEN NULL "
    "WHEN substr(s.last_order_at, 9, 2)::int > (ARRAY[31, 29, 31, 30, 31, 30, 31, 31, 30, 31, "
    "30, 31])[substr(s.last_order_at, 6, 2)::int] THEN NULL "
    "WHEN substr(s.last_order_at, 6, 5) = '02-29' AND NOT (substr(s.last_order_at, 1, 4)::int "
    "%% 4 = 0 AND (substr(s.last_order_at, 1, 4)::int %% 100 <> 0 "
    "OR substr(s.last_order_at, 1, 4)::int %% 400 = 0)) THEN NULL "
    "ELSE s.last_order_at::timestamptz END"
)
def _fast_int(name: str, maximum: int) -> str:
    # Digits, spaces and signs only, then PostgreSQL's own cast (once, in _FAST_CHECKED's
    # lateral n): "1 2" or "+-1" make it raise, which sends the block to the careful checks.
    return (f"CASE WHEN s.{name} IS NULL THEN NULL "
            f"WHEN n.{name} IS NULL THEN '{name}:integer' "
            f"WHEN n.{name} NOT BETWEEN 0 AND {maximum} THEN '{name}:range' END")


_FAST_COUNT_NAMES = ("orders_count", "spend_cents", "shares_count", "community_posts_count")
# Each count cast once per line; the merge takes the casts as they are (their ranges checked).
_FAST_CASTS = ", ".join(
    f"CASE WHEN translate(s.{name}, '0123456789 +-', '') = '' THEN s.{name}::bigint END "
    f"AS {name}" for name in _FAST_COUNT_NAMES)
_FAST_COUNTS = ",\n    ".join(
    f"coalesce(c.n_{name}::{'bigint' if name == 'spend_cents' else 'int'}, 0) AS {name}"
    for name in _FAST_COUNT_NAMES)


def _row_checks(int_check: Callable[[str, int], str]) -> str:
    """The checks both paths make the same way (the id, lengths), and the counts by `int_check`."""
    return ",\n  ".join([
        "CASE WHEN s.external_id IS NULL THEN 'external_id:required' "
        "WHEN char_length(s.external_id) > 64 OR s.external_id !~ '^[A-Za-z0-9_.:-]+$' "
        "THEN 'external_id:format' END",
        _length_check("display_name", 100), _length_check("city", 64),
        _length_check("store_code", 32),
        int_check("orders_count", INT32_MAX), int_check("spend_cents", INT64_MAX),
        int_check("shares_count", INT32_MAX), int_check("community_posts_count", INT32_MAX)])


_CHECKED = f"""
SELECT s.*, t.ts, array_remove(ARRAY[
  {_row_checks(_int_check)},
  CASE WHEN s.last_order_at IS NULL THEN NULL
       WHEN s.last_order_at ~ '{_DATE_SHAPE}' AND s.last_order_at ~ '{_BAD_OFFSET}'
       THEN 'last_order_at:offset'
       WHEN t.ts IS NULL THEN 'last_order_at:datetime'
       WHEN t.ts < '1900-01-01T00:00:00Z' OR t.ts >= '3000-01-01T00:00:00Z'
       THEN 'last_order_at:range' END,
  CASE WHEN s.tags IS NULL THEN NULL
       WHEN jsonb_array_length(s.tags::jsonb) > 50 THEN 'tags:items'
       WHEN EXISTS (SELECT 1 FROM jsonb_array_elements_text(s.tags::jsonb) AS tag(v)
                    WHERE char_length(tag.v) NOT BETWEEN 1 AND 64) THEN 'tags:item' END
], NULL) AS problems
FROM :source AS s
-- OFFSET 0 keeps the planner from copying the expression into each use of ts.
CROSS JOIN LATERAL (SELECT {_DATE_TS} AS ts OFFSET 0) AS t
"""
_REFUSED_SQL = "SELECT * FROM koc_user_import_refused ORDER BY line"



# The fast path's checks: the same outcomes as _CHECKED for the lines they can judge, with
# plain casts where _CHECKED guards each one. A cast that fails raises, and the block is
# checked again by _CHECKED (see _merge_fast_block).
_FAST_CHECKED = f"""
SELECT s.*, t.ts, {", ".join(f"n.{name} AS n_{name}" for name in _FAST_COUNT_NAMES)},
 array_remove(ARRAY[
  {_row_checks(_fast_int)},
  CASE WHEN s.last_order_at IS NULL THEN NULL
       WHEN t.shaped AND t.bad_offset THEN 'last_order_at:offset'
       WHEN t.ts IS NULL THEN 'last_order_at:datetime'
       WHEN t.ts < '1900-01-01T00:00:00Z' OR t.ts >= '3000-01-01T00:00:00Z'
       THEN 'last_order_at:range' END,
  CASE WHEN s.tags IS NULL OR s.tags_chars <= 64 THEN NULL
       WHEN jsonb_array_length(s.tags) > 50 THEN 'tags:items'
       WHEN EXISTS (SELECT 1 FROM jsonb_array_elements_text(s.tags) AS tag(v)
                    WHERE char_length(tag.v) NOT BETWEEN 1 AND 64) THEN 'tags:item' END
], NULL) AS problems
FROM :source AS s
CROSS JOIN LATERAL (
  SELECT d.shaped, d.bad_offset,
         CASE WHEN d.shaped AND NOT d.bad_offset THEN s.last_order_at::timestamptz END AS ts
  FROM (SELECT s.last_order_at ~ '{_DATE_SHAPE}' AS shaped,
               s.last_order_at ~ '{_BAD_OFFSET}' AS bad_offset OFFSET 0) AS d
  OFFSET 0) AS t
CROSS JOIN LATERAL (SELECT {_FAST_CASTS} OFFSET 0) AS n
"""
_MERGED = ("display_name", "city", "store_code", "tags", "orders_count", "spend_cents",
           "last_order_at", "shares_count", "community_posts_count", "candidate_score")


# The counts as the careful checks leave them (text, checked by _int_check).
_TEXT_COUNTS = ",\n    ".join(
    f"coalesce(trim(c.{name})::numeric::{kind}, 0) AS {name}"
    for name, kind in (("orders_count", "int"), ("spend_cents", "bigint"),
                       ("shares_count", "int"), ("community_posts_count", "int")))


def _merge_sql(rules: dict[str, Any], *, source: str = "koc_user_import_staging",
               checked: str | None = None, counts: str | None = None,
               upsert: bool = False) -> str:
    """One statement over one pass of checks: the refused lines set aside, the last good line
    of each external_id scored under `rules` and written where its data changes something;
    answers (merged, created, updated, forgotten).

    Each line's user is looked up once: lines whose data would change nothing are left out,
    new users are inserted (in score order, so the candidate index takes them page by page),
    changed ones updated. `upsert` writes both with one INSERT ... ON CONFLICT instead, for a
    chunk that met a concurrent writer (see _merge_chunk). The score alone changing (a recency
    bonus that decayed) rewrites nothing: an unchanged file updates 0 rows; the daily rescore
    keeps the decay current. A member keeps the excluded score; a forgotten person's row is
    never written."""
    data = [name for name in _MERGED if name != "candidate_score"]
    incoming = ", ".join(f"g.{name}" for name in data)
    stored = ", ".join(f"u.{name}" for name in data)
    staged = ", ".join(f"c.{name}" for name in _STAGED)
    checks = (checked or _CHECKED).replace(":source", source)
    member = ("EXISTS (SELECT 1 FROM members AS m WHERE m.user_id = users.id)"
              if rules["exclusions"]["members"] else "false")
    head = f"""
WITH checked AS MATERIALIZED ({checks}),
refused AS (
  INSERT INTO koc_user_import_refused (line, problems, {", ".join(_STAGED)})
  SELECT c.line, c.problems, {staged} FROM checked AS c WHERE cardinality(c.problems) > 0
), good AS (
  SELECT DISTINCT ON (c.external_id) c.external_id, c.display_name, c.city, c.store_code,
    coalesce(c.tags::jsonb, '[]'::jsonb) AS tags,
    {counts or _TEXT_COUNTS},
    c.ts AS last_order_at
  FROM checked AS c WHERE cardinality(c.problems) = 0
  ORDER BY c.external_id, c.line DESC
)"""
    if upsert:
        updates = ", ".join(f"{name} = excluded.{name}" for name in data)
        return head + f""", changing AS (
  SELECT g.* FROM good AS g WHERE NOT EXISTS (
    SELECT 1 FROM users AS u
    WHERE u.external_id = g.external_id AND ({stored}) IS NOT DISTINCT FROM ({incoming}))
), up AS (
  INSERT INTO users (external_id, {", ".join(data)}, candidate_score, created_at, updated_at)
  SELECT g.external_id, {incoming},
    {merge_score_sql(rules, "g", "%(now)s")}, %(now)s, %(now)s
  FROM changing AS g
  ON CONFLICT (external_id) DO UPDATE SET {updates},
    candidate_score = CASE WHEN {member} THEN {EXCLUDED_SCORE}
      ELSE excluded.candidate_score END,
    updated_at = excluded.updated_at
  WHERE users.forgotten_at IS NULL
  RETURNING (xmax = 0) AS created
)
SELECT (SELECT count(*) FROM good) AS merged, count(*) FILTER (WHERE created) AS created,
       count(*) FILTER (WHERE NOT created) AS updated,
       (SELECT count(*) FROM good AS g JOIN users AS u ON u.external_id = g.external_id
        WHERE u.forgotten_at IS NOT NULL) AS forgotten FROM up
"""
    updates = ", ".join(f"{name} = g.{name}" for name in data)
    return head + f""", joined AS MATERIALIZED (
  SELECT g.*, u.id AS user_id, coalesce(u.forgotten_at IS NOT NULL, false) AS forgotten,
    coalesce(({stored}) IS NOT DISTINCT FROM ({incoming}), false) AS same
  FROM good AS g LEFT JOIN users AS u ON u.external_id = g.external_id
), changing AS (
  SELECT g.*, {merge_score_sql(rules, "g", "%(now)s")} AS candidate_score
  FROM joined AS g WHERE NOT g.same AND NOT g.forgotten
), inserted AS (
  INSERT INTO users (external_id, {", ".join(data)}, candidate_score, created_at, updated_at)
  SELECT g.external_id, {incoming}, g.candidate_score, %(now)s, %(now)s
  FROM changing AS g WHERE g.user_id IS NULL ORDER BY g.candidate_score
  RETURNING 1
), updated AS (
  UPDATE users SET {updates},
    candidate_score = CASE WHEN {member} THEN {EXCLUDED_SCORE} ELSE g.candidate_score END,
    updated_at = %(now)s
  FROM changing AS g
  WHERE g.user_id IS NOT NULL AND users.id = g.user_id AND users.forgotten_at IS NULL
  RETURNING 1
)
SELECT (SELECT count(*) FROM joined) AS merged, (SELECT count(*) FROM inserted) AS created,
       (SELECT count(*) FROM updated) AS updated,
       (SELECT count(*) FROM joined WHERE forgotten) AS forgotten
"""


# The fast path's rows hold the tags as the CSV gives them ("a|b"), made JSON here as the
# careful path does in Python: split at |, each stripped, empty ones dropped.
_TAG_SPACE = "E' " + "".join(f"\\u{code:04x}" for code in (
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F,
    0x205F, 0x3000)) + "'"
_TAG_SPACE_CLASS = "[" + "".join(f"\\u{code:04x}" for code in (
    0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
    0x202F, 0x205F, 0x3000)) + "]"
# Computed once per row (OFFSET 0 keeps the planner from repeating it at each use), as jsonb:
# the checks and the merge read it as such. Most tags hold no space and need only the split.
_RAW_SOURCE = (
    "(SELECT r.line, " + ", ".join(f"r.{name}" for name in _STAGED if name != "tags")
    + ", tj.tags, char_length(r.tags) AS tags_chars FROM koc_user_import_raw AS r "
    "CROSS JOIN LATERAL (SELECT CASE "
    "WHEN r.tags IS NULL THEN NULL "
    f"WHEN r.tags !~ E'{_TAG_SPACE_CLASS}' "
    "THEN to_jsonb(array_remove(string_to_array(r.tags, '|'), '')) "
    "ELSE (SELECT coalesce(jsonb_agg(t.v ORDER BY t.n), '[]'::jsonb) "
    "FROM (SELECT btrim(x.v, " + _TAG_SPACE + ") AS v, x.n FROM "
    "unnest(string_to_array(r.tags, '|')) WITH ORDINALITY AS x(v, n)) AS t WHERE t.v <> '') "
    "END AS tags OFFSET 0) AS tj)")

def import_format(filename: str) -> str:
    """csv or jsonl, from the file name; a .gz file is recognised by its content."""
    name = filename.lower().removesuffix(".gz")
    return "jsonl" if name.endswith((".jsonl", ".ndjson", ".json")) else "csv"


# --- the full report of refused lines --------------------------------------------------------

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def refusals_prefix(job_id: int) -> str:
    return f"imports/reports/{job_id}/"


def refusals_key(job_id: int, first_line: int) -> str:
    return f"{refusals_prefix(job_id)}{first_line:012d}.csv"


def refusals_csv(refused: list[tuple[int, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for line, message in refused:
        # A spreadsheet runs a cell starting with = + - @ as a formula.
        writer.writerow([line, "'" + message if message.startswith(_FORMULA_STARTS) else message])
    return buffer.getvalue().encode("utf-8")


def iter_refusals(storage: Storage, job_id: int) -> Iterator[bytes]:
    """Every refused line of a job, in line order: the chunks' CSV objects one after another."""
    for key in sorted(storage.list_keys(refusals_prefix(job_id))):
        yield from storage.iter_chunks(key)
