"""Local-directory backend of the embedded set-up.

Files under one folder, with presigned URLs signed by the app's secret and served by
`koc.core.storage.views`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlencode, urlsplit

from flask import current_app, has_app_context, has_request_context, url_for

from koc.core.db import utcnow
from koc.core.storage.base import (
    CHUNK,
    InvalidKey,
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
    validate_key,
)

if TYPE_CHECKING:
    from koc.settings import Settings


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
            return url_for("storage.object", key=key, _external=True,
                           **{name: str(value) for name, value in params.items()})
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
        content_type = check_content_type(content_type)
        check_size(size)
        check_expires_in(expires_in)
        expires = int(utcnow().timestamp()) + expires_in
        signature = self._put_signature(key, expires, size, content_type)
        url = self._url(key, {"expires": expires, "size": size, "signature": signature})
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        return PresignedRequest(method="PUT", url=url, headers=headers)

    def presign_get(self, key: str, *, expires_in: int, filename: str | None = None) -> str:
        validate_key(key)
        check_expires_in(expires_in)
        expires = int(utcnow().timestamp()) + expires_in
        params: dict[str, str | int] = {"expires": expires}
        name = clean_filename(filename) if filename else ""
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

    def iter_chunks(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
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
