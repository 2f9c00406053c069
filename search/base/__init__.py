"""Logging and Ray: the library's loggers, starting or joining Ray, the overlapped start of a run.

It imports nothing else of search/ (the layering that tests/test_search_layout.py checks);
search/'s flat modules, the CLI among them, import any group.
"""
