"""Small helpers shared across modules."""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Iterable, Iterator


def closest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a "did you mean" suffix naming the closest choices, or an empty string."""
    matches = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""


@contextlib.contextmanager
def quiet_info(name: str = "immunescape") -> Iterator[None]:
    """Hold back INFO messages of ``name``'s loggers (internal scoring whose coverage notes would mislead)."""
    log = logging.getLogger(name)
    before = log.level
    log.setLevel(max(before, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(before)
