"""Small helpers shared across modules."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a "did you mean" suffix naming the closest choices, or an empty string."""
    matches = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    return f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
