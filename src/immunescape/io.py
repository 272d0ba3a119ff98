"""File output that never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from ._errors import ImmunescapeIOError

# Set by the command line's SIGINT/SIGTERM handler. An interrupt raised inside third-party cleanup code
# (h5py's, for one) can be swallowed; checking this flag before the final rename makes sure an
# interrupted run never leaves an output behind, whichever code the signal landed in.
INTERRUPTED = threading.Event()


def check_target(target: str | Path, *, overwrite: bool) -> Path:
    """Fail with a clear message if ``target`` cannot be written (or exists without ``overwrite``); return its folder."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise ImmunescapeIOError(f"Cannot write {str(target)!r}: {str(folder)!r} is a file, not a folder.")
    if not folder.is_dir():
        raise ImmunescapeIOError(f"Output folder {str(folder)!r} does not exist; create it first.")
    if target.exists() and not overwrite:
        raise ImmunescapeIOError(f"{str(target)!r} exists; pass --force (overwrite=True) to replace it.")
    if not os.access(folder, os.W_OK):
        raise ImmunescapeIOError(f"Cannot write to {str(folder)!r}: permission denied. Choose another output folder.")
    return folder


@contextlib.contextmanager
def atomic_path(target: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

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
    folder = check_target(target, overwrite=overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
        except ImmunescapeIOError:
            raise
        except OSError as err:  # disk full, quota, I/O error: one clear message, and nothing left behind
            raise ImmunescapeIOError(f"Writing {str(target)!r} failed ({err}); nothing was written.") from err
        pause = float(os.environ.get("IMMUNESCAPE_TEST_PAUSE_BEFORE_RENAME", "0"))  # test hook: widen the window
        if pause:
            import time

            time.sleep(pause)
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt
        if tmp.is_file():  # mkstemp makes 0600 files; give the output the usual permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
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
    try:
        return ad.read_h5ad(path, backed="r" if backed else None)
    except Exception as err:  # h5py/anndata raise many types for damaged files
        raise ImmunescapeIOError(f"Could not read {str(path)!r}: the file looks truncated or corrupted ({type(err).__name__}: {err}).") from err


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
    overwrite: bool = False,
) -> None:
    """Copy ``source`` to ``target`` with new ``obsm``/``obs``/``uns`` elements, without loading X.

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
