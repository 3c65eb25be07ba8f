"""The storage interface every backend meets.

The protocol (multipart uploads included), its errors, and the checks on keys, sizes, expiry
times and filenames that both backends apply the same way.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeGuard
from urllib.parse import quote

EXTENSION_KEY = "koc.storage"
# S3 refuses presigned URLs valid for longer than seven days; the local backend follows suit.
MAX_EXPIRES_IN = 7 * 24 * 3600
MAX_KEY_BYTES = 1024
CHUNK = 1024 * 1024


class StorageError(Exception):
    """A storage operation failed for a reason other than the key or the connection."""


class StorageUnavailable(StorageError):
    """The store did not answer (connection refused, timeout, 5xx, no credentials)."""


class ObjectNotFound(StorageError, KeyError):
    """`get_bytes` was asked for a key that holds no object."""

    def __str__(self) -> str:
        return Exception.__str__(self)


class MultipartUnsupported(StorageError):
    """The backend takes any size in one PUT and has no multipart upload (the local directory)."""


class InvalidKey(StorageError, ValueError):
    """The key is not a plain relative path (`..`, absolute, backslash, control characters)."""


@dataclass(frozen=True)
class PresignedRequest:
    """An HTTP request the client makes itself: send exactly `headers` with the body."""

    method: str
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    # Opaque: it changes when the object changes. S3 gives its ETag without the quotes.
    etag: str | None


class Storage(Protocol):
    def presign_put(
        self, key: str, *, content_type: str, size: int, expires_in: int
    ) -> PresignedRequest: ...

    def presign_get(self, key: str, *, expires_in: int, filename: str | None = None) -> str: ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def read_prefix(self, key: str, length: int) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]: ...

    def open_writer(self, key: str, *, content_type: str, part_size: int) -> ObjectWriter: ...

    def list_keys(self, prefix: str) -> Iterator[str]: ...

    def ping(self) -> None: ...

    def ensure_bucket(self) -> None: ...


class MultipartStorage(Storage, Protocol):
    """A store that takes one object in parts the client uploads itself (S3, not the local
    directory, which takes any size in one PUT)."""

    def create_multipart(self, key: str, *, content_type: str) -> str: ...

    def presign_upload_part(
        self, key: str, *, upload_id: str, part_number: int, expires_in: int
    ) -> str: ...

    def list_parts(self, key: str, *, upload_id: str) -> list[tuple[int, str]]: ...

    def complete_multipart(
        self, key: str, *, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None: ...

    def abort_multipart(self, key: str, *, upload_id: str) -> None: ...


def supports_multipart(storage: Storage) -> TypeGuard[MultipartStorage]:
    return hasattr(storage, "create_multipart")


def as_multipart(storage: Storage) -> MultipartStorage:
    """`storage`, for an upload begun in parts; MultipartUnsupported if this backend has none."""
    if not supports_multipart(storage):
        raise MultipartUnsupported(f"{storage!r} has no multipart uploads")
    return storage


class ObjectWriter(io.RawIOBase):
    """A write-only, unseekable stream into one object; `close()` stores it, `abort()` drops it.

    Memory stays at most one part whatever the object's size. Used as a context manager, an
    exception inside the block aborts instead of storing a truncated object.
    """

    def writable(self) -> bool:
        return True

    def abort(self) -> None:
        raise NotImplementedError

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        # IOBase would close(), i.e. store whatever was written so far; a writer dropped
        # without close() is a failure, so it is aborted instead.
        if not self.closed:
            with contextlib.suppress(Exception):
                self.abort()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative object key, else raise InvalidKey."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("object key must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise InvalidKey(f"object key contains a control character: {key!r}")
    if "\\" in key:
        raise InvalidKey(f"object key contains a backslash: {key!r}")
    if key.startswith("/"):
        raise InvalidKey(f"object key must be relative: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"object key has an empty, '.' or '..' segment: {key!r}")
    return key


def check_expires_in(expires_in: int) -> int:
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise TypeError("expires_in must be an int (seconds)")
    if not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise ValueError(f"expires_in must be between 1 and {MAX_EXPIRES_IN} seconds")
    return expires_in


def check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError("size must be a non-negative int")
    return size


def check_content_type(content_type: str) -> str:
    content_type = content_type.strip() if isinstance(content_type, str) else ""
    if not content_type or _CONTROL.search(content_type):
        raise ValueError("content_type must be a non-empty header value")
    return content_type


def clean_filename(filename: str) -> str:
    # A download name ends up inside a header; line breaks there would split it.
    cleaned = _CONTROL.sub("", filename).replace("/", "_").replace("\\", "_").strip()
    return cleaned or "download"


def content_disposition(filename: str) -> str:
    """`attachment`, with an ASCII fallback name and the real (e.g. Chinese) one per RFC 6266."""
    fallback = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    fallback = fallback.replace('"', "_")
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
