"""The admin panel: web pages for community managers and reviewers (zh-CN and English).

`blueprint.py` holds the blueprint and the guards every page uses; `views.py` the panel's own
pages (sign-in, language, dashboard); `panel.py` attaches those and each domain's pages, which
live in `koc/<domain>/admin.py` with their templates in `koc/<domain>/templates/admin/`.
"""
