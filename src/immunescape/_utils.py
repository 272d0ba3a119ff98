"""Small helpers shared across modules."""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Iterable, Iterator


def closest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a "did you mean" suffix naming the closest choices, or an empty string."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=0.5)
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


def package_versions() -> dict[str, str]:
    """Versions recorded with every result: this package, its signature library and the libraries it runs on."""
    from importlib.metadata import PackageNotFoundError, version

    from .signatures import library_version

    out = {}
    for pkg in ("immunescape", "numpy", "scipy", "numba", "anndata", "scanpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    out["immunescape signature library"] = library_version()
    return out


def check_key(key: object, what: str = "key_added") -> str:
    """``key`` if .h5ad can store it as a group or column name, else a clear error (before any work)."""
    from ._errors import InputError

    if not isinstance(key, str) or not key.strip():
        raise InputError(f"{what} must be a non-empty name, got {key!r}.")
    if "/" in key or "\x00" in key or key in (".", ".."):
        raise InputError(
            f"{what}={key!r} cannot be stored in an .h5ad file ('/' separates HDF5 groups); choose a name without '/'."
        )
    if len(key.encode()) > 200:
        raise InputError(f"{what} is {len(key.encode())} bytes long; keep it under 200.")
    return key


def check_whole(value: object, name: str, lowest: int = 1) -> int:
    """``value`` as an int when it is a whole number >= ``lowest`` (booleans are not numbers), else an InputError."""
    import numpy as np

    from ._errors import InputError

    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < lowest:
        raise InputError(f"{name} must be a whole number >= {lowest}, got {value!r}.")
    return int(value)


def check_random_state(random_state: object) -> None:
    """random_state must be None or a whole number >= 0 (numpy's seeds), refused in one line otherwise."""
    import numpy as np

    from ._errors import InputError

    if random_state is None:
        return
    if (
        isinstance(random_state, (bool, np.bool_))
        or not isinstance(random_state, (int, np.integer))
        or random_state < 0
    ):
        raise InputError(f"random_state must be None or a whole number >= 0, got {random_state!r}.")


def physical_memory() -> int:
    """Bytes of RAM on this machine (16 GiB when the system will not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30
