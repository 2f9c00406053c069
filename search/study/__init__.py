"""The Optuna study and the Tune search algorithms and scheduler over it: TPE through Tune, the
pruner as a scheduler, the fixed and racing config lists, the study on disk.

It imports from search/ only these groups: base, trial, results (the layering that
tests/test_search_layout.py checks); search/'s flat modules, the CLI among them, import any
group.
"""
