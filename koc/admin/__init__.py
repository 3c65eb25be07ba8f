"""The admin panel: web pages for community managers and reviewers (zh-CN and English)."""
