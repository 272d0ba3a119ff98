"""File output that never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import contextvars
import os
import stat
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from ._chunks import read_failure
from ._errors import ImmunescapeIOError

# Set by the command line's SIGINT/SIGTERM handler. An interrupt raised inside third-party cleanup code
# (h5py's, for one) can be swallowed; checking this flag before the final rename makes sure an
# interrupted run never leaves an output behind, whichever code the signal landed in.
INTERRUPTED = threading.Event()
# Every output renamed into place by this process, in order (the command line says what an interrupt left).
WRITTEN: list[Path] = []
# Set by the command line: while an output is written, native libraries' messages on file descriptor 2
# are held back (a failed HDF5 write makes h5py print dozens of tracebacks); our one-line error says it.
HOLD_NATIVE_STDERR = threading.Event()
# Set when writing an output failed: HDF5 may hold broken file handles that crash its exit-time cleanup,
# so the command line ends the process without running it.
WRITE_FAILED = threading.Event()


def check_target(target: str | Path, *, overwrite: bool) -> Path:
    """Fail with a clear message if ``target`` cannot be written (or exists without ``overwrite``);
    return its folder."""
    target = Path(target)
    if not target.name or target.name in (".", ".."):
        raise ImmunescapeIOError(f"Cannot write {str(target)!r}: name a file, not a folder.")
    folder = target.parent if str(target.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise ImmunescapeIOError(f"Cannot write {str(target)!r}: {str(folder)!r} is a file, not a folder.")
    if not folder.is_dir():
        raise ImmunescapeIOError(f"Output folder {str(folder)!r} does not exist; create it first.")
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    if len(os.fsencode(target.name)) > longest:
        raise ImmunescapeIOError(
            f"The output name {target.name[:40]!r}... is longer than this file system allows ({longest} bytes); "
            "choose a shorter name."
        )
    if target.is_dir():
        raise ImmunescapeIOError(f"{str(target)!r} is a folder; name a file inside it instead.")
    if target.exists() and not overwrite:
        raise ImmunescapeIOError(f"{str(target)!r} exists; pass --force (overwrite=True) to replace it.")
    if not os.access(folder, os.W_OK):
        raise ImmunescapeIOError(f"Cannot write to {str(folder)!r}: permission denied. Choose another output folder.")
    return folder


def check_outputs(
    outputs: Sequence[str | Path | None], *, inputs: Sequence[str | Path | None] = (), overwrite: bool
) -> list[Path]:
    """Check a command's outputs before any work: each writable, none an input, no two the same file.

    An output "is" an input when it names the same file by any route: the same path, a symlink to
    it, or a hard link (same device and inode). Returns the outputs as paths.
    """
    paths = [Path(p) for p in outputs if p]
    for path in paths:
        check_target(path, overwrite=overwrite)
        for source in filter(None, inputs):
            if _same_file(path, Path(source)):
                raise ImmunescapeIOError(
                    f"The output {str(path)!r} is the input {str(source)!r} (same file); an output never "
                    "replaces an input. Choose another output name."
                )
    for i, path in enumerate(paths):
        for other in paths[i + 1 :]:
            if _same_file(path, other):
                raise ImmunescapeIOError(
                    f"Two outputs name the same file ({str(path)!r}, {str(other)!r}); give each its own name."
                )
    return paths


def check_updatable(path: str | Path) -> Path:
    """Fail clearly unless ``path`` is an existing file that may be replaced in place; return it symlink-resolved."""
    real = Path(os.path.realpath(path))
    if not real.is_file():
        raise ImmunescapeIOError(f"Cannot update {str(path)!r} in place: it is not an existing file.")
    if not os.access(real, os.W_OK) or not real.stat().st_mode & stat.S_IWUSR:  # mode bits count, even for root
        raise ImmunescapeIOError(
            f"{str(path)!r} is read-only; make it writable (chmod u+w) or write a new file with -o."
        )
    check_target(real, overwrite=True)
    return real


# HDF5 keeps a DataFrame's column list in one attribute, and attributes are limited to 64 KiB.
_COLUMN_LIST_BYTES = 60_000


def check_column_names(names: Sequence[str], key: str) -> None:
    """Refuse, before any work, more score columns than an .h5ad DataFrame can list."""
    if not names:
        return
    longest = max(len(f"{key}_{n}".encode()) for n in names)
    if len(names) * longest > _COLUMN_LIST_BYTES:
        raise ImmunescapeIOError(
            f"{len(names):,} signatures are more columns than an .h5ad DataFrame can list (HDF5 keeps the "
            "list in one 64 KiB attribute); write the scores with --scores-only TABLE.csv (or "
            ".parquet), or score fewer signatures per run."
        )


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


class _Batch:
    """Temporary files of one command, renamed onto their targets together when all are complete."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []


_BATCH: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("immunescape_output_batch", default=None)


@contextlib.contextmanager
def all_or_nothing() -> Iterator[None]:
    """Outputs written by :func:`atomic_path` inside this block appear together, or none of them.

    Each file is first written under a temporary name; the renames happen only after the block
    succeeded, with SIGINT/SIGTERM held back, and a failed rename puts back what was there before.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with all_or_nothing():
    ...     atomic_write_text(folder / "a.txt", "a")
    ...     atomic_write_text(folder / "b.txt", "b")
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt', 'b.txt']
    """
    if _BATCH.get() is not None:  # nested: the outer block decides
        yield
        return
    batch = _Batch()
    token = _BATCH.set(batch)
    try:
        yield
        _BATCH.reset(token)
        token = None
        _commit(batch.pending)
    finally:
        if token is not None:
            _BATCH.reset(token)
        for tmp, _ in batch.pending:
            if tmp.exists():
                tmp.unlink()


def _commit(pending: list[tuple[Path, Path]]) -> None:
    """Rename every temporary file onto its target; on any failure put the previous targets back."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt
    done: list[tuple[Path, Path | None, bool]] = []  # (target, backup of its old content, existed before)
    with _signals_held():
        try:
            for tmp, target in pending:
                existed, backup = target.exists(), None
                if existed and len(pending) > 1:  # a hard link keeps the old content until every rename succeeded
                    backup = target.with_name(f".ie-{os.getpid()}-{len(done)}.bak")
                    try:
                        os.link(target, backup)
                    except OSError:  # no hard links on this file system: the old content cannot come back
                        backup = None
                os.replace(tmp, target)
                done.append((target, backup, existed))
        except OSError as err:
            for old_target, backup, existed in reversed(done):
                if backup is not None:
                    os.replace(backup, old_target)
                elif not existed:
                    old_target.unlink(missing_ok=True)
            raise ImmunescapeIOError(f"Writing {str(target)!r} failed ({err}); nothing was written.") from err
        finally:
            for _, backup, _ in done:
                if backup is not None and backup.exists():
                    backup.unlink()
    WRITTEN.extend(target for _, target in pending)


@contextlib.contextmanager
def exclusive_update(path: str | Path) -> Iterator[None]:
    """Hold a lock while ``path`` is read, changed and replaced, so that a second immunescape run
    updating the same file fails with a clear message instead of silently losing one update.

    The lock is a short-lived hidden file beside the (symlink-resolved) file, removed at the end.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    import hashlib

    real = Path(os.path.realpath(path))
    lock = real.with_name(".ie-lock-" + hashlib.sha1(str(real).encode()).hexdigest()[:16])
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise ImmunescapeIOError(f"Cannot update {str(path)!r} in place: {err.strerror} in its folder.") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            raise ImmunescapeIOError(
                f"Another immunescape run is updating {str(path)!r}; wait until it has finished, then run again."
            ) from err
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:  # the previous holder removed it between our open and our lock
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # before unlocking: a waiting run re-checks the name and starts afresh
        os.close(fd)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the few renames that must happen together (main thread only)."""
    import signal

    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # no pthread_sigmask on this platform
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _first_line(err: BaseException) -> str:
    return str(err).split(" (file write failed")[0].splitlines()[0] if str(err) else type(err).__name__


@contextlib.contextmanager
def _native_stderr_held() -> Iterator[None]:
    """With ``HOLD_NATIVE_STDERR`` set, point file descriptor 2 at /dev/null for the block (main thread only)."""
    if not HOLD_NATIVE_STDERR.is_set() or threading.current_thread() is not threading.main_thread():
        yield
        return
    import gc
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    _QUIETED.append((saved, quiet))
    os.dup2(quiet, 2)
    try:
        yield
    finally:
        try:
            gc.collect()  # h5py objects of a failed write complain when freed: free them while descriptor 2 is quiet
        finally:  # an interrupt can land inside gc.collect(): descriptor 2 comes back all the same
            release_native_stderr()


_QUIETED: list[tuple[int, int]] = []  # (saved descriptor 2, /dev/null) while a write holds it quiet


def release_native_stderr() -> None:
    """Give file descriptor 2 back if a write still holds it quiet (idempotent).

    The command line calls it before it reports an interrupt: a signal handled at the wrong moment
    could otherwise leave descriptor 2 on /dev/null and the "interrupted" message unseen.
    """
    while _QUIETED:
        saved, quiet = _QUIETED.pop()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(quiet)


def check_free_space(folder: str | Path, need: int, what: str) -> None:
    """Refuse, before any work, to write ``need`` bytes into a folder that has less free space."""
    import shutil

    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if need > free:
        raise ImmunescapeIOError(
            f"{what} needs about {need / 2**20:,.0f} MiB but {str(folder)!r} has {free / 2**20:,.0f} MiB "
            "free; free some space or write elsewhere."
        )


@contextlib.contextmanager
def atomic_path(target: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    A symlink ``target`` keeps pointing where it did, and the file it points to is replaced; an
    existing target's permission bits are kept. Inside :func:`all_or_nothing`, the rename waits
    for the end of that block.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
    """
    target = Path(target)
    check_target(target, overwrite=overwrite)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    folder = check_target(target, overwrite=overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=".ie-", suffix=".part", dir=folder)  # short: any allowed target name fits
    os.close(fd)
    tmp = Path(tmp_name)
    batch = _BATCH.get()
    handed_over = False
    try:
        try:
            with _native_stderr_held():
                yield tmp
        except ImmunescapeIOError:
            WRITE_FAILED.set()
            raise
        except (
            OSError,
            RuntimeError,
        ) as err:  # disk full, quota, I/O error: one clear message, and nothing left behind
            WRITE_FAILED.set()
            raise ImmunescapeIOError(
                f"Writing {str(target)!r} failed ({_first_line(err)}); nothing was written."
            ) from err
        pause = float(os.environ.get("IMMUNESCAPE_TEST_PAUSE_BEFORE_RENAME", "0"))  # test hook: widen the window
        if pause:
            import time

            time.sleep(pause)
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt
        if tmp.is_file():  # mkstemp makes 0600 files: keep the replaced file's mode, else the usual one
            if target.exists():
                mode = stat.S_IMODE(target.stat().st_mode)
            else:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.chmod(tmp, mode)
        if batch is not None:
            batch.pending.append((tmp, target))
            handed_over = True
        else:
            _commit([(tmp, target)])
    finally:
        if not handed_over and tmp.exists():
            tmp.unlink()


def atomic_write_text(target: str | Path, text: str, *, overwrite: bool = True) -> None:
    """Write text to ``target`` through :func:`atomic_path`."""
    with atomic_path(target, overwrite=overwrite) as tmp:
        tmp.write_text(text)


def read_h5ad(path: str | Path, *, backed: bool = False):
    """Read an ``.h5ad`` file with a clear error for missing, foreign or damaged files.

    Parameters
    ----------
    path
        File to read.
    backed
        Open in backed read-only mode (``X`` stays on disk) instead of loading it.
    """
    import anndata as ad
    import h5py

    path = Path(path)
    if not path.exists():
        raise ImmunescapeIOError(f"Input file {str(path)!r} does not exist.")
    if path.is_dir():
        raise ImmunescapeIOError(f"{str(path)!r} is a folder; pass an .h5ad file.")
    if not h5py.is_hdf5(path):
        raise ImmunescapeIOError(
            f"{str(path)!r} is not an HDF5/.h5ad file. Convert it first, e.g. with scanpy.read_10x_mtx / read_csv and "
            "AnnData.write_h5ad."
        )
    _check_stored_file(path, backed=backed)
    try:
        adata = ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as err:  # h5py/anndata raise many types for damaged files
        raise ImmunescapeIOError(
            f"Could not read {str(path)!r}: {read_failure(err, 'the file looks truncated or corrupted')}."
        ) from err
    _check_matrices(adata, path)
    return adata


def _check_stored_file(path: Path, *, backed: bool) -> None:
    """Refuse, before anndata reads it, a file that would make the read leave the file or the machine's memory.

    - HDF5 external links, external raw storage and virtual datasets read other files (a hostile
      .h5ad could copy any readable file into the output);
    - the elements a read loads into memory (everything, or all but X when backed) are summed from
      their stored shapes, so a few MB of compressed zeros cannot claim 40 GB;
    - sparse index arrays must be integers (scipy silently truncates float indices to other genes
      when a backed file is read) and data not float16 (scipy cannot hold it).
    """
    import h5py

    fix = "the file is damaged or was written by a faulty tool; re-create it from its source."
    loaded = 0
    try:
        with h5py.File(path, "r") as handle:
            foreign: list[str] = []

            def visit_link(name: str, link) -> None:
                if isinstance(link, h5py.ExternalLink):
                    foreign.append(f"{name} links to {link.filename}")

            handle.visititems_links(visit_link)
            datasets: list[tuple[str, h5py.Dataset]] = []

            def visit(name: str, obj) -> None:  # returns None: any other value would stop h5py's visit early
                if isinstance(obj, h5py.Dataset):
                    datasets.append((name, obj))

            handle.visititems(visit)
            for name, dataset in datasets:
                if dataset.external or dataset.is_virtual:
                    foreign.append(f"{name} stores its values in another file")
                elif not (backed and (name == "X" or name.startswith("X/"))):
                    loaded += dataset.size * dataset.dtype.itemsize if dataset.shape is not None else 0
            if foreign:
                raise ImmunescapeIOError(
                    f"{str(path)!r} reads data from outside itself ({'; '.join(foreign[:3])}); immunescape "
                    "reads only self-contained .h5ad files. Re-save it with anndata (read, then "
                    "write_h5ad) where you trust the linked files."
                )
            groups = {"X": handle.get("X"), "raw.X": handle.get("raw/X")}
            layers = handle.get("layers")
            if isinstance(layers, h5py.Group):
                groups.update({f"layers[{k!r}]": layers.get(k) for k in layers})
            for where, group in groups.items():
                if not isinstance(group, h5py.Group) or "indices" not in group or "indptr" not in group:
                    continue
                index_types = [
                    group[name].dtype for name in ("indptr", "indices") if isinstance(group[name], h5py.Dataset)
                ]
                if len(index_types) < 2 or any(t.kind not in "iu" for t in index_types):
                    raise ImmunescapeIOError(
                        f"{str(path)!r}: {where} is damaged. Its sparse index arrays are not integers "
                        f"({', '.join(map(str, index_types))}): {fix}"
                    )
                data = group.get("data")
                if isinstance(data, h5py.Dataset) and data.dtype.kind == "f" and data.dtype.itemsize == 2:
                    raise ImmunescapeIOError(
                        f"{str(path)!r}: {where} is stored as sparse float16, which scipy cannot hold. "
                        "Convert it once in Python: X.data = X.data.astype('float32') on a copy read "
                        "with h5py, or re-export the file from its source as float32."
                    )
    except ImmunescapeIOError:
        raise
    except (
        OSError,
        KeyError,
        TypeError,
        ValueError,
        RuntimeError,
    ):  # unreadable structure: anndata's read reports it below
        return
    from ._utils import physical_memory

    if loaded > physical_memory() // 2:
        hint = "" if backed else " Stream X from disk instead (--backed, or anndata.read_h5ad(path, backed='r'))."
        raise ImmunescapeIOError(
            f"Reading {str(path)!r} would take {loaded / 2**30:,.1f} GiB of memory by its stored shapes "
            f"(this machine has {physical_memory() / 2**30:,.0f} GiB).{hint} A small file that claims "
            "this much is damaged or hostile."
        )


def _check_matrices(adata, path: Path) -> None:
    """Refuse damaged sparse matrices right after reading, before scipy or a kernel indexes with them."""
    from ._chunks import check_sparse
    from ._errors import InputError

    try:
        x = adata.X
    except KeyError:  # a backed file without X: get_expression says what to do when X is needed
        x = None
    matrices = {"X": x, **{f"layers[{k!r}]": v for k, v in adata.layers.items()}}
    if adata.raw is not None:
        matrices["raw.X"] = adata.raw.X
    for where, matrix in matrices.items():
        try:
            check_sparse(matrix)
        except InputError as err:
            raise ImmunescapeIOError(f"{str(path)!r}: {where} is damaged. {err}") from err


def write_h5ad(adata, target: str | Path, *, overwrite: bool = False) -> None:
    """Write ``adata`` to ``target`` through a temporary file in the same folder, renamed when complete."""
    with atomic_path(target, overwrite=overwrite) as tmp:
        adata.write_h5ad(tmp)


def add_to_h5ad(
    source: str | Path,
    target: str | Path,
    *,
    obsm: dict | None = None,
    obs_columns: dict | None = None,
    obs=None,
    uns: dict | None = None,
    obsm_removed: Sequence[str] = (),
    overwrite: bool = False,
) -> None:
    """Copy ``source`` to ``target`` with new ``obsm``/``obs``/``uns`` elements (and ``obsm_removed`` deleted),
    without loading X.

    The copy is made byte for byte into a temporary file beside ``target``, the new elements are
    written into it, and it is renamed onto ``target`` only when all of that succeeded; ``target``
    may be ``source`` itself (an in-place update that is still all-or-nothing).
    """
    import shutil

    import h5py
    from anndata.io import write_elem

    with atomic_path(target, overwrite=overwrite) as tmp:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "r+") as handle:
            if obs is not None and obs_columns:
                frame = obs.copy()
                for name, values in obs_columns.items():
                    frame[name] = values
                del handle["obs"]
                write_elem(handle, "obs", frame)
            for key in obsm_removed:
                if "obsm" in handle and key in handle["obsm"]:
                    del handle["obsm"][key]
            for group, items in (("obsm", obsm or {}), ("uns", uns or {})):
                if not items:
                    continue
                if group not in handle:
                    write_elem(handle, group, {})
                parent = handle[group]
                for key, value in items.items():
                    if key in parent:
                        del parent[key]
                    write_elem(parent, key, value)


def write_table(table, target: str | Path, *, overwrite: bool = False) -> None:
    """Write a DataFrame as .csv, .tsv or .parquet (by suffix), atomically."""
    suffix = Path(target).suffix.lower()
    if suffix not in (".csv", ".tsv", ".txt", ".parquet", ".pq"):
        raise ImmunescapeIOError(f"Cannot tell the table format of {str(target)!r}; use a .csv, .tsv or .parquet name.")
    with atomic_path(target, overwrite=overwrite) as tmp:
        if suffix in (".parquet", ".pq"):
            try:
                table.to_parquet(tmp)
            except ImportError as err:
                raise ImmunescapeIOError("Writing parquet needs pyarrow: pip install pyarrow, or write .csv.") from err
        else:
            table.to_csv(tmp, sep="\t" if suffix in (".tsv", ".txt") else ",")
