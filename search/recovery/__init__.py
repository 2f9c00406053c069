"""What lets a run survive a crash, a move or a second driver: the run lock, Tune's snapshots
checked, a moved run reattached, the baselines' cache.

It imports from search/ only these groups: base, trial, results, study (the layering that
tests/test_search_layout.py checks); search/'s flat modules, the CLI among them, import any
group.
"""
