"""numba kernels: plain arrays (and NamedTuples of them, see :mod:`.types`) in and out; no AnnData here.

Developers: numba's on-disk cache (``cache=True``) keys each kernel on its own file only. A kernel that
calls a function from another file (the rank kernels call :func:`.nulls.row_nulls`) keeps the old
callee compiled into its cache when only that other file changes; after editing a kernel module,
delete ``src/immunescape/_kernels/__pycache__/*.nb[ic]``. Installed copies are not affected: an
install writes every file anew.
"""
