"""Object storage as a client sees it: presigned URLs used over real HTTP, on both backends."""

from __future__ import annotations

import contextlib
import http.client
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from botocore.exceptions import ClientError
from flask import Flask
from werkzeug.serving import make_server

from koc.core.storage import (
    InvalidKey,
    LocalStorage,
    ObjectInfo,
    ObjectNotFound,
    S3Storage,
    Storage,
    StorageError,
    StorageUnavailable,
    build_storage,
    get_storage,
)
from koc.core.storage.views import storage_blueprint
from koc.settings import Settings, load_settings

SECRET = "test-secret-key-for-storage-0123456789"
KEY = "kits/12/assets/34/photo.jpg"


@dataclass
class Backend:
    name: str
    storage: Storage
    settings: Settings


@pytest.fixture
def local_app(tmp_path: Path) -> Iterator[tuple[Flask, Settings]]:
    """A minimal app serving the local backend's URLs over real HTTP on a free port."""
    app = Flask(__name__)
    app.register_blueprint(storage_blueprint)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    settings = load_settings(
        str(tmp_path / "instance"),
        environ={
            "KOC_ENV": "test",
            "KOC_STORAGE_URL": f"file://{tmp_path / 'objects'}",
            "KOC_SECRET_KEY": SECRET,
            "KOC_PUBLIC_URL": f"http://127.0.0.1:{server.server_port}",
        },
    )
    app.config["KOC_SETTINGS"] = settings
    # A short poll interval: shutdown() waits for it, once per test.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield app, settings
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def local_backend(local_app: tuple[Flask, Settings]) -> Backend:
    app, settings = local_app
    with app.app_context():
        storage = get_storage()
    storage.ensure_bucket()
    return Backend("local", storage, settings)


@pytest.fixture
def s3_backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Backend]:
    seaweedfs = request.getfixturevalue("seaweedfs")
    bucket = request.getfixturevalue("s3_bucket")
    # Credentials through boto3's ordinary environment chain, as in production.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    settings = load_settings(
        str(tmp_path / "instance"),
        environ={
            "KOC_ENV": "test",
            "KOC_STORAGE_URL": f"s3://{bucket}",
            "KOC_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
            "AWS_DEFAULT_REGION": seaweedfs.region,
            "KOC_SECRET_KEY": SECRET,
        },
    )
    storage = build_storage(settings)
    assert isinstance(storage, S3Storage)
    try:
        yield Backend("s3", storage, settings)
    finally:
        storage.close()


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"{request.param}_backend")


def upload(storage: Storage, key: str, data: bytes, content_type: str = "image/jpeg") -> None:
    presigned = storage.presign_put(key, content_type=content_type, size=len(data), expires_in=60)
    with requests.request(
        presigned.method, presigned.url, data=data, headers=presigned.headers, timeout=30
    ) as response:
        assert response.status_code == 200, response.text


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_presigned_upload_then_download_returns_the_same_bytes(backend: Backend) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, not a round number
    presigned = backend.storage.presign_put(
        KEY, content_type="image/jpeg", size=len(data), expires_in=300
    )

    assert presigned.method == "PUT"
    assert presigned.url.startswith("http://127.0.0.1:")
    assert presigned.headers["Content-Type"] == "image/jpeg"
    with requests.put(presigned.url, data=data, headers=presigned.headers, timeout=30) as put:
        assert put.status_code == 200, put.text

    url = backend.storage.presign_get(KEY, expires_in=60)
    with requests.get(url, timeout=30) as got:
        assert got.status_code == 200, got.text
        assert got.content == data
        assert got.headers["Content-Type"] == "image/jpeg"


def test_download_link_with_filename_downloads_as_attachment(backend: Backend) -> None:
    upload(backend.storage, KEY, b"jpeg bytes")

    url = backend.storage.presign_get(KEY, expires_in=60, filename="新品 拍摄.jpg")

    with requests.get(url, timeout=30) as got:
        assert got.status_code == 200, got.text
        assert got.content == b"jpeg bytes"
        disposition = got.headers["Content-Disposition"]
    assert disposition.startswith("attachment")
    assert "filename*=UTF-8''%E6%96%B0%E5%93%81%20%E6%8B%8D%E6%91%84.jpg" in disposition


def test_head_gives_the_size_of_an_uploaded_object(backend: Backend) -> None:
    assert backend.storage.head(KEY) is None

    upload(backend.storage, KEY, b"x" * 1234)

    info = backend.storage.head(KEY)
    assert isinstance(info, ObjectInfo)
    assert info.size == 1234
    assert info.etag


def test_upload_with_another_content_type_than_signed_is_refused(backend: Backend) -> None:
    presigned = backend.storage.presign_put(KEY, content_type="image/jpeg", size=5, expires_in=60)
    headers = {**presigned.headers, "Content-Type": "text/html"}

    with requests.put(presigned.url, data=b"<b>!", headers=headers, timeout=30) as put:
        assert put.status_code == 403

    assert backend.storage.head(KEY) is None


def test_upload_larger_than_signed_is_refused(backend: Backend) -> None:
    presigned = backend.storage.presign_put(KEY, content_type="image/jpeg", size=10, expires_in=60)
    headers = {k: v for k, v in presigned.headers.items() if k != "Content-Length"}

    with requests.put(presigned.url, data=b"y" * 11, headers=headers, timeout=30) as put:
        assert put.status_code in (400, 403)

    assert backend.storage.head(KEY) is None


def test_expired_links_are_refused(backend: Backend) -> None:
    backend.storage.put_bytes(KEY, b"old", content_type="image/jpeg")
    download = backend.storage.presign_get(KEY, expires_in=1)
    presigned = backend.storage.presign_put(KEY, content_type="image/jpeg", size=3, expires_in=1)

    time.sleep(2.2)

    with requests.get(download, timeout=30) as got:
        assert got.status_code == 403
    with requests.put(presigned.url, data=b"new", headers=presigned.headers, timeout=30) as put:
        assert put.status_code == 403
    assert backend.storage.get_bytes(KEY) == b"old"


def test_key_with_dot_dot_is_refused(backend: Backend) -> None:
    storage = backend.storage
    for key in ("kits/../../etc/passwd", "../outside", "/etc/passwd", "a\\b", "a\x00b", "a//b"):
        with pytest.raises(InvalidKey):
            storage.presign_put(key, content_type="text/plain", size=1, expires_in=60)
        with pytest.raises(InvalidKey):
            storage.presign_get(key, expires_in=60)
        with pytest.raises(InvalidKey):
            storage.put_bytes(key, b"x", content_type="text/plain")
        with pytest.raises(InvalidKey):
            storage.head(key)
        with pytest.raises(InvalidKey):
            storage.delete(key)


def test_delete_removes_the_object(backend: Backend) -> None:
    backend.storage.put_bytes(KEY, b"bytes", content_type="image/jpeg")
    url = backend.storage.presign_get(KEY, expires_in=60)
    assert backend.storage.get_bytes(KEY) == b"bytes"

    backend.storage.delete(KEY)

    assert backend.storage.head(KEY) is None
    with pytest.raises(ObjectNotFound):
        backend.storage.get_bytes(KEY)
    with requests.get(url, timeout=30) as got:
        assert got.status_code == 404
    backend.storage.delete(KEY)  # deleting what is gone is not an error


def test_ping_answers_on_a_working_store(backend: Backend) -> None:
    backend.storage.ping()


# -- local backend only


def test_tampered_local_signature_is_forbidden(local_backend: Backend) -> None:
    storage = local_backend.storage
    storage.put_bytes(KEY, b"secret kit", content_type="image/jpeg")
    url = storage.presign_get(KEY, expires_in=60)
    signature = dict(parse_qsl(urlsplit(url).query))["signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    longer_lived = str(int(time.time()) + 86400)

    for bad in (
        with_query(url, signature=flipped),
        with_query(url, expires=longer_lived),
        with_query(url, filename="renamed.exe"),
        url.replace("photo.jpg", "other.jpg"),
        with_query(url, signature=""),
        with_query(url, signature="é" * 64),
        with_query(url, expires="²"),
    ):
        with requests.get(bad, timeout=30) as got:
            assert got.status_code == 403, bad
            assert got.json()["code"] == 403


def test_local_upload_with_tampered_size_is_forbidden(local_backend: Backend) -> None:
    presigned = local_backend.storage.presign_put(
        KEY, content_type="image/jpeg", size=3, expires_in=60
    )
    url = with_query(presigned.url, size="1000000")
    headers = {"Content-Type": "image/jpeg"}

    with requests.put(url, data=b"z" * 1000, headers=headers, timeout=30) as put:
        assert put.status_code == 403

    assert local_backend.storage.head(KEY) is None


def test_local_upload_streams_a_chunked_body_and_stops_at_the_signed_size(
    local_backend: Backend,
) -> None:
    presigned = local_backend.storage.presign_put(
        KEY, content_type="video/mp4", size=2_000_000, expires_in=60
    )
    headers = {"Content-Type": "video/mp4"}

    def body(total: int) -> Iterator[bytes]:
        for _ in range(total // 100_000):
            yield b"v" * 100_000

    with requests.put(presigned.url, data=body(2_000_000), headers=headers, timeout=30) as put:
        assert put.status_code == 200, put.text
    assert local_backend.storage.head(KEY) == ObjectInfo(
        size=2_000_000, etag=local_backend.storage.head(KEY).etag
    )

    with requests.put(presigned.url, data=body(2_100_000), headers=headers, timeout=30) as put:
        assert put.status_code == 400
    assert local_backend.storage.head(KEY).size == 2_000_000
    leftovers = [p.name for p in local_backend.storage.path_for(KEY).parent.iterdir()]
    assert leftovers == ["photo.jpg"]


def test_local_url_with_dot_dot_in_the_path_is_refused(local_backend: Backend) -> None:
    storage = local_backend.storage
    assert isinstance(storage, LocalStorage)
    secret = storage.root.parent / "secret.txt"
    secret.write_text("not an object")
    port = urlsplit(local_backend.settings.public_url).port

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/storage/%2e%2e/secret.txt?expires=9999999999&signature=x")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status in (400, 403, 404)
    assert b"not an object" not in body


def test_local_urls_inside_a_request_use_the_request_host(
    local_app: tuple[Flask, Settings],
) -> None:
    app, _ = local_app
    with app.test_request_context(base_url="https://koc.example.com"):
        url = get_storage().presign_get(KEY, expires_in=60)
    assert url.startswith("https://koc.example.com/storage/kits/12/assets/34/photo.jpg?")


def test_local_urls_built_in_a_job_use_the_public_url(local_app: tuple[Flask, Settings]) -> None:
    app, settings = local_app
    with app.app_context():
        storage = get_storage()
        storage.put_bytes(KEY, b"made by a job", content_type="image/jpeg")
        url = storage.presign_get(KEY, expires_in=60)

    assert url.startswith(f"{settings.public_url}/storage/{KEY}?")
    with requests.get(url, timeout=30) as got:
        assert got.content == b"made by a job"


def test_local_urls_without_request_or_public_url_fail_clearly(tmp_path: Path) -> None:
    settings = load_settings(str(tmp_path), environ={"KOC_ENV": "test"})
    storage = build_storage(settings)

    with pytest.raises(StorageError, match="KOC_PUBLIC_URL"):
        storage.presign_get(KEY, expires_in=60)


def test_local_ping_fails_when_the_directory_is_missing(tmp_path: Path) -> None:
    settings = load_settings(
        str(tmp_path), environ={"KOC_STORAGE_URL": f"file://{tmp_path / 'gone'}"}
    )
    storage = build_storage(settings)

    with pytest.raises(StorageUnavailable):
        storage.ping()
    storage.ensure_bucket()
    storage.ping()


def test_get_storage_builds_one_instance_per_app(local_app: tuple[Flask, Settings]) -> None:
    app, _ = local_app
    with app.app_context():
        first = get_storage()
    with app.app_context():
        assert get_storage() is first
    assert isinstance(first, LocalStorage)


# -- S3 backend only


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_s3_ping_on_a_dead_endpoint_raises_storage_unavailable_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nothing")
    settings = load_settings(
        str(tmp_path),
        environ={
            "KOC_STORAGE_URL": "s3://koc-nowhere",
            "KOC_S3_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
        },
    )
    storage = build_storage(settings)

    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        storage.ping()
    with pytest.raises(StorageUnavailable):
        storage.head(KEY)
    assert time.monotonic() - started < 10


def test_s3_storage_makes_no_connection_until_used(tmp_path: Path) -> None:
    settings = load_settings(
        str(tmp_path),
        environ={"KOC_STORAGE_URL": "s3://koc-assets", "KOC_S3_ENDPOINT_URL": "http://192.0.2.1"},
    )

    storage = build_storage(settings)

    assert isinstance(storage, S3Storage)
    assert storage.bucket == "koc-assets"


@pytest.mark.s3
def test_s3_ping_fails_when_the_bucket_is_missing(s3_backend: Backend) -> None:
    bucket = f"koc-missing-{uuid.uuid4().hex[:12]}"
    other = S3Storage(
        load_settings(
            s3_backend.settings.instance_path,
            environ={
                "KOC_STORAGE_URL": f"s3://{bucket}",
                "KOC_S3_ENDPOINT_URL": s3_backend.settings.s3_endpoint_url,
            },
        )
    )
    try:
        with pytest.raises(StorageUnavailable, match="not usable"):
            other.ping()
        other.ensure_bucket()
        other.ensure_bucket()  # twice is fine
        other.ping()
    finally:
        with contextlib.suppress(StorageError, ClientError):
            other.client.delete_bucket(Bucket=bucket)
        other.close()
