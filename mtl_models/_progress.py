"""Progress of a long step (decoding images, evaluating a shortlist, retraining) as log records.

Library code does not draw progress bars: it logs an INFO record whose ``extra`` carries
``progress = (step, done, total)``, and the program decides how to show it. The CLI
(``search.base._log``) draws a bar per step on a terminal (tqdm) and prints a line now and then
otherwise; a program with its own logging configuration gets ordinary log lines.
"""
from __future__ import annotations

import logging

PROGRESS_KEY = "progress"  # the LogRecord attribute: (step, done, total)


def report_progress(logger: logging.Logger, step: str, done: int, total: int, message: str = "") -> None:
    """Log that ``done`` of ``total`` units of ``step`` are done (``message``: what the
    line says; default ``"<step>: <done>/<total>"``)."""
    logger.info(message or f"{step}: {done}/{total}", extra={PROGRESS_KEY: (step, int(done), int(total))})
