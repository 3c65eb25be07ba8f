"""Submissions: the posts KOCs report, their review, scoring and the points ledger."""
