"""Object storage behind one small interface: S3 (boto3) or a local directory.

The S3 backend hands out presigned URLs so that bytes go straight between the client and the
store, never through the web process. The local backend imitates that with URLs signed by the
app's secret key and served by `storage_blueprint`, so the embedded set-up behaves the same way.

Nothing here touches the network or the disk at import or construction time.

The package: `base` (the protocol and its errors), `s3` and `local` (the backends), `factory`
(choosing one from the settings) and `views` (the local backend's signed-URL endpoint).
"""

from koc.core.storage.base import (
    InvalidKey,
    MultipartUnsupported,
    ObjectInfo,
    ObjectNotFound,
    ObjectWriter,
    PresignedRequest,
    Storage,
    StorageError,
    StorageUnavailable,
    validate_key,
)
from koc.core.storage.factory import build_storage, delete_objects_then_rows, get_storage
from koc.core.storage.local import LocalStorage
from koc.core.storage.s3 import S3Storage

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
    "delete_objects_then_rows",
    "get_storage",
    "validate_key",
]
