"""Small helpers shared across modules."""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


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
    from .signatures import library_version

    return {**dict(_installed_versions()), "immunescape signature library": library_version()}


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    # read once per process: parsing the packages' metadata costs about 10 ms, a tenth of scoring 10k cells
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("immunescape", "numpy", "scipy", "numba", "anndata", "scanpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return tuple(out.items())


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


def _real(value: object) -> float:
    """``value`` as a float when it is a real number, else NaN (booleans and text are not numbers)."""
    import numpy as np

    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    return float(value) if numeric else math.nan


def check_number(value: object, name: str, *, positive: bool = False, hint: str = "") -> float:
    """``value`` as a float when it is a finite real number (``positive``: above 0; booleans are not numbers),
    else an InputError naming it (``hint``: what a good value looks like)."""
    from ._errors import InputError

    number = _real(value)
    if not math.isfinite(number) or (positive and number <= 0):
        kind = "a positive finite number" if positive else "a finite number"
        raise InputError(f"{name} must be {kind}{hint}, got {value!r}.")
    return number


def check_share(value: object, name: str, *, open_ends: bool = False) -> float:
    """``value`` as a float when it is a number between 0 and 1 (``open_ends``: strictly between;
    booleans and NaN are not numbers), else an InputError."""
    from ._errors import InputError

    number = _real(value)
    inside = 0 < number < 1 if open_ends else 0 <= number <= 1
    if not inside:
        raise InputError(f"{name} must be a number {'strictly ' if open_ends else ''}between 0 and 1, got {value!r}.")
    return number


def check_random_state(
    random_state: object, *, below: int | None = None, why: str = "", name: str = "random_state"
) -> None:
    """random_state must be None or a whole number >= 0 (numpy's seeds), and under ``below`` where a method
    seeds numpy's legacy generator (``why`` says so); refused in one line otherwise."""
    import numpy as np

    from ._errors import InputError

    if random_state is None:
        return
    if (
        isinstance(random_state, (bool, np.bool_))
        or not isinstance(random_state, (int, np.integer))
        or random_state < 0
    ):
        raise InputError(f"{name} must be None or a whole number >= 0, got {random_state!r}.")
    if below is not None and random_state >= below:
        raise InputError(f"{name} must be below {below:,}{why}, got {random_state!r}.")


def physical_memory() -> int:
    """Bytes of RAM on this machine (16 GiB when the system will not say)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


#: arrays shorter than this are reduced in one call: below it the threads cost more than they save
#: (2 cores, cold caches: 13.5M values take no less time split, 40M values 1.4-1.7x less)
SPLIT_REDUCE_MIN = 16_000_000


def split_reduce(array, reduce: Callable[[Any], T], *, max_parts: int | None = None) -> list[T]:
    """``reduce`` of consecutive parts of ``array``, one part per numba thread (at most ``max_parts``),
    run in threads.

    numpy's reductions (sum, min, max) release the GIL and run at one core's memory speed, so parts
    reduced at once scale with the threads. Use it for order-free results only (min, max, whether a
    part's sum is finite): the split depends on the thread count.
    """
    import numba

    threads = numba.get_num_threads() if max_parts is None else max(1, min(max_parts, numba.get_num_threads()))
    n_parts = max(1, min(threads, array.size)) if array.size >= SPLIT_REDUCE_MIN else 1
    parts = [array[k * array.size // n_parts : (k + 1) * array.size // n_parts] for k in range(n_parts)]
    if n_parts == 1:
        return [reduce(parts[0])]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n_parts, thread_name_prefix="immunescape-reduce") as pool:
        return list(pool.map(reduce, parts))
