"""What the trials reported, read back: the results table and the progress lines.

It imports from search/ only these groups: base, trial (the layering that
tests/test_search_layout.py checks); search/'s flat modules, the CLI among them, import any
group.
"""
