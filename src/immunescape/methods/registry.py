"""The one registry of scoring methods: name -> parameters, reference, capabilities, and how to prepare a plan.

A method is one module in this package: it declares its kernel, parameters, reference and null terms
and calls :func:`register`. Everything that lists methods (``ie.tl.score``'s docstring, the CLI's
choices and help, :func:`immunescape.tl.methods`, the tests' parametrisation) reads the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .._chunks import Chunk
from .._errors import InputError
from .._null import MomentNull, NullSets
from .._utils import check_random_state, closest
from ..genes import ResolvedSignatures


@dataclass
class GeneStats:
    """Statistics over all rows that some methods need before scoring."""

    n_rows: int
    n_genes: int
    means: np.ndarray | None = None  # scanpy-compatible gene means (dtype as scanpy computes them)
    nonempty: np.ndarray | None = None  # genes with a non-zero value in some row
    # float64 sums row after row: the null's expression bins, the same in memory, on disk and in dask
    # (scanpy's in-memory means accumulate float32 data in float32, streamed sums cannot repeat that)
    null_means: np.ndarray | None = None


@dataclass(frozen=True)
class NullSpec:
    """What null the caller asked for: ``n_null`` random gene sets per signature, each gene matched
    in mean expression from ``n_bins`` expression bins (``kind="matched"``), or the exact moments of
    uniform draws within the bins (``"analytic"``, linear methods)."""

    n_null: int = 100
    n_bins: int | None = None  # None: the default bins of immunescape._null.null_bins
    kind: str = "matched"


NullOut = tuple[np.ndarray, np.ndarray]  # (z, p) rows of one chunk


@dataclass
class Plan:
    """Everything a kernel needs, prepared once; ``run(chunk, out, null_out)`` scores one chunk into
    ``out`` and, when the plan has null sets and ``null_out = (z, p)`` is given, writes each
    signature's z-score and p-value against its random gene sets.

    A method whose scores depend on all samples at once (GSVA's per-gene kernel CDF) gives
    ``run_all(matrix, null_out) -> scores`` instead and is not chunked.
    """

    run: Callable[[Chunk, np.ndarray, NullOut | None], None] | None = None
    finish: Callable[[np.ndarray], np.ndarray] = field(default=lambda scores: scores)
    details: dict[str, Any] = field(default_factory=dict)
    run_all: Callable[[Any, NullOut | None], np.ndarray] | None = None
    null: NullSets | MomentNull | None = None


class Prepare(Protocol):
    """A method's preparation: resolved signatures, gene statistics over all rows, checked parameters,
    the random state and the null asked for (or None) in; a :class:`Plan` out. Called once per
    scoring call, before any chunk is scored."""

    def __call__(
        self,
        resolved: ResolvedSignatures,
        stats: GeneStats,
        params: dict[str, Any],
        random_state: int | None,
        null: NullSpec | None = None,
    ) -> Plan: ...


@dataclass(frozen=True)
class Method:
    """A registered scoring method."""

    name: str
    description: str
    equals: str
    reference: str
    params: dict[str, Any]
    needs: tuple[str, ...]
    signed: str
    weighted: bool
    expects_log: bool
    value_range: str
    prepare: Prepare
    null_bins: int | None = None  # expression bins of the null's random genes; None: the default bins
    # what each parameter accepts, beyond the type of its default: {name: (kind, lowest value or choices)}
    rules: dict[str, tuple[str, Any]] = field(default_factory=dict)
    # capabilities, read by the runner, the checks, the CLI, the docs and the tests' parametrisation
    nulls: tuple[str, ...] = ("matched",)  # null kinds it supports ("analytic": exact moments of linear scores)
    chunked: bool = True  # False: scores depend on all rows at once (run_all), so no chunks, backed streaming or dask
    legacy_seed: bool = False  # seeds numpy's legacy RandomState as its peer does, which takes seeds below 2**32

    def check_random_state(self, random_state: object) -> None:
        """A seed this method can use, refused in one line before any work otherwise."""
        if self.legacy_seed:
            why = f" for method {self.name!r} (it draws controls with numpy's legacy RandomState, as its peer does)"
            check_random_state(random_state, below=2**32, why=why)
        else:
            check_random_state(random_state)

    def check_params(self, given: dict[str, Any]) -> dict[str, Any]:
        """The method's parameters with ``given`` applied, each checked by type and range before any work."""
        unknown = set(given) - set(self.params)
        if unknown:
            name = sorted(unknown)[0]
            raise InputError(
                f"Method {self.name!r} has no parameter {name!r}; its parameters are {sorted(self.params) or 'none'}."
                + closest(name, self.params)
            )
        for name, value in given.items():
            kind, bound = self.rules.get(name, (_kind_of(self.params[name]), None))
            problem = _param_problem(value, kind, bound)
            if problem:
                raise InputError(f"Method {self.name!r}: {name}={value!r} is not valid; {name} must be {problem}.")
        return {**self.params, **given}


def _kind_of(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    return "str" if isinstance(default, str) else "any"


def _param_problem(value: Any, kind: str, bound: Any) -> str | None:
    """What ``value`` should have been (None when it is fine). Booleans are never numbers here."""
    optional = kind.startswith("optional ")
    kind = kind.removeprefix("optional ")
    if optional and value is None:
        return None
    or_none = ", or None" if optional else ""
    if kind == "bool":
        return None if isinstance(value, (bool, np.bool_)) else "True or False" + or_none
    if kind in ("int", "number"):
        wanted = (
            ("a whole number" if kind == "int" else "a number")
            + (f" >= {bound}" if bound is not None else "")
            + or_none
        )
        numeric = isinstance(value, (int, np.integer)) or (kind == "number" and isinstance(value, (float, np.floating)))
        if isinstance(value, (bool, np.bool_)) or not numeric or not math.isfinite(value):
            return wanted
        return wanted if bound is not None and value < bound else None
    if kind == "str":
        choices = list(bound or ())
        return None if isinstance(value, str) and (not choices or value in choices) else f"one of {choices}{or_none}"
    return None


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry: ``score``, the CLI's ``-m``, ``ie.tl.methods()`` and the tests find it there."""
    if not method.name or not method.name.isidentifier():
        raise InputError(f"A method name must be a Python identifier, got {method.name!r}.")
    _REGISTRY[method.name] = method
    return method


def unregister(name: str) -> Method:
    """Remove a registered method (for plug-ins and tests); returns it."""
    return _REGISTRY.pop(get_method(name).name)


def method_names(*, null: str | None = None, chunked: bool | None = None, weighted: bool | None = None) -> list[str]:
    """Names of the registered methods, in registration order, optionally only those with a capability:
    ``null`` (a null kind they support), ``chunked`` (row-independent scores), ``weighted`` (use weights).

    The CLI's choices and help, the docs and the tests' parametrisation all read this list.

    Examples
    --------
    >>> method_names(null="analytic")
    ['mean', 'wmean', 'zmean']
    """
    return [
        name
        for name, m in _REGISTRY.items()
        if (null is None or null in m.nulls)
        and (chunked is None or m.chunked == chunked)
        and (weighted is None or m.weighted == weighted)
    ]


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise InputError(f"Unknown method {name!r}; choose from {sorted(_REGISTRY)}." + closest(str(name), _REGISTRY))
    return _REGISTRY[name]


def methods_table() -> pd.DataFrame:
    """The registry as a DataFrame: one row per method."""
    rows = [
        {
            "method": m.name,
            "description": m.description,
            "equals": m.equals,
            "parameters": ", ".join(f"{k}={v!r}" for k, v in m.params.items()) or "-",
            "signed_sets": m.signed,
            "uses_weights": m.weighted,
            "range": m.value_range,
            "reference": m.reference,
        }
        for m in _REGISTRY.values()
    ]
    return pd.DataFrame(rows).set_index("method")


def methods_rst() -> str:
    """The registry as a reStructuredText table, for the docs' methods page (built from the registry
    at documentation time, so a registered method is documented where it is offered)."""
    rows = []
    for m in _REGISTRY.values():
        params = ", ".join(f"``{k}={v!r}``" for k, v in m.params.items()) or "-"
        nulls = ", ".join(f"``{n}``" for n in m.nulls) or "-"
        scope = "per cell (chunked, backed, dask)" if m.chunked else "all samples at once"
        rows.append(
            (
                f"``{m.name}``",
                _rst_text(m.description),
                _rst_text(m.equals),
                params,
                nulls,
                scope,
                _rst_text(m.reference),
            )
        )
    header = ("method", "what it computes", "equals", "parameters", "nulls", "scores", "reference")
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 8 20 18 18 8 10 18", ""]
    for row in (header, *rows):
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines) + "\n"


def _rst_text(text: str) -> str:
    """Plain text safe in a reStructuredText cell: markup characters escaped."""
    for char in "\\|*`_":
        text = text.replace(char, "\\" + char)
    return text
