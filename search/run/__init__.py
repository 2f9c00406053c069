"""The phases of a run and the run itself: baselines, affinity, search, confirmation; the plan.

It imports from search/ only these groups: base, trial, results, study, recovery (the layering
that tests/test_search_layout.py checks); search/'s flat modules, the CLI among them, import any
group.
"""
