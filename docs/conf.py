"""Sphinx configuration of the API reference (built by tests/test_docs.py with warnings as errors)."""

import immunescape

project = "immunescape"
author = "immunescape developers"
release = version = immunescape.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary", "numpydoc"]
autosummary_generate = True
autodoc_typehints = "none"  # numpydoc renders the documented types; signatures stay short
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
exclude_patterns = ["_build", "bad_inputs.md"]
html_theme = "alabaster"
html_static_path: list[str] = []


def _methods_page(app, docname, source):
    """methods.rst's table comes from the registry: every registered method is documented."""
    if docname == "methods":
        from immunescape.methods import methods_rst

        source[0] = source[0].replace(".. registry-table::", methods_rst())


def setup(app):
    app.connect("source-read", _methods_page)
