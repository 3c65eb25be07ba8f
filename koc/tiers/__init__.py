"""Tiers: the graded incentive system (badge, early access, senior group) and its recalculation."""
