"""Kits domain logic, one module per topic: plain functions over the session that flush and
never commit (the request or task commits once).

- `kits`: creating, editing, publishing and archiving kits; who sees a kit (tier, embargo,
  segments) and which members it targets.
- `uploads`: presigned single and multipart uploads, completing and deleting an asset, its
  checksum and preview, abandoned uploads.
- `watermarks`: one member's marked copy of an embargoed image; finding who leaked a copy.
- `bundles`: the zip of a kit's ready assets.
- `downloads`: download URLs for an asset or the zip, each one recorded.
- `reconciliation`: objects in storage against the rows that point to them.
"""
