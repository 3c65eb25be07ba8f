"""S3 backend (AWS S3, SeaweedFS, MinIO, ...).

It hands out presigned URLs, so bytes go straight between the client and the store.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from koc.core.storage.base import (
    CHUNK,
    ObjectInfo,
    ObjectNotFound,
    ObjectWriter,
    PresignedRequest,
    StorageError,
    StorageUnavailable,
    check_content_type,
    check_expires_in,
    check_size,
    clean_filename,
    content_disposition,
    validate_key,
)

if TYPE_CHECKING:
    from koc.settings import Settings

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
        content_type = check_content_type(content_type)
        check_size(size)
        check_expires_in(expires_in)
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
        check_expires_in(expires_in)
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(clean_filename(filename))
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

    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
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
        content_type = check_content_type(content_type)
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
        check_expires_in(expires_in)
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
                functools.partial(self.client.list_parts, Bucket=self.bucket, Key=key,
                                  UploadId=upload_id, PartNumberMarker=marker),
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
