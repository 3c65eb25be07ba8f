"""The member portal: mobile pages at `/m` (and `/join/<code>`) that a KOC opens from WeCom or
WeChat. Pages render on the server from the domain services; their scripts write through
`/api/v1` with the member session cookie and the `X-CSRF-Token` header (koc.core.auth)."""
