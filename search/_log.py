"""Where the library's messages go: module loggers under ``mtlsearch``; the CLI (or a script,
or a test) decides what the user sees with :func:`log_to_stdout`.

Library code never prints: a program that embeds ``run_experiment`` keeps its own logging
configuration, and gets the run's lines ("Ray: ...", "Baselines: ...", warnings) as
records of the ``mtlsearch`` logger. The trial progress lines are a Ray Tune callback's
(``ProgressPrinter``), the reporter a run is given, as Tune's own reporters are.
"""
from __future__ import annotations

import logging
import sys

ROOT = "mtlsearch"


def get_logger(module: str) -> logging.Logger:
    """The logger of a library module: ``mtlsearch.<module>``."""
    return logging.getLogger(f"{ROOT}.{module}")


class _Plain(logging.Formatter):
    """The message as it is; a warning starts with ``Warning: ``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"Warning: {text}" if record.levelno == logging.WARNING else text


class _Stdout(logging.Handler):
    """Writes to whatever ``sys.stdout`` is when a record comes (pytest's capture included)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


def log_to_stdout(level: int = logging.INFO) -> None:
    """Show the ``mtlsearch`` messages on standard output, plain, as the CLI does (once)."""
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, _Stdout) for h in logger.handlers):
        handler = _Stdout()
        handler.setFormatter(_Plain("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
