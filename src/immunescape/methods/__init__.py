"""Scoring methods: the registry (:mod:`.registry`) and one module per method (or family).

Importing the package registers the built-in methods in this order; a plug-in registers its own with
:func:`register`. Everything that lists methods reads :func:`method_names`.
"""

from __future__ import annotations

import importlib

from .registry import (
    GeneStats,
    Method,
    NullOut,
    NullSpec,
    Plan,
    Prepare,
    get_method,
    method_names,
    methods_rst,
    methods_table,
    register,
    unregister,
)

#: the modules of the built-in methods, imported (and so registered) in the order the docs and the CLI list them
BUILTIN_MODULES = ("mean", "ucell", "aucell", "ssgsea", "singscore", "weighted", "gsva")
for _module in BUILTIN_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "GeneStats",
    "Method",
    "NullOut",
    "NullSpec",
    "Plan",
    "Prepare",
    "get_method",
    "method_names",
    "methods_rst",
    "methods_table",
    "register",
    "unregister",
]
