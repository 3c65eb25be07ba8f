"""Object storage behind one small interface: S3 (boto3) or a local directory.

The S3 backend hands out presigned URLs so that bytes go straight between the client and the
store, never through the web process. The local backend imitates that with URLs signed by the
app's secret key and served by `storage_blueprint`, so the embedded set-up behaves the same way.

Nothing here touches the network or the disk at import or construction time.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote, unquote, urlencode, urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    has_app_context,
    has_request_context,
    jsonify,
    request,
    send_file,
    url_for,
)
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from koc.core.db import utcnow
from koc.extensions import db

if TYPE_CHECKING:
    from koc.settings import Settings

__all__ = [
    "InvalidKey",
    "LocalStorage",
    "MultipartUnsupported",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectWriter",
    "PresignedRequest",
    "S3Storage",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "build_storage",
    "get_storage",
    "storage_blueprint",
    "validate_key",
]

EXTENSION_KEY = "koc.storage"
# S3 refuses presigned URLs valid for longer than seven days; the local backend follows suit.
MAX_EXPIRES_IN = 7 * 24 * 3600
MAX_KEY_BYTES = 1024
_CHUNK = 1024 * 1024


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

    def iter_chunks(self, key: str, chunk_size: int = _CHUNK) -> Iterator[bytes]: ...

    def open_writer(self, key: str, *, content_type: str, part_size: int) -> ObjectWriter: ...

    def list_keys(self, prefix: str) -> Iterator[str]: ...

    def ping(self) -> None: ...

    def ensure_bucket(self) -> None: ...


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


def _check_expires_in(expires_in: int) -> int:
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise TypeError("expires_in must be an int (seconds)")
    if not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise ValueError(f"expires_in must be between 1 and {MAX_EXPIRES_IN} seconds")
    return expires_in


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError("size must be a non-negative int")
    return size


def _check_content_type(content_type: str) -> str:
    content_type = content_type.strip() if isinstance(content_type, str) else ""
    if not content_type or _CONTROL.search(content_type):
        raise ValueError("content_type must be a non-empty header value")
    return content_type


def _clean_filename(filename: str) -> str:
    # A download name ends up inside a header; line breaks there would split it.
    cleaned = _CONTROL.sub("", filename).replace("/", "_").replace("\\", "_").strip()
    return cleaned or "download"


def _content_disposition(filename: str) -> str:
    """`attachment`, with an ASCII fallback name and the real (e.g. Chinese) one per RFC 6266."""
    fallback = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    fallback = fallback.replace('"', "_")
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


# --------------------------------------------------------------------------------------------
# S3


_T = TypeVar("_T")


class S3Storage:
    """Objects in one S3 bucket (AWS S3, SeaweedFS, MinIO, ...).

    Credentials come from the settings' AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when set, else
    from boto3's usual chain (profiles, instance roles), or from `session` when given (tests).
    """

    # Short, so that /readyz answers 503 within seconds instead of hanging on a dead store.
    connect_timeout = 2.0
    read_timeout = 10.0
    total_attempts = 2

    def __init__(self, settings: Settings, *, session: Any = None) -> None:
        parsed = urlsplit(settings.storage_url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket URL: {settings.storage_url!r}")
        if parsed.path.strip("/") or parsed.query:
            raise ValueError(f"KOC_STORAGE_URL must be s3://bucket, got {settings.storage_url!r}")
        self.bucket = parsed.netloc
        self.endpoint_url = settings.s3_endpoint_url
        self.region = settings.s3_region
        self._credentials = {
            "aws_access_key_id": settings.s3_access_key_id,
            "aws_secret_access_key": settings.s3_secret_access_key,
        } if settings.s3_access_key_id else {}
        self._session = session
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def client(self) -> Any:
        # Built on first use: creating it reads credentials and config files, which import-time
        # and app-factory code must not do. A client is thread-safe once built; building is not.
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def close(self) -> None:
        """Close the HTTP connection pool, if a client was ever built."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            region_name=self.region,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"total_max_attempts": self.total_attempts, "mode": "standard"},
            # S3-compatible servers (SeaweedFS) route by path; AWS itself prefers virtual hosts.
            s3={"addressing_style": "path" if self.endpoint_url else "virtual"},
            # botocore >= 1.36 adds CRC checksums to every upload by default; several
            # S3-compatible servers reject or mishandle them, and presigned URLs do not need them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = self._session or boto3.session.Session(**self._credentials)
        return session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        try:
            return fn()
        except (ConnectionError, HTTPClientError) as exc:
            raise StorageUnavailable(f"object store unreachable during {what}: {exc}") from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StorageUnavailable(f"no usable S3 credentials for {what}: {exc}") from exc
        except ClientError as exc:
            if self._status(exc) >= 500:
                raise StorageUnavailable(f"object store failed during {what}: {exc}") from exc
            raise StorageError(f"object store refused {what}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"{what} failed: {exc}") from exc

    @staticmethod
    def _status(exc: BaseException) -> int:
        response = getattr(exc, "response", None) or {}
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)

    def presign_put(
        self, key: str, *, content_type: str, size: int, expires_in: int
    ) -> PresignedRequest:
        validate_key(key)
        content_type = _check_content_type(content_type)
        _check_size(size)
        _check_expires_in(expires_in)
        # Content-Type and Content-Length become signed headers: an upload of another type or
        # another size fails the signature check at the store.
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "ContentLength": size,
        }
        url = self._call(
            "presign_put",
            lambda: self.client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"
            ),
        )
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        return PresignedRequest(method="PUT", url=url, headers=headers)

    def presign_get(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        validate_key(key)
        _check_expires_in(expires_in)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = _content_disposition(_clean_filename(filename))
        return self._call(
            "presign_get",
            lambda: self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in, HttpMethod="GET"
            ),
        )

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        validate_key(key)

        def do() -> ObjectInfo | None:
            try:
                meta = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if self._status(exc) == 404:
                    return None
                raise
            etag = meta.get("ETag")
            return ObjectInfo(
                size=int(meta["ContentLength"]), etag=etag.strip('"') if etag else None
            )

        return self._call("head", do)

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> None:
        validate_key(key)
        self._call(
            "put_bytes",
            lambda: self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
            ),
        )

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        validate_key(key)

        def do() -> bytes:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if self._status(exc) == 404:
                    raise ObjectNotFound(f"no object at {key!r}") from exc
                raise
            with contextlib.closing(response["Body"]) as body:
                return body.read()

        return self._call("get_bytes", do)

    def read_prefix(self, key: str, length: int) -> bytes:
        """The first `length` bytes (fewer for a shorter object), by one ranged GET."""
        from botocore.exceptions import ClientError

        validate_key(key)
        if length < 1:
            raise ValueError("length must be at least 1")

        def do() -> bytes:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key,
                                                  Range=f"bytes=0-{length - 1}")
            except ClientError as exc:
                status = self._status(exc)
                if status == 404:
                    raise ObjectNotFound(f"no object at {key!r}") from exc
                if status == 416:  # an empty object has no byte 0
                    return b""
                raise
            with contextlib.closing(response["Body"]) as body:
                # A server that ignores Range sends the whole object; read only what was asked.
                return body.read(length)

        return self._call("read_prefix", do)

    def delete(self, key: str) -> None:
        validate_key(key)
        # S3 answers 204 for a missing key too, so deleting twice is fine.
        self._call("delete", lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    # -- ranges, streams, listing and multipart upload

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from `start`; fewer at the end of the object."""
        from botocore.exceptions import ClientError

        validate_key(key)
        if start < 0 or length < 1:
            raise ValueError("start must be >= 0 and length >= 1")

        def do() -> bytes:
            try:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")
            except ClientError as exc:
                if self._status(exc) == 404:
                    raise ObjectNotFound(f"no object at {key!r}") from exc
                if self._status(exc) == 416:  # the range starts past the end
                    return b""
                raise
            with contextlib.closing(response["Body"]) as body:
                return body.read()

        return self._call("get_range", do)

    def iter_chunks(self, key: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        validate_key(key)

        def open_body() -> Any:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            except ClientError as exc:
                if self._status(exc) == 404:
                    raise ObjectNotFound(f"no object at {key!r}") from exc
                raise

        body = self._call("iter_chunks", open_body)
        with contextlib.closing(body):
            while True:
                chunk = self._call("iter_chunks", lambda: body.read(chunk_size))
                if not chunk:
                    return
                yield chunk

    def list_keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
        while True:
            page = self._call("list_keys", lambda: next(pages, None))
            if page is None:
                return
            for item in page.get("Contents", ()):
                yield item["Key"]

    def create_multipart(self, key: str, *, content_type: str) -> str:
        validate_key(key)
        content_type = _check_content_type(content_type)
        response = self._call(
            "create_multipart",
            lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type),
        )
        return response["UploadId"]

    def presign_upload_part(
        self, key: str, *, upload_id: str, part_number: int, expires_in: int
    ) -> str:
        validate_key(key)
        _check_expires_in(expires_in)
        if not 1 <= part_number <= 10_000:
            raise ValueError("part_number must be between 1 and 10000")
        params = {"Bucket": self.bucket, "Key": key, "UploadId": upload_id,
                  "PartNumber": part_number}
        return self._call(
            "presign_upload_part",
            lambda: self.client.generate_presigned_url(
                "upload_part", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"),
        )

    def list_parts(self, key: str, *, upload_id: str) -> list[tuple[int, str]]:
        """(part number, ETag) of the parts stored so far; StorageError for an unknown upload."""
        validate_key(key)
        parts: list[tuple[int, str]] = []
        marker = 0
        while True:
            response = self._call(
                "list_parts",
                lambda m=marker: self.client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=m),
            )
            parts.extend((p["PartNumber"], p["ETag"]) for p in response.get("Parts", ()))
            if not response.get("IsTruncated"):
                return parts
            marker = response["NextPartNumberMarker"]

    def complete_multipart(
        self, key: str, *, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        validate_key(key)
        listed = [{"PartNumber": number, "ETag": etag} for number, etag in sorted(parts)]
        self._call(
            "complete_multipart",
            lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": listed}),
        )

    def abort_multipart(self, key: str, *, upload_id: str) -> None:
        validate_key(key)
        try:
            self._call(
                "abort_multipart",
                lambda: self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id),
            )
        except StorageUnavailable:
            raise
        except StorageError:
            # Already completed or aborted: nothing is left to free.
            pass

    def open_writer(self, key: str, *, content_type: str, part_size: int) -> ObjectWriter:
        return _S3MultipartWriter(self, key, content_type=content_type, part_size=part_size)

    def ping(self) -> None:
        try:
            self._call("ping", lambda: self.client.head_bucket(Bucket=self.bucket))
        except StorageUnavailable:
            raise
        except StorageError as exc:
            # Readiness means "uploads would work": a missing bucket or refused credentials
            # count as not ready just like a dead endpoint.
            raise StorageUnavailable(f"bucket {self.bucket!r} is not usable: {exc}") from exc

    def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        def do() -> None:
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if self._status(exc) != 404:
                    raise
            else:
                return
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            # us-east-1 is the one region that refuses an explicit LocationConstraint.
            if self.region and self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                self.client.create_bucket(**kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

        self._call("ensure_bucket", do)


MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last


class _S3MultipartWriter(ObjectWriter):
    def __init__(self, storage: S3Storage, key: str, *, content_type: str, part_size: int):
        super().__init__()
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self._storage = storage
        self._key = key
        self._part_size = part_size
        self._buffer = bytearray()
        self._parts: list[tuple[int, str]] = []
        self._upload_id = storage.create_multipart(key, content_type=content_type)
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self._done:
            raise ValueError("write to a closed object writer")
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            # One copy of the part, not two: slicing the bytearray first would make another.
            with memoryview(self._buffer) as view:
                part = bytes(view[: self._part_size])
            del self._buffer[: self._part_size]
            self._send(part)
            del part
        return len(data)

    def _send(self, body: bytes) -> None:
        number = len(self._parts) + 1
        storage = self._storage
        response = storage._call(
            "upload_part",
            lambda: storage.client.upload_part(
                Bucket=storage.bucket, Key=self._key, UploadId=self._upload_id,
                PartNumber=number, Body=body),
        )
        self._parts.append((number, response["ETag"]))

    def close(self) -> None:
        if self._done:
            return
        try:
            if self._buffer or not self._parts:
                self._send(bytes(self._buffer))
                self._buffer.clear()
            self._storage.complete_multipart(
                self._key, upload_id=self._upload_id, parts=self._parts)
        except BaseException:
            self.abort()
            raise
        self._done = True
        super().close()

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer.clear()
        self._storage.abort_multipart(self._key, upload_id=self._upload_id)
        super().close()


# --------------------------------------------------------------------------------------------
# Local directory


class LocalStorage:
    """Objects as files under one directory, with presigned URLs served by `storage_blueprint`."""

    def __init__(
        self, root: str | os.PathLike[str], *, secret_key: str, public_url: str | None = None
    ) -> None:
        self.root = Path(root)
        if not self.root.is_absolute():
            raise ValueError(f"storage directory must be an absolute path: {root}")
        # A key derived for this one purpose, so a storage signature can never be replayed as
        # (or forged from) a session cookie or CSRF token signed with the same secret.
        self._signing_key = hmac.new(
            secret_key.encode("utf-8"), b"koc.storage.presign.v1", hashlib.sha256
        ).digest()
        self.public_url = public_url

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalStorage:
        parsed = urlsplit(settings.storage_url)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise ValueError(f"not a file:///dir URL: {settings.storage_url!r}")
        return cls(
            unquote(parsed.path), secret_key=settings.secret_key, public_url=settings.public_url
        )

    def __repr__(self) -> str:
        return f"LocalStorage(root={str(self.root)!r})"

    # -- paths and signatures

    def path_for(self, key: str) -> Path:
        validate_key(key)
        path = self.root.joinpath(*key.split("/"))
        # Segment checks already keep the key inside; this also catches a symlink pointing out.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidKey(f"object key escapes the storage directory: {key!r}")
        return path

    def _sign(self, *parts: str | int) -> str:
        message = "\n".join(str(p) for p in parts).encode("utf-8")
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()

    def _put_signature(self, key: str, expires: int, size: int, content_type: str) -> str:
        # Content type last: it is the one free-form part (keys hold no line breaks).
        return self._sign("PUT", key, expires, size, content_type)

    def _get_signature(self, key: str, expires: int, filename: str) -> str:
        return self._sign("GET", key, expires, filename)

    def verify_put(
        self, key: str, *, expires: int, size: int, content_type: str, signature: str
    ) -> bool:
        expected = self._put_signature(key, expires, size, content_type)
        return hmac.compare_digest(expected.encode(), signature.encode())

    def verify_get(self, key: str, *, expires: int, filename: str, signature: str) -> bool:
        expected = self._get_signature(key, expires, filename)
        return hmac.compare_digest(expected.encode(), signature.encode())

    def _url(self, key: str, params: dict[str, str | int]) -> str:
        if has_request_context():
            return url_for("storage.object", key=key, _external=True, **params)
        if not self.public_url:
            raise StorageError(
                "cannot build an absolute storage URL outside a request: set KOC_PUBLIC_URL"
            )
        base = urlsplit(self.public_url)
        if has_app_context() and "storage.object" in current_app.view_functions:
            # Through the URL map, so a url_prefix the blueprint was registered with is kept.
            adapter = current_app.url_map.bind(
                base.netloc, script_name=base.path or "/", url_scheme=base.scheme
            )
            return adapter.build("storage.object", {"key": key, **params}, force_external=True)
        path = "/storage/" + quote(key, safe="/")
        return f"{self.public_url.rstrip('/')}{path}?{urlencode(params)}"

    # -- the interface

    def presign_put(
        self, key: str, *, content_type: str, size: int, expires_in: int
    ) -> PresignedRequest:
        validate_key(key)
        content_type = _check_content_type(content_type)
        _check_size(size)
        _check_expires_in(expires_in)
        expires = int(utcnow().timestamp()) + expires_in
        signature = self._put_signature(key, expires, size, content_type)
        url = self._url(key, {"expires": expires, "size": size, "signature": signature})
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        return PresignedRequest(method="PUT", url=url, headers=headers)

    def presign_get(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        validate_key(key)
        _check_expires_in(expires_in)
        expires = int(utcnow().timestamp()) + expires_in
        params: dict[str, str | int] = {"expires": expires}
        name = _clean_filename(filename) if filename else ""
        if name:
            params["filename"] = name
        params["signature"] = self._get_signature(key, expires, name)
        return self._url(key, params)

    def head(self, key: str) -> ObjectInfo | None:
        path = self.path_for(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageUnavailable(f"cannot stat {key!r}: {exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(size=st.st_size, etag=f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def write_stream(
        self, key: str, chunks: Iterator[bytes], *, max_size: int | None = None
    ) -> int:
        """Write chunks to `key` atomically; return the size. ValueError past `max_size`."""
        path = self.path_for(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".upload-", suffix=".part")
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {key!r}: {exc}") from exc
        tmp = Path(tmp_name)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    written += len(chunk)
                    if max_size is not None and written > max_size:
                        raise ValueError(f"body is larger than the signed size {max_size}")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            tmp.chmod(0o644)
            # Readers see the old object or the whole new one, never a half-written file.
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return written

    def put_bytes(self, key: str, data: bytes, *, content_type: str) -> None:
        # The content type is not stored: GET guesses it from the name, like a static server.
        self.write_stream(key, iter([data]))

    def get_bytes(self, key: str) -> bytes:
        path = self.path_for(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"no object at {key!r}") from exc

    def read_prefix(self, key: str, length: int) -> bytes:
        if length < 1:
            raise ValueError("length must be at least 1")
        path = self.path_for(key)
        try:
            with path.open("rb") as handle:
                return handle.read(length)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"no object at {key!r}") from exc

    def delete(self, key: str) -> None:
        path = self.path_for(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 1:
            raise ValueError("start must be >= 0 and length >= 1")
        path = self.path_for(key)
        try:
            with path.open("rb") as f:
                f.seek(start)
                return f.read(length)
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"no object at {key!r}") from exc

    def iter_chunks(self, key: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        path = self.path_for(key)
        try:
            f = path.open("rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ObjectNotFound(f"no object at {key!r}") from exc
        with f:
            while chunk := f.read(chunk_size):
                yield chunk

    def list_keys(self, prefix: str) -> Iterator[str]:
        # Sorted like S3 lists them; in-progress uploads (".upload-*.part") are not objects.
        for path in sorted(self.root.rglob("*")):
            if not path.is_file() or path.name.startswith(".upload-"):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                yield key

    def open_writer(self, key: str, *, content_type: str, part_size: int) -> ObjectWriter:
        return _LocalWriter(self, key)

    def ping(self) -> None:
        if not self.root.is_dir():
            raise StorageUnavailable(f"storage directory {self.root} does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"storage directory {self.root} is not writable")

    def ensure_bucket(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


class _LocalWriter(ObjectWriter):
    """A temporary file beside the target, renamed into place on close (atomic for readers)."""

    def __init__(self, storage: LocalStorage, key: str) -> None:
        super().__init__()
        self._path = storage.path_for(key)
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self._path.parent, prefix=".upload-", suffix=".part")
        except OSError as exc:
            raise StorageUnavailable(f"cannot write {key!r}: {exc}") from exc
        self._tmp = Path(name)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        return self._file.write(data)

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._tmp.chmod(0o644)
            self._tmp.replace(self._path)
        except BaseException:
            self.abort()
            raise
        super().close()

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)
        super().close()


# --------------------------------------------------------------------------------------------
# Choosing and caching the backend


def build_storage(settings: Settings) -> Storage:
    """The backend `settings.storage_url` names; no I/O happens here."""
    scheme = urlsplit(settings.storage_url).scheme
    if scheme == "s3":
        return S3Storage(settings)
    if scheme == "file":
        return LocalStorage.from_settings(settings)
    raise ValueError(f"unsupported storage URL: {settings.storage_url!r}")


def delete_objects_then_rows(rows: Sequence[Any]) -> int:
    """Delete each row's stored object (`row.storage_key`), then the rows; the caller commits.

    Objects go first: a crash in between leaves rows whose objects are gone, which the next run
    deletes again, and never an object that no row points to.
    """
    storage = get_storage()
    for row in rows:
        storage.delete(row.storage_key)
    for row in rows:
        db.session.delete(row)
    db.session.flush()
    return len(rows)


def get_storage() -> Storage:
    """The current app's storage, built on first use and kept for the app's lifetime."""
    storage = current_app.extensions.get(EXTENSION_KEY)
    if storage is None:
        storage = build_storage(current_app.config["KOC_SETTINGS"])
        # setdefault: two threads racing here both end up with the same instance.
        storage = current_app.extensions.setdefault(EXTENSION_KEY, storage)
    return storage


# --------------------------------------------------------------------------------------------
# HTTP endpoint for the local backend's presigned URLs

storage_blueprint = Blueprint("storage", __name__)


def _error(status: int, message: str) -> Response:
    # Same shape as the API's errors, so clients handle one format.
    response = jsonify(
        {"code": status, "status": HTTP_STATUS_CODES.get(status, ""), "message": message}
    )
    response.status_code = status
    return response


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() else None


def _body_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(_CHUNK):
        yield chunk


@storage_blueprint.route("/storage/<path:key>", methods=["GET", "PUT"], endpoint="object")
def object_view(key: str) -> Response:
    storage = get_storage()
    if not isinstance(storage, LocalStorage):
        return _error(404, "objects are not served by this app")
    try:
        storage.path_for(key)
    except InvalidKey as exc:
        return _error(400, str(exc))
    expires = _int_arg("expires")
    signature = request.args.get("signature", "")
    if expires is None or not signature:
        return _error(403, "missing or malformed signature")
    if expires < utcnow().timestamp():
        return _error(403, "this link has expired")
    if request.method == "PUT":
        return _put_object(storage, key, expires, signature)
    return _get_object(storage, key, expires, signature)


def _put_object(storage: LocalStorage, key: str, expires: int, signature: str) -> Response:
    size = _int_arg("size")
    content_type = (request.headers.get("Content-Type") or "").strip()
    if size is None or not storage.verify_put(
        key, expires=expires, size=size, content_type=content_type, signature=signature
    ):
        return _error(
            403, "signature does not match (tampered URL, or a Content-Type other than signed)"
        )
    declared = request.content_length
    if declared is not None and declared > size:
        return _error(400, f"body of {declared} bytes is larger than the signed size {size}")
    # The app-wide MAX_CONTENT_LENGTH is for forms; this upload's limit is the signed size.
    # One more byte, because werkzeug refuses any read once a maximum is reached, even at the
    # end of a chunked body of exactly that size; write_stream itself refuses size + 1.
    request.max_content_length = size + 1
    try:
        storage.write_stream(key, _body_chunks(request.stream), max_size=size)
    except (ValueError, RequestEntityTooLarge):
        return _error(400, f"body is larger than the signed size {size}")
    except StorageUnavailable as exc:
        return _error(503, str(exc))
    info = storage.head(key)
    response = Response(status=200)
    response.headers["Content-Length"] = "0"
    if info and info.etag:
        response.set_etag(info.etag)
    return response


def _get_object(storage: LocalStorage, key: str, expires: int, signature: str) -> Response:
    filename = request.args.get("filename", "")
    if not storage.verify_get(key, expires=expires, filename=filename, signature=signature):
        return _error(403, "signature does not match")
    path = storage.path_for(key)
    if not path.is_file():
        return _error(404, "no such object")
    response = send_file(
        path,
        conditional=True,
        as_attachment=bool(filename),
        download_name=filename or None,
        max_age=None,
    )
    # These URLs are on the app's own origin: an uploaded HTML or SVG file must not run
    # scripts there, so browsers are told not to sniff and to sandbox whatever they render.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
