"""Bulk imports of the user base: CSV or JSONL files, gzipped or not, read line by line."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, cast

from marshmallow import ValidationError

from koc.extensions import db
from koc.members.schemas import UserImportRowSchema
from koc.members.services.users import upsert_users_bulk

IMPORT_BATCH_SIZE = 1000

@dataclass
class ImportReport:
    processed: int = 0
    failed: int = 0
    # The first bad lines, with reasons; a file of millions of bad lines keeps memory flat.
    errors: list[dict[str, Any]] = field(default_factory=list)
    max_errors: int = 1000

    def refuse(self, line: int, message: str) -> None:
        self.failed += 1
        if len(self.errors) < self.max_errors:
            self.errors.append({"line": line, "message": message})


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


def _text_lines(stream: IO[bytes]) -> Iterator[tuple[int, str, str | None]]:
    """Decode each line on its own, so one bad byte costs one line, not the file.

    A line that cannot be used is still yielded (with U+FFFD for bad bytes) with the reason,
    so a CSV reader keeps its place and the caller refuses the line.
    """
    for number, line, unusable in _binary_lines(stream):
        raw = line.removeprefix(codecs.BOM_UTF8) if number == 1 else line
        try:
            yield number, raw.decode("utf-8"), unusable
        except UnicodeDecodeError as exc:
            yield number, raw.decode("utf-8", "replace"), unusable or (
                f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})")


ParsedLine = tuple[int, dict[str, Any] | str]


def _parse_jsonl(stream: IO[bytes]) -> Iterator[ParsedLine]:
    for number, line, problem in _text_lines(stream):
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


def _parse_csv(stream: IO[bytes]) -> Iterator[ParsedLine]:
    problems: dict[int, str] = {}

    def lines() -> Iterator[str]:
        for number, line, problem in _text_lines(stream):
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


def import_users(stream: IO[bytes], *, fmt: str = "csv",
                 on_progress: Any = None) -> ImportReport:
    """Validate every line, upsert the good ones in batches, report the bad ones by line.

    The file is bytes (CSV or JSONL, gzipped or not), read line by line: a line with a bad
    byte, a value its column cannot hold or a JSON error is refused on its own. Batches are
    upserts keyed on external_id, so re-running an import (after fixing the bad lines, or
    after a crash half-way) converges to the same rows.
    """
    schema = UserImportRowSchema()
    report = ImportReport()
    batch: list[dict[str, Any]] = []

    def flush_batch() -> None:
        report.processed += upsert_users_bulk(batch)
        batch.clear()
        db.session.flush()
        if on_progress:
            on_progress(report)

    parse = _parse_jsonl if fmt == "jsonl" else _parse_csv
    for number, raw in parse(stream):
        if isinstance(raw, str):
            report.refuse(number, raw)
            continue
        record, problems = _check_line(schema, raw)
        if problems:
            report.refuse(number, _describe(problems))
            continue
        batch.append(record)
        if len(batch) >= IMPORT_BATCH_SIZE:
            flush_batch()
    flush_batch()
    return report


def import_format(filename: str) -> str:
    """csv or jsonl, from the file name; a .gz file is recognised by its content."""
    name = filename.lower().removesuffix(".gz")
    return "jsonl" if name.endswith((".jsonl", ".ndjson", ".json")) else "csv"
