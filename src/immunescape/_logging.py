"""immunescape's log messages follow scanpy's verbosity, as scanpy's own tools do.

Every module logs to a child of the ``immunescape`` logger. In a notebook or script, records reach
scanpy's logger (``sc.settings.verbosity``: 1 shows warnings, 2 and above info, 4 debug), printed by
scanpy's handler. Set ``logging.getLogger("immunescape").propagate = True`` to route them through
Python's logging instead. The command line prints them on stderr itself (``use_stderr``).
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "immunescape"


class _ScanpyVerbosity(logging.Handler):
    """Hands each record to scanpy's logging functions, which print it when ``sc.settings.verbosity`` allows."""

    def emit(self, record: logging.LogRecord) -> None:
        from scanpy import logging as scanpy_logging

        log = {
            logging.DEBUG: scanpy_logging.debug,
            logging.INFO: scanpy_logging.info,
            logging.WARNING: scanpy_logging.warning,
        }
        try:
            log.get(record.levelno, scanpy_logging.error)(self.format(record))
        except Exception:  # noqa: BLE001 - logging.Handler's idiom: a broken log stream must never stop the work
            self.handleError(record)


def follow_scanpy() -> None:
    """Route the package's records through scanpy's verbosity (the default, set at import)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers = [h for h in logger.handlers if not isinstance(h, (_ScanpyVerbosity, _StderrLine))]
    logger.addHandler(_ScanpyVerbosity())
    logger.setLevel(logging.DEBUG)  # scanpy's verbosity decides what is shown
    logger.propagate = False


class _StderrLine(logging.StreamHandler):
    """One plain line per record on stderr (the command line)."""


def use_stderr(level: int) -> None:
    """Command line: print the package's records at ``level`` and above as plain lines on stderr."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers = [h for h in logger.handlers if not isinstance(h, (_ScanpyVerbosity, _StderrLine))]
    handler = _StderrLine(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
