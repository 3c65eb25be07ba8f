"""What a file is, read from its first bytes, and images opened without trusting them.

Kits and submissions both take files that a browser labelled; the label is checked against the
bytes with one set of signatures, and images are decoded with one set of limits, so a file
refused in one place is refused in the other.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

if TYPE_CHECKING:
    from PIL.Image import Image

    from koc.core.storage import Storage

# Enough for every signature below, including an ISO media box's brand.
SNIFF_BYTES = 64
# Decoding more pixels than this is refused: a decompression bomb, or simply too big to handle.
MAX_PIXELS = 80_000_000
# Objects spooled for decoding stay in memory up to this size and go to disk beyond it.
IN_MEMORY_LIMIT = 16 * 1024 * 1024

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis"})
_QUICKTIME_BOXES = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})
# Phones write .mov and .mp4 with either brand; both are ISO media that players read.
_ISO_VIDEO = frozenset({"video/mp4", "video/quicktime"})


def _iso_brand(head: bytes) -> bytes | None:
    return head[8:12] if len(head) >= 12 and head[4:8] == b"ftyp" else None


_SIGNATURES: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("image/jpeg", lambda h: h.startswith(b"\xff\xd8\xff")),
    ("image/png", lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
    ("image/gif", lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
    ("image/webp", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
    ("image/heic", lambda h: _iso_brand(h) in _HEIF_BRANDS),
    ("video/quicktime", lambda h: _iso_brand(h) == b"qt  " or h[4:8] in _QUICKTIME_BOXES),
    ("video/mp4", lambda h: _iso_brand(h) is not None),
    ("application/pdf", lambda h: h.startswith(b"%PDF-")),
    ("application/zip", lambda h: h[:4] in (b"PK\x03\x04", b"PK\x05\x06")),
)
RECOGNISED_TYPES = frozenset(kind for kind, _ in _SIGNATURES)


def sniff(head: bytes) -> str | None:
    """The media type the first bytes of a file show, or None when no signature matches."""
    return next((kind for kind, matches in _SIGNATURES if matches(head)), None)


def types_agree(declared: str, sniffed: str | None) -> bool:
    return sniffed is not None and (declared == sniffed or {declared, sniffed} <= _ISO_VIDEO)


def contradiction(content_type: str, head: bytes) -> str | None:
    """Why the first bytes contradict `content_type`, or None when nothing does.

    A type with a signature must show it; text must not be a known binary format, hold NUL
    bytes or fail to decode as UTF-8; other types are taken as labelled.
    """
    if content_type in RECOGNISED_TYPES:
        return (None if types_agree(content_type, sniff(head))
                else f"the file's first bytes are not {content_type}")
    if content_type.startswith("text/"):
        detected = sniff(head)
        if detected is not None:
            return f"the file is {detected}, not text"
        if b"\x00" in head:
            return "the file is binary, not text"
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A character cut by the end of the sample is not a contradiction.
            if exc.start < len(head) - 3:
                return "the file is not UTF-8 text"
    return None


def spool(storage: Storage, key: str) -> IO[bytes]:
    """The object at `key`, streamed into a temporary file (in memory while it is small)."""
    spooled = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_LIMIT)  # noqa: SIM115
    for chunk in storage.iter_chunks(key):
        spooled.write(chunk)
    spooled.seek(0)
    return spooled


class NotAnImage(Exception):
    """The bytes are not an image Pillow can decode within the limits."""


def open_image(source: IO[bytes], *, draft_box: tuple[int, int] | None = None) -> Image:
    """Decode an untrusted image; raises NotAnImage for anything unreadable or too large.

    The pixel count is checked from the header, before any pixel is decoded.
    """
    with warnings.catch_warnings():
        # A bomb between 1x and 2x Pillow's own limit only warns; refuse it too.
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            image = PILImage.open(source)
            if image.width * image.height > MAX_PIXELS:
                image.close()
                raise NotAnImage(f"{image.width}x{image.height} is too large")
            if draft_box is not None:
                # JPEG decodes at a reduced scale straight away: far less memory for a preview.
                image.draft("RGB", draft_box)
            image.load()
        except (UnidentifiedImageError, PILImage.DecompressionBombError,
                PILImage.DecompressionBombWarning, OSError, ValueError) as exc:
            raise NotAnImage(str(exc)) from exc
    return image


def image_size(source: IO[bytes]) -> tuple[int, int]:
    """Width and height from the header alone; raises NotAnImage."""
    try:
        with PILImage.open(source) as probe:
            return probe.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise NotAnImage(str(exc)) from exc
    finally:
        source.seek(0)


def perceptual_hash(source: IO[bytes]) -> int | None:
    """64-bit DCT perceptual hash, signed to fit a bigint column; None if not an image."""
    import imagehash  # noqa: PLC0415 - brings numpy; only the worker that hashes pays for it

    try:
        with open_image(source) as image:
            digest = int(str(imagehash.phash(image)), 16)
    except NotAnImage:
        return None
    return digest - (1 << 64) if digest >= 1 << 63 else digest
