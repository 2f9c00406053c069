"""What runs inside one Ray Tune trial: the trainable, the plugins' trial hooks, the baseline
trials' configs and the checkpoint a restarted trial continues from.

It imports from search/ only these groups: base (the layering that tests/test_search_layout.py
checks); search/'s flat modules, the CLI among them, import any group.
"""
