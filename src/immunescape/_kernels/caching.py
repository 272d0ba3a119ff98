"""numba's on-disk cache, made safe for processes that compile at the same time.

numba saves a compiled kernel by reading the cache index, picking a data file name and writing both
back. Two processes compiling different specialisations at once (dask workers on first use, a CLI
run beside a notebook) can interleave these steps so that the index maps a signature to another
signature's machine code: every later load then crashes (numba issues 4807 and 10128). Here each
kernel's cache saves take an exclusive OS file lock and its loads a shared one, so an index update
is never interleaved with another, or seen half done.

The wrapping uses numba's cache object (``dispatcher._cache``); where that is missing (another numba,
caching off) or locks are not available (no ``fcntl``), kernels run unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".immunescape-numba.lock"


@contextlib.contextmanager
def cache_lock(folder: str, exclusive: bool) -> Iterator[bool]:
    """Hold the lock file of a cache folder; yields whether a lock is held (False: none could be had)."""
    if fcntl is None:
        yield False
        return
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # a read-only install: numba itself then caches elsewhere or not at all
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def lock_cache_files(namespace: dict) -> list[str]:
    """Wrap the cache of every numba dispatcher in ``namespace`` (a kernel module's globals) in
    :func:`cache_lock`; returns the names wrapped."""
    wrapped = []
    for name, obj in list(namespace.items()):
        cache = getattr(obj, "_cache", None)
        if cache is None or getattr(cache, "immunescape_locked", False):
            continue
        if not all(hasattr(cache, attr) for attr in ("save_overload", "load_overload", "cache_path")):
            continue
        save, load = cache.save_overload, cache.load_overload

        def locked_save(sig, data, _save=save, _cache=cache):
            with cache_lock(_cache.cache_path, exclusive=True):
                return _save(sig, data)

        def locked_load(sig, target_context, _load=load, _cache=cache):
            with cache_lock(_cache.cache_path, exclusive=False):
                return _load(sig, target_context)

        cache.save_overload, cache.load_overload = locked_save, locked_load
        cache.immunescape_locked = True
        wrapped.append(name)
    return wrapped
