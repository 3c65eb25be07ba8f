"""Members domain logic, one topic per module: plain functions over the session; they flush,
the caller commits.

`users` (the wider base, one by one), `imports` (the base in bulk), `candidates` (ranking who
to invite), `invitations`, `roster` (members and their status).
"""
