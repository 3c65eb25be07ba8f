"""Submissions domain logic, one module per topic: plain functions over the session that flush
and never commit (the request or task commits once).

- `rules`: scoring rules as versioned data; `scoring`: the arithmetic of a score.
- `uploads`: media uploaded to storage for a submission.
- `posts`: creating and reading submissions, new metrics; `post_urls`: one URL per post.
- `review`: reviewers' decisions.
- `ledger`: the append-only points ledger.
- `anomalies`: flags for reviewers, near-duplicate images.
- `imports`: bulk metrics import.
- `funnel`: a kit's funnel from eligible members to approved posts.
"""
