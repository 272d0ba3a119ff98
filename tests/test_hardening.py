"""Fuzz tests (hypothesis) of what stands between hostile input and the numba kernels: the sparse
structure check, the method-parameter check and the command line's NAME=VALUE parser."""

from __future__ import annotations

import math
from unittest import mock

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import immunescape as ie
from immunescape import _utils
from immunescape._chunks import check_compressed, chunk_bounds, iter_chunks
from immunescape._errors import InputError, UsageError
from immunescape.cli import _method_params
from immunescape.methods import get_method, method_names

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def compressed_arrays(draw):
    """CSR arrays, often valid, often damaged in one of the ways a file can be."""
    n_rows = draw(st.integers(0, 6))
    n_cols = draw(st.integers(1, 6))
    counts = draw(st.lists(st.integers(0, n_cols), min_size=n_rows, max_size=n_rows))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    nnz = int(indptr[-1])
    indices = np.asarray(draw(st.lists(st.integers(0, n_cols - 1), min_size=nnz, max_size=nnz)), np.int64)
    damage = draw(st.sampled_from(["none", "index", "indptr_value", "indptr_length", "indptr_start"]))
    if damage == "index" and nnz:
        indices[draw(st.integers(0, nnz - 1))] = draw(st.one_of(st.integers(-(2**40), -1), st.integers(n_cols, 2**40)))
    elif damage == "indptr_value" and n_rows:
        indptr[draw(st.integers(1, n_rows))] = draw(st.integers(-5, nnz + 5))
    elif damage == "indptr_length":
        indptr = indptr[:-1] if draw(st.booleans()) and len(indptr) > 1 else np.append(indptr, nnz)
    elif damage == "indptr_start":
        indptr = indptr + draw(st.integers(1, 3))
    # any integer type a file may hold, in either byte order (the check reads them as unsigned)
    dtype = np.dtype(draw(st.sampled_from(["<i8", "<i4", ">i4", ">i8", "<u4", ">u2", "<i2"])))
    info = np.iinfo(dtype)
    indices = np.clip(indices, info.min, info.max).astype(dtype)
    data = np.ones(indices.size, draw(st.sampled_from(["<f4", ">f4", ">f8"])))
    return data, indices, indptr, n_rows, n_cols


def _scipy_accepts(data, indices, indptr, n_rows, n_cols) -> bool:
    try:
        matrix = sp.csr_matrix((n_rows, n_cols), dtype=np.float32)
        matrix.data, matrix.indices, matrix.indptr = data, indices, indptr  # no checks on assignment
        matrix.check_format(full_check=True)
    except (ValueError, IndexError):
        return False
    return True


def _safe(data, indices, indptr, n_rows, n_cols) -> bool:
    """The plain-Python reading of "a kernel walking these arrays stays in bounds"."""
    if len(indptr) != n_rows + 1 or indptr[0] != 0:
        return False
    if any(indptr[r + 1] < indptr[r] for r in range(n_rows)) or indptr[-1] > min(len(indices), len(data)):
        return False
    return all(0 <= indices[j] < n_cols for j in range(indptr[-1]))


def _accepted(arrays) -> bool:
    try:
        check_compressed(arrays[2], arrays[1], arrays[0], arrays[3], arrays[4])
    except InputError:
        return False
    return True


def test_split_reduce_parts_follow_threads_and_max_parts():
    import numba

    values = np.arange(10)
    with mock.patch.object(_utils, "SPLIT_REDUCE_MIN", 1), mock.patch.object(numba, "get_num_threads", return_value=2):
        assert _utils.split_reduce(values, len) == [5, 5]  # one part per thread
        assert _utils.split_reduce(values, len, max_parts=1) == [10]  # the other core is busy elsewhere
        assert _utils.split_reduce(values[:1], len) == [1]  # never more parts than values
    assert _utils.split_reduce(values, len) == [10]  # below SPLIT_REDUCE_MIN: one call, no threads


@FUZZ
@given(compressed_arrays())
def test_structure_check_accepts_exactly_the_safe_arrays(arrays):
    ours = _accepted(arrays)
    with mock.patch.object(_utils, "SPLIT_REDUCE_MIN", 1):  # indices checked in parts, one per thread
        assert _accepted(arrays) == ours
    assert ours == _safe(*arrays)
    if not _scipy_accepts(*arrays):  # scipy's full check is weaker (it skips indptr when nothing is stored)
        assert not ours


@FUZZ
@given(compressed_arrays())
def test_kernels_only_ever_see_checked_arrays(arrays):
    """Whatever the arrays, scoring either refuses them with InputError or equals scoring the dense matrix."""
    data, indices, indptr, n_rows, n_cols = arrays
    if n_rows == 0:
        return
    matrix = sp.csr_matrix((n_rows, n_cols), dtype=np.float32)
    matrix.data, matrix.indices, matrix.indptr = data, indices, indptr
    sets = {"a": [f"g{i}" for i in range(min(2, n_cols))]}
    adata = ad.AnnData(matrix)
    adata.var_names = [f"g{i}" for i in range(n_cols)]
    try:
        scores = ie.tl.score(adata, sets, method="wmean", min_coverage=0, inplace=False)
    except InputError:
        assert not _safe(*arrays)
        return
    assert _safe(*arrays)
    dense = ad.AnnData(matrix.toarray())
    dense.var_names = adata.var_names
    np.testing.assert_allclose(
        scores.to_numpy(), ie.tl.score(dense, sets, method="wmean", min_coverage=0, inplace=False).to_numpy()
    )


@pytest.mark.parametrize("fmt", ["csr", "csc", "dense"])
def test_chunks_follow_the_one_chunk_plan(fmt):
    """Every input format is cut into the chunks chunk_bounds plans, covering every row once, and each
    chunk's CSR rows hold exactly its matrix rows."""
    matrix = sp.random(57, 9, density=0.3, format="csr", random_state=0, dtype=np.float32)
    given = matrix.toarray() if fmt == "dense" else matrix.asformat(fmt)
    chunks = list(iter_chunks(given, 10))
    assert (
        [(c.start, c.stop) for c in chunks] == chunk_bounds(57, 10) == [(s, min(s + 10, 57)) for s in range(0, 57, 10)]
    )
    for c in chunks:
        rows = sp.csr_matrix((c.data, c.indices, c.indptr), shape=(c.indptr.size - 1, 9))[c.r0 : c.r1]
        np.testing.assert_array_equal(rows.toarray(), matrix[c.start : c.stop].toarray())


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
)


@FUZZ
@given(st.sampled_from([m for m in method_names() if m != "gsva"]), st.data())
def test_parameter_check_refuses_or_returns_the_right_types(method_name, data):
    method = get_method(method_name)
    if not method.params:
        return
    name = data.draw(st.sampled_from(sorted(method.params)))
    value = data.draw(_ANY_VALUE)
    try:
        params = method.check_params({name: value})
    except InputError:
        return
    default = method.params[name]
    kind = method.rules.get(name, (None,))[0] or ""
    if isinstance(default, bool) or kind == "bool":
        assert isinstance(params[name], (bool, np.bool_))
    elif kind.endswith("int") or (isinstance(default, int) and not kind):
        assert (
            params[name] is None
            and kind.startswith("optional")
            or (isinstance(params[name], int) and not isinstance(params[name], bool))
        )
    elif kind.endswith("number") or isinstance(default, float):
        assert not isinstance(params[name], bool) and math.isfinite(params[name])


@FUZZ
@given(st.lists(st.text(max_size=20), max_size=4))
def test_command_line_parameters_parse_or_fail_in_one_line(pairs):
    try:
        params = _method_params(pairs)
    except UsageError as err:
        assert "\n" not in str(err)
        return
    assert set(params) == {p.partition("=")[0].strip() for p in pairs}


@pytest.mark.parametrize("value", ["abc", "true", "[1, 2]", "{a: 1}", "1e400", "-5", ".nan"])
def test_command_line_values_reach_the_parameter_check(value):
    """YAML turns text into values; whatever comes out, the method's check decides, in one line."""
    params = _method_params([f"max_rank={value}"])
    with pytest.raises(InputError, match="max_rank must be a whole number"):
        get_method("ucell").check_params(params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_value_check_fast_path_agrees_with_the_counting_kernel(dtype):
    # the fast path trusts a finite sum; every way a sum can mislead must fall back or agree
    from immunescape._engine.values import _summarize_values
    from immunescape._kernels import scan

    big = np.finfo(dtype).max / 2
    rng = np.random.default_rng(0)
    cases = {
        "clean": np.log1p(rng.poisson(2.0, 5000)).astype(dtype),
        "counts": rng.poisson(2.0, 5000).astype(dtype),
        "nan": np.array([1.0, np.nan, 2.0], dtype),
        "inf": np.array([1.0, np.inf, 2.0], dtype),
        "-inf": np.array([1.0, -np.inf, 2.0], dtype),
        "inf-inf": np.array([np.inf, -np.inf, 0.5], dtype),
        "overflowing sum": np.array([big, big, big, -1.0], dtype),
        "negative": np.array([-0.5, 0.0, 3.0], dtype),
    }
    for name, values in cases.items():
        fast = _summarize_values(values, 1000)
        n_bad, minimum, integer = scan.value_summary(values, 4, 1000)
        assert fast[:3] == (int(n_bad), float(minimum), bool(integer)), name
        # the sum: infinite exactly where finite values overflow it (gene means would too)
        overflow = name == "overflowing sum" and dtype == np.float64  # float32's sum is judged in float64
        assert np.isinf(fast[3]) == overflow and (overflow or n_bad or np.isclose(fast[3], values.sum(dtype=float)))
        with mock.patch.object(_utils, "SPLIT_REDUCE_MIN", 1):  # the fast path in parts, one per thread
            parts = _summarize_values(values, 1000)
            assert parts[:3] == fast[:3] and np.isinf(parts[3]) == np.isinf(fast[3]), name
            for at in range(min(values.size, 4)):  # whichever part holds the odd value
                assert _summarize_values(np.roll(values, at), 1000)[:2] == fast[:2], (name, at)
