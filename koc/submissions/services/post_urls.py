"""Post URL normalisation: the same post, however it was spelled, has one canonical URL.

Rules follow ../shared/PLATFORMS.md. Share text from the apps wraps the URL in other words, so the
first http(s) URL in the text is taken. Short links (xhslink.com, v.douyin.com) cannot be resolved
without a network call to the platform and are kept as given, normalised only in spelling.
WeChat Channels posts often have no web URL at all: their share text is the key, as given.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

# Only URL characters: share text often runs Chinese words straight after the link.
_URL_IN_TEXT = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", re.IGNORECASE)
# Punctuation that ends a sentence around a link, not the link itself.
_TRAILING = ".,;:!?)]'\""
_XHS_NOTE = re.compile(
    r"^/(?:explore|discovery/item|user/profile/[0-9a-f]{24})/([0-9a-f]{24})$", re.IGNORECASE)
_DOUYIN_POST = re.compile(r"^/(?:share/)?(video|note)/(\d+)$")
_WEIBO_DETAIL = re.compile(r"^/(?:detail|status)/([A-Za-z0-9]+)$")
_WEIBO_POST = re.compile(r"^/(?:u/)?\d+/([A-Za-z0-9]+)$")
_BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_KEY_PREFIX_CHANNELS = "wechat_channels:"


class NotAUrl(ValueError):
    pass


def extract_url(text: str) -> str:
    match = _URL_IN_TEXT.search(text.strip())
    if match is None:
        raise NotAUrl("must contain an http(s) URL")
    return match.group(0).rstrip(_TRAILING)


def canonical_post_url(text: str, platform: str | None = None) -> str:
    """The key a post is known by. Raises NotAUrl for text with no usable URL in it."""
    try:
        url = extract_url(text)
    except NotAUrl:
        if platform == "wechat_channels" and text.strip():
            return _KEY_PREFIX_CHANNELS + " ".join(text.split())
        raise
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or "." not in host:
        raise NotAUrl("must contain an http(s) URL with a host name")
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
    if bare_host in {"weibo.cn", "weibo.com"}:
        match = _WEIBO_DETAIL.match(path) or _WEIBO_POST.match(path)
        if match:
            mid = weibo_numeric_mid(match.group(1))
            if mid is not None:
                return f"https://m.weibo.cn/detail/{mid}"
    # Anything else: scheme and host case, tracking parameters, fragment and trailing slash
    # ignored; other query parameters may identify the post, so they stay (sorted).
    kept = sorted(
        (name, value)
        for name, values in parse_qs(parts.query, keep_blank_values=True).items()
        if not _is_tracking(name)
        for value in values
    )
    return urlunsplit(("https", host, path or "/", urlencode(kept), ""))


def weibo_numeric_mid(mid: str) -> str | None:
    """A Weibo post id as digits. weibo.com links spell it in base 62, m.weibo.cn in decimal.

    The base-62 form encodes the decimal id in groups of seven digits, four characters each,
    counted from the right; every group but the leftmost is zero-padded to seven digits.
    """
    if mid.isdigit():
        return mid.lstrip("0") or "0"
    if len(mid) > 12:  # no real id is that long; refuse rather than guess
        return None
    groups = []
    end = len(mid)
    while end > 0:
        start = max(end - 4, 0)
        value = 0
        for char in mid[start:end]:
            value = value * 62 + _BASE62.index(char)
        groups.append(value)
        end = start
    groups.reverse()
    if any(value >= 10**7 for value in groups):
        return None
    return str(groups[0]) + "".join(f"{value:07d}" for value in groups[1:])


_TRACKING_PREFIXES = ("utm_", "xsec_", "share_", "spm")
_TRACKING_NAMES = frozenset({"source", "from", "timestamp", "app_platform", "app_version",
                             "author_share", "is_copy_url", "is_from_webapp", "sender_device",
                             "refer_flag", "apptime", "ignoresign", "previous_page",
                             "enter_from", "enter_method", "u_code", "did", "iid",
                             "with_sec_did", "ts"})


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered in _TRACKING_NAMES or lowered.startswith(_TRACKING_PREFIXES)


# Hosts each platform's posts live on (a host matches itself and its subdomains).
PLATFORM_HOSTS: dict[str, tuple[str, ...]] = {
    "xiaohongshu": ("xiaohongshu.com", "xhslink.com", "xhslink.cn"),
    "douyin": ("douyin.com", "iesdouyin.com"),
    "weibo": ("weibo.com", "weibo.cn"),
}
PLATFORM_LABELS = {"xiaohongshu": "Xiaohongshu", "douyin": "Douyin", "weibo": "Weibo"}
# Share links that name no post by themselves; only the platform can say where they lead.
_SHORT_LINK_HOSTS = ("xhslink.com", "xhslink.cn", "v.douyin.com")
_POST_ID = (
    re.compile(r"^https://www\.xiaohongshu\.com/explore/([0-9a-f]{24})$"),
    re.compile(r"^https://www\.douyin\.com/(?:video|note)/(\d+)$"),
    re.compile(r"^https://m\.weibo\.cn/detail/(\d+)$"),
)


class WrongPlatform(NotAUrl):
    pass


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _on(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def platform_of(url: str) -> str | None:
    """The platform whose host a URL is on, among those with known hosts."""
    host = _host(url)
    return next((platform for platform, domains in PLATFORM_HOSTS.items()
                 if any(_on(host, domain) for domain in domains)), None)


def check_platform(canonical: str, platform: str) -> None:
    """Refuse a URL on another platform's host than the one declared (WrongPlatform)."""
    if canonical.startswith(_KEY_PREFIX_CHANNELS):
        return
    found = platform_of(canonical)
    if platform in PLATFORM_HOSTS and found != platform:
        allowed = ", ".join(PLATFORM_HOSTS[platform])
        raise WrongPlatform(f"is not a {PLATFORM_LABELS[platform]} link (expected a host on "
                            f"{allowed})")
    if platform not in PLATFORM_HOSTS and found is not None:
        raise WrongPlatform(f"is a {PLATFORM_LABELS[found]} link: declare platform {found}")


def is_short_link(canonical: str) -> bool:
    host = _host(canonical)
    return any(_on(host, domain) for domain in _SHORT_LINK_HOSTS)


def post_id_of(canonical: str) -> str | None:
    """The platform's id of the post a canonical URL names, if it names one."""
    for pattern in _POST_ID:
        match = pattern.match(canonical)
        if match:
            return match.group(1)
    return None
