"""Post URL normalisation: the same post, however it was spelled, has one canonical URL.

Rules follow ../shared/PLATFORMS.md. Share text from the apps wraps the URL in other words, so the
first http(s) URL in the text is taken. Short links (xhslink.com, v.douyin.com) cannot be resolved
without a network call to the platform and are kept as given, normalised only in spelling.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

# Share text is Chinese: a full-width comma or full stop ends the URL.
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'，。！]+", re.IGNORECASE)  # noqa: RUF001
_XHS_NOTE = re.compile(r"^/(?:explore|discovery/item)/([0-9a-f]{24})$", re.IGNORECASE)
_DOUYIN_POST = re.compile(r"^/(?:share/)?(video|note)/(\d+)$")
_WEIBO_DETAIL = re.compile(r"^/(?:detail|status)/([A-Za-z0-9]+)$")


class NotAUrl(ValueError):
    pass


def extract_url(text: str) -> str:
    match = _URL_IN_TEXT.search(text.strip())
    if match is None:
        raise NotAUrl("must contain an http(s) URL")
    return match.group(0)


def canonical_post_url(text: str) -> str:
    url = extract_url(text)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise NotAUrl("must contain an http(s) URL")
    bare_host = host.removeprefix("www.").removeprefix("m.")
    path = re.sub(r"/{2,}", "/", parts.path).rstrip("/")

    if bare_host == "xiaohongshu.com":
        match = _XHS_NOTE.match(path)
        if match:
            return f"https://www.xiaohongshu.com/explore/{match.group(1).lower()}"
    if bare_host in {"douyin.com", "iesdouyin.com"}:
        modal_id = parse_qs(parts.query).get("modal_id", [None])[0]
        if modal_id and modal_id.isdigit():
            return f"https://www.douyin.com/video/{modal_id}"
        match = _DOUYIN_POST.match(path)
        if match:
            return f"https://www.douyin.com/{match.group(1)}/{match.group(2)}"
    if bare_host == "weibo.cn":
        match = _WEIBO_DETAIL.match(path)
        if match:
            return f"https://m.weibo.cn/detail/{match.group(1)}"
    # Anything else: scheme and host case, tracking parameters, fragment and trailing slash
    # ignored; other query parameters may identify the post, so they stay (sorted).
    kept = sorted(
        (name, value)
        for name, values in parse_qs(parts.query, keep_blank_values=True).items()
        if not _is_tracking(name)
        for value in values
    )
    return urlunsplit(("https", host, path or "/", urlencode(kept), ""))


_TRACKING_PREFIXES = ("utm_", "xsec_", "share_", "spm")
_TRACKING_NAMES = frozenset({"source", "from", "timestamp", "app_platform", "app_version",
                             "author_share", "is_copy_url", "is_from_webapp", "sender_device"})


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in _TRACKING_NAMES or lowered.startswith(_TRACKING_PREFIXES)
