"""A full run decides tiers with set operations over each condition's values; a member's own
check (`passes`) reads the values one by one. Both must always pick the same members."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from koc.tiers.services.engine import compile_tiers
from koc.tiers.services.rules import RuleSet

MEMBERS = list(range(1, 31))
METRICS = ["approved_submissions", "best_post_interactions", "points_earned"]

conditions = st.lists(
    st.fixed_dictionaries({"metric": st.sampled_from(METRICS),
                           "min": st.sampled_from([0, 1, 3, 10, 250])}),
    min_size=1, max_size=3)
# Values on and either side of each threshold and its low-water mark, where a wrong comparison
# would show.
values = st.dictionaries(st.sampled_from(MEMBERS),
                         st.sampled_from([0, 0.5, 1, 1.5, 2, 3, 4.5, 5, 9, 10, 11, 124.5, 125,
                                          225, 249.9, 250, 400]), max_size=30)


@settings(max_examples=200, deadline=None)
@given(combine=st.sampled_from(["all", "any"]), clauses=conditions,
       columns=st.fixed_dictionaries(dict.fromkeys(METRICS, values)),
       low_water=st.sampled_from([1.0, 0.9, 0.5, 0.0]),
       universe=st.sets(st.sampled_from(MEMBERS)))
def test_set_evaluation_admits_exactly_the_members_passes_admits(
        combine, clauses, columns, low_water, universe):
    tier = {"key": "t", "name": "T", "rank": 1, "rules": {combine: clauses},
            "demotion": {"low_water": low_water, "min_days_at_tier": 0, "days_below": 0}}
    (compiled,) = compile_tiers(RuleSet(version=1, tiers=[tier]),
                                {(metric, None): column for metric, column in columns.items()})
    for factor in (1.0, compiled.low_water):
        expected = {m for m in universe if compiled.passes(m, factor)}
        assert compiled.members_passing(set(universe), factor) == expected
