"""Where the library's messages go: module loggers under ``mtlsearch``; the CLI (or a script,
or a test) decides what the user sees with :func:`log_to_console`.

Library code never prints: a program that embeds ``run_experiment`` keeps its own logging
configuration, and gets the run's lines ("Ray: ...", "Baselines: ...", the trial lines of
``ProgressPrinter``, warnings) as records of the ``mtlsearch`` logger. On the console:

- information (the run's lines) goes to standard output, or to standard error where
  standard output carries a result a program reads (``--json``);
- warnings and errors go to standard error, a warning starting with ``Warning: ``;
- progress records (``mtl_models.report_progress``: decoding images, evaluating the
  shortlist, retraining) go to standard error: a bar per step on a terminal when tqdm is
  installed, else a line at the first and last step and at most every
  :data:`LINE_EVERY_S` seconds between them.

The level is the CLI's ``-v`` / ``-q``: :func:`verbosity_level`.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

ROOT = "mtlsearch"
LINE_EVERY_S = 10.0  # a progress line at most this often (without a terminal), besides the first and last


def get_logger(module: str) -> logging.Logger:
    """The logger of a library module: ``mtlsearch.<module>``."""
    return logging.getLogger(f"{ROOT}.{module}")


def verbosity_level(verbose: int = 0, quiet: int = 0) -> int:
    """The log level of ``-v`` (repeatable) and ``-q`` (repeatable): INFO by default, DEBUG
    with ``-v``; WARNING with ``-q`` (only warnings, errors and results), ERROR with ``-qq``."""
    if verbose > 0:
        return logging.DEBUG
    return {0: logging.INFO, 1: logging.WARNING}.get(quiet, logging.ERROR)


class _Plain(logging.Formatter):
    """The message as it is; a warning starts with ``Warning: ``."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return f"Warning: {text}" if record.levelno == logging.WARNING else text


class _Console(logging.Handler):
    """Writes each record to whatever ``sys.stdout`` / ``sys.stderr`` is when it comes (pytest's
    capture included): see the module doc for which stream and how progress is drawn."""

    def __init__(self, info_to_stderr: bool = False) -> None:
        super().__init__()
        self.info_to_stderr = info_to_stderr
        self._bars: dict[str, Any] = {}  # step -> tqdm bar
        self._last_line: dict[str, float] = {}  # step -> monotonic time of its last progress line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from mtl_models import PROGRESS_KEY  # here, not at the top: mtl_models imports torch, which
            # `mtlsearch run` imports in a thread while Ray starts (search.run._start)

            progress = getattr(record, PROGRESS_KEY, None)
            if progress is not None:
                self._progress(record, *progress)
                return
            stream = sys.stderr if record.levelno >= logging.WARNING or self.info_to_stderr else sys.stdout
            self._write(stream, self.format(record))
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)

    def _write(self, stream: TextIO, text: str) -> None:
        if self._bars:  # above the bars, not through them
            from tqdm import tqdm

            tqdm.write(text, file=stream)
        else:
            stream.write(text + "\n")
        stream.flush()

    def _progress(self, record: logging.LogRecord, step: str, done: int, total: int) -> None:
        stream = sys.stderr
        bar = self._bars.get(step)
        if bar is None and _tqdm_available() and stream.isatty():
            from tqdm import tqdm

            bar = self._bars[step] = tqdm(total=total, desc=step, file=stream, leave=True, dynamic_ncols=True)
        if bar is not None:
            bar.set_postfix_str(record.getMessage()[-60:], refresh=False)
            bar.update(done - bar.n)
            if done >= total:
                bar.close()
                del self._bars[step]
            return
        now = time.monotonic()
        last = self._last_line.get(step)
        if last is None or done >= total or now - last >= LINE_EVERY_S:
            self._last_line[step] = now
            stream.write(self.format(record) + "\n")
            stream.flush()
        if done >= total:
            self._last_line.pop(step, None)


def _tqdm_available() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def log_to_console(level: int = logging.INFO, info_to_stderr: bool = False) -> None:
    """Show the ``mtlsearch`` messages on the console, plain, as the CLI does (one handler,
    reconfigured on a second call): see the module doc; ``info_to_stderr`` keeps standard
    output for a result (``--json``)."""
    logger = logging.getLogger(ROOT)
    handler = next((h for h in logger.handlers if isinstance(h, _Console)), None)
    if handler is None:
        handler = _Console()
        handler.setFormatter(_Plain("%(message)s"))
        logger.addHandler(handler)
    handler.info_to_stderr = info_to_stderr
    logger.setLevel(level)


log_to_stdout = log_to_console  # the name scripts and benchmarks call it by


def console_state() -> tuple[int, bool | None]:
    """The ``mtlsearch`` logger's level and its console handler's ``info_to_stderr`` (None: no handler)."""
    logger = logging.getLogger(ROOT)
    handler = next((h for h in logger.handlers if isinstance(h, _Console)), None)
    return logger.level, None if handler is None else handler.info_to_stderr


def restore_console(state: tuple[int, bool | None]) -> None:
    """Put back what :func:`console_state` saw (a handler added since stays, as a second call would find it)."""
    level, info_to_stderr = state
    logger = logging.getLogger(ROOT)
    logger.setLevel(level)
    for handler in logger.handlers:
        if isinstance(handler, _Console):
            handler.info_to_stderr = bool(info_to_stderr)
