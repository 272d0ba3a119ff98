"""The examples in the docstrings run (against the installed package, which is what users import)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import immunescape

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(immunescape.__path__, prefix="immunescape.") if "._kernels" not in name
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
