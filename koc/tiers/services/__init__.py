"""Tiers domain logic, one module per topic: plain functions over the session that flush and
never commit (the request or task commits once).

- `rules`: tier rules as versioned data, the reference programme, ranks and names of tiers.
- `metrics`: the metrics rules are written in, each one grouped query over every member.
- `engine`: deciding and writing tiers: planning, previews, the recalculation (whole, incremental
  or split into parts across workers) and staff setting or locking a member's tier.
- `history`: tier changes as recorded, and how many members each tier holds.
- `progress`: what a member is told about their tier: the next tier's requirements, at risk, grace.
- `badges`: the signed, verifiable badge a tier gives.
- `drops`: early-access product drops, first come or by lottery, and who posted after one.
- `groups`: the senior group's roster.
"""
