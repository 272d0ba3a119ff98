"""One test per row of docs/bad_inputs.md (the test id is the row id)."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import immunescape as ie
from immunescape._errors import InputError
from immunescape.cli import main

from ._synthetic import synthetic

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def _data():
    adata, sets = synthetic(21, n_cells=60, n_genes=80)
    return adata, {"s": sets["s2"]}


def _h5ad(tmp_path) -> Path:
    adata, _ = _data()
    path = tmp_path / "in.h5ad"
    adata.write_h5ad(path)
    return path


@case
def missing_file(tmp_path, capsys):
    assert main(["score", str(tmp_path / "nope.h5ad"), "-o", str(tmp_path / "o.h5ad")]) == 1
    assert "does not exist" in capsys.readouterr().err


@case
def not_h5ad(tmp_path, capsys):
    (tmp_path / "x.h5ad").write_text("gene,cell\n")
    assert main(["score", str(tmp_path / "x.h5ad"), "-o", str(tmp_path / "o.h5ad")]) == 1
    assert "not an HDF5" in capsys.readouterr().err


@case
def truncated_h5ad(tmp_path, capsys):
    path = _h5ad(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert main(["score", str(path), "-o", str(tmp_path / "o.h5ad")]) == 1
    assert "truncated or corrupted" in capsys.readouterr().err or "not an HDF5" in capsys.readouterr().err


@case
def corrupted_h5ad(tmp_path, capsys):
    path = _h5ad(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[:64] = b"\x00" * 64  # the HDF5 signature and superblock
    path.write_bytes(bytes(raw))
    assert main(["score", str(path), "-o", str(tmp_path / "o.h5ad")]) == 1
    err = capsys.readouterr().err
    assert "not an HDF5" in err or "corrupted" in err
    assert not (tmp_path / "o.h5ad").exists()


@case
def folder_input(tmp_path):
    with pytest.raises(ie.ImmunescapeIOError, match="is a folder"):
        ie.io.read_h5ad(tmp_path)


@case
def nan_values(tmp_path):
    adata, sets = _data()
    adata.X.data[0] = np.nan
    with pytest.raises(ie.InputError, match="NaN or infinite.*nan_to_num"):
        ie.tl.score(adata, sets, min_coverage=0)
    assert "immunescape" not in adata.obsm
    for matrix in (adata.X, adata.X.toarray()):  # mean's gene means are taken while the values are checked
        with pytest.raises(ie.InputError, match="NaN or infinite.*nan_to_num"):
            ie.tl.score(ad.AnnData(matrix, var=adata.var), sets, method="mean", min_coverage=0)


@case
def inf_values(tmp_path):
    adata, sets = _data()
    adata.X.data[0] = np.inf
    with pytest.raises(ie.InputError, match="NaN or infinite"):
        ie.tl.score(adata, sets, method="wmean", min_coverage=0)


@case
def negative_values(tmp_path):
    adata, sets = _data()
    adata.X = adata.X.toarray() - 0.5
    with pytest.warns(ie.DataWarning, match="negative values.*log-normalised"):
        ie.tl.score(adata, sets, min_coverage=0)


@case
def integer_counts(tmp_path):
    adata, sets = _data()
    adata.X = sp.csr_matrix(np.round(np.expm1(adata.X.toarray())))
    with pytest.warns(ie.DataWarning, match="normalize_total.*log1p"):
        ie.tl.score(adata, sets, method="mean", min_coverage=0)


@case
def non_numeric(tmp_path):
    adata = ad.AnnData(np.array([["a", "b"], ["c", "d"]], dtype=object), var=pd.DataFrame(index=["G1", "G2"]))
    with pytest.raises(ie.InputError, match="must be real numbers"):
        ie.tl.score(adata, {"s": ["G1", "G2"]}, min_coverage=0)


@case
def duplicate_var_names(tmp_path):
    adata, sets = _data()
    names = list(adata.var_names)
    names[1] = names[0]
    adata.var_names = names
    with pytest.warns(ie.CoverageWarning, match="var_names_make_unique"):
        ie.tl.score(adata, {"s": [names[0], *sets["s"]]}, min_coverage=0)


@case
def duplicate_obs_names(tmp_path):
    adata, sets = _data()
    adata.obs_names = ["same"] * adata.n_obs
    with pytest.warns(ie.DataWarning, match="obs_names_make_unique"):
        table = ie.tl.score(adata, sets, min_coverage=0, inplace=False)
    assert len(table) == adata.n_obs


@case
def duplicate_entries(tmp_path):
    X = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([0, 0, 1]), np.array([0, 3])), shape=(1, 3))
    adata = ad.AnnData(X, var=pd.DataFrame(index=["A", "B", "C"]))
    with pytest.raises(ie.InputError, match="stores a gene twice"):
        ie.tl.score(adata, {"s": ["A", "B"]}, method="ucell", min_coverage=0)


@case
def zero_cells(tmp_path):
    adata, sets = _data()
    with pytest.raises(ie.InputError, match="no cells"):
        ie.tl.score(adata[:0].copy(), sets, min_coverage=0)


@case
def zero_genes(tmp_path):
    adata, sets = _data()
    with pytest.raises(ie.InputError, match="no genes"):
        ie.tl.score(adata[:, :0].copy(), sets, min_coverage=0)


@case
def all_zero_cells(tmp_path):
    adata, sets = _data()  # the first five cells of the synthetic data are all zero
    for method in ("ucell", "aucell", "zmean"):
        table = ie.tl.score(adata, sets, method=method, min_coverage=0, inplace=False)
        assert (table.iloc[:5].to_numpy() == 0).all(), method


@case
def all_zero_genes(tmp_path):
    adata, sets = _data()  # genes G0-G2 are zero everywhere
    table = ie.tl.score(adata, {"s": ["G0", "G1", *sets["s"]]}, method="aucell", min_coverage=0, inplace=False)
    assert np.isfinite(table.to_numpy()).all()


@case
def no_gene_found(tmp_path):
    adata, _ = _data()
    with pytest.raises(ie.GeneResolutionError, match=r"nothing: 0 of 2 genes found.*NOPE1, NOPE2"):
        ie.tl.score(adata, {"nothing": ["NOPE1", "NOPE2"]})


@case
def below_min_coverage(tmp_path):
    adata, sets = _data()
    thin = {"thin": sets["s"][:2] + ["NOPE1", "NOPE2", "NOPE3"], **sets}
    with pytest.raises(ie.GeneResolutionError, match="thin: 2 of 5.*missing: NOPE1, NOPE2, NOPE3"):
        ie.tl.score(adata, thin, low_coverage="raise")
    with pytest.raises(ie.GeneResolutionError, match="thin: 2 of 5"):  # one signature given alone is named
        ie.tl.score(adata, ie.signatures.Signature("thin", tuple(thin["thin"])))
    with pytest.warns(ie.CoverageWarning, match=r"1 of 2 signatures .* left out: thin \(2/5\)"):
        table = ie.tl.score(adata, thin, inplace=False)  # a set of signatures: "auto" drops it
    assert list(table.columns) == ["s"]


@case
def malformed_yaml(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("a: [CD8A,\nb: 1\n")
    with pytest.raises(ie.SignatureError, match="line"):
        ie.signatures.load(path)


@case
def malformed_gmt(tmp_path):
    path = tmp_path / "s.gmt"
    path.write_text("set1\tdesc\tA\tB\nno tabs here\n")
    with pytest.raises(ie.SignatureError, match="line 2"):
        ie.signatures.load(path)


@case
def unknown_signature(tmp_path):
    with pytest.raises(ie.SignatureError, match="Did you mean 'cytolytic_activity_rooney2015'"):
        ie.signatures.load("cytolytic_activity_roony2015")


@case
def unknown_collection(tmp_path):
    with pytest.raises(ie.SignatureError, match="immune_escape"):
        ie.signatures.collection("immune_escapes")


@case
def unknown_method(tmp_path):
    adata, sets = _data()
    with pytest.raises(ie.InputError, match="Did you mean 'singscore'"):
        ie.tl.score(adata, sets, method="singscor", min_coverage=0)


@case
def unknown_parameter(tmp_path):
    adata, sets = _data()
    with pytest.raises(ie.InputError, match="Did you mean 'ctrl_size'"):
        ie.tl.score(adata, sets, method="mean", ctrl_sise=10, min_coverage=0)


@case
def bad_max_rank(tmp_path):
    adata, sets = _data()
    with pytest.raises(ie.InputError, match="max_rank must be a whole number >= 1"):
        ie.tl.score(adata, sets, max_rank=-5, min_coverage=0)


@case
def bad_chunk_size(tmp_path):
    adata, sets = _data()
    with pytest.raises(ie.InputError, match="chunk_size must be a positive"):
        ie.tl.score(adata, sets, chunk_size=0, min_coverage=0)


@case
def bad_n_jobs(tmp_path):
    adata, sets = _data()
    with pytest.raises(ie.InputError, match="n_jobs must be"):
        ie.tl.score(adata, sets, n_jobs=0, min_coverage=0)


@case
def bad_signature_content(tmp_path):
    with pytest.raises(ie.SignatureError, match="both up and down"):
        ie.signatures.load({"x": {"up": ["A", "B"], "down": ["B"]}})
    with pytest.raises(ie.SignatureError, match="finite"):
        ie.Signature("w", ("A",), weights={"A": float("nan")})
    # shapes and types a hand-written dict or table can have: each a SignatureError saying what is wrong
    # (they raised TypeError/ValueError from inside the parser, or hid the reason behind a generic one)
    with pytest.raises(ie.SignatureError, match="genes must be a list of gene names, got 5"):
        ie.signatures.load({"x": {"up": ["A"], "down": 5}})
    with pytest.raises(ie.SignatureError, match="weights must be numbers"):
        ie.signatures.load(pd.DataFrame({"source": ["x", "x"], "target": ["A", "B"], "weight": ["high", "low"]}))
    with pytest.raises(ie.SignatureError, match="weights must be numbers"):
        ie.Signature("w", ("A",), weights={"A": "high"})
    with pytest.raises(ie.SignatureError, match="finite numbers"):
        ie.signatures.load({"x": {"A": float("inf"), "B": 1.0}})
    with pytest.raises(ie.SignatureError, match="'x' has no genes"):
        ie.signatures.load({"x": {"A": 0.0, "B": 0.0}})  # every weight zero: no gene left
    with pytest.raises(ie.SignatureError, match="as gene -> weight"):
        ie.signatures.load({"x": {"A": "high"}})


@case
def missing_layer(tmp_path):
    adata, sets = _data()
    with pytest.raises(ie.InputError, match="Layer 'counts' not found"):
        ie.tl.score(adata, sets, layer="counts", min_coverage=0)


@case
def use_raw_without_raw(tmp_path):
    adata, sets = _data()
    with pytest.raises(ie.InputError, match="adata.raw is None"):
        ie.tl.score(adata, sets, use_raw=True, min_coverage=0)


@case
def missing_gene_symbols(tmp_path):
    adata, sets = _data()
    with pytest.raises(ie.InputError, match="not a column of adata.var"):
        ie.tl.score(adata, sets, gene_symbols="symbol", min_coverage=0)


@case
def not_anndata(tmp_path):
    with pytest.raises(ie.InputError, match="anndata.AnnData"):
        ie.tl.score(np.ones((3, 3)), {"s": ["A"]})


@case
def mouse_data(tmp_path):
    genes = ["Cd8a", "Gzma", "Gzmb", "Prf1", "Nkg7", "Actb", "Gapdh", "Cd3e", "Cd4", "Foxp3"]
    adata = ad.AnnData(np.random.default_rng(0).random((5, len(genes))), var=pd.DataFrame(index=genes))
    cov = ie.pp.coverage(adata, "cytolytic_activity_rooney2015")
    assert cov.loc["cytolytic_activity_rooney2015", "n_ortholog"] == 2
    assert ie.tl.score(adata, "cytolytic_activity_rooney2015", inplace=False).shape == (5, 1)


@case
def ensembl_versions(tmp_path):
    adata = ad.AnnData(
        np.random.default_rng(0).random((4, 2)), var=pd.DataFrame(index=["ENSG00000145649.8", "ENSG00000180644.7"])
    )
    cov = ie.pp.coverage(adata, "cytolytic_activity_rooney2015")  # GZMA, PRF1
    assert cov.loc["cytolytic_activity_rooney2015", "n_ensembl"] == 2


@pytest.fixture(scope="module")
def cells():
    cells = ie.datasets.simulate_tumor(n_samples=4, cells_per_sample=120, seed=8)
    ie.tl.score(cells, "immune_escape")
    return cells


@case
def missing_sample_key(tmp_path, cells):
    with pytest.raises(ie.InputError, match="Did you mean 'sample'"):
        ie.tl.aggregate(cells, "samples", celltype_key="cell_type")


@case
def too_few_cells(tmp_path, cells):
    with (
        pytest.warns(ie.DataWarning, match="fewer than min_cells=121"),
        pytest.raises(ie.InputError, match="No sample"),
    ):
        ie.tl.aggregate(cells, "sample", celltype_key="cell_type", min_cells=121)


@case
def absent_compartment(tmp_path, cells):
    no_fibroblasts = cells[cells.obs["compartment"] != "fibroblast"].copy()
    with pytest.warns(ie.DataWarning, match="fibroblast"):
        out = ie.tl.aggregate(no_fibroblasts, "sample", celltype_key="cell_type")
    assert out.obs["frac_fibroblast"].eq(0).all() and np.isnan(out[:, "tgfb_pan_f_tbrs_mariathasan2018"].X).all()


@case
def output_folder_missing(tmp_path, capsys):
    path = _h5ad(tmp_path)
    assert (
        main(["-q", "score", str(path), "-o", str(tmp_path / "nowhere" / "o.h5ad"), "-s", str(_sets_file(tmp_path))])
        == 1
    )
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()


@case
def output_parent_is_file(tmp_path, capsys):
    path = _h5ad(tmp_path)
    (tmp_path / "afile").write_text("x")
    assert (
        main(["-q", "score", str(path), "-o", str(tmp_path / "afile" / "o.h5ad"), "-s", str(_sets_file(tmp_path))]) == 1
    )
    assert "is a file" in capsys.readouterr().err


@case
def output_exists(tmp_path):
    path = _h5ad(tmp_path)
    out = tmp_path / "o.csv"
    out.write_text("keep")
    assert main(["-q", "score", str(path), "--scores-only", str(out), "-s", str(_sets_file(tmp_path))]) == 1
    assert out.read_text() == "keep"


@case
def write_failure(tmp_path, monkeypatch):
    path = _h5ad(tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", fail)
    assert main(["-q", "score", str(path), "-o", str(tmp_path / "o.h5ad"), "-s", str(_sets_file(tmp_path))]) == 1
    assert not (tmp_path / "o.h5ad").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def _sets_file(tmp_path) -> Path:
    _, sets = _data()
    path = tmp_path / "sets.yaml"
    ie.signatures.to_yaml(sets, path)
    return path


@case
def interrupted(tmp_path, monkeypatch):
    """An interrupt swallowed inside library code (it happens in h5py cleanup) still ends the run with no output.
    Real SIGINT/SIGTERM mid-write: tests/test_cli_score.py::test_killed_run_leaves_no_output."""
    from immunescape.io import INTERRUPTED

    path = _h5ad(tmp_path)
    original = ad.AnnData.write_h5ad

    def write_then_swallowed_interrupt(self, *args, **kwargs):
        original(self, *args, **kwargs)
        INTERRUPTED.set()  # as the signal handler would, its KeyboardInterrupt lost

    monkeypatch.setattr(ad.AnnData, "write_h5ad", write_then_swallowed_interrupt)
    out = tmp_path / "o.h5ad"
    try:
        assert main(["-q", "score", str(path), "-o", str(out), "-s", str(_sets_file(tmp_path))]) == 130
    finally:
        INTERRUPTED.clear()
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@case
def bad_cli_param(tmp_path):
    path = _h5ad(tmp_path)
    assert main(["score", str(path), "-o", str(tmp_path / "o.h5ad"), "-p", "oops"]) == 2


@case
def no_destination(tmp_path):
    path = _h5ad(tmp_path)
    assert main(["score", str(path)]) == 2


@case
def null_unknown():
    adata, sigs = _data()
    with pytest.raises(InputError, match="null must be None or one of"):
        ie.tl.score(adata, sigs, null="permuted")


@case
def null_too_few_sets():
    adata, sigs = _data()
    with pytest.raises(InputError, match="n_null must be an integer >= 2"):
        ie.tl.score(adata, sigs, null="matched", n_null=1)
    with pytest.raises(InputError, match="null_bins must be an integer >= 2"):
        ie.tl.score(adata, sigs, null="matched", null_bins=1)


@case
def null_analytic_rank():
    adata, sigs = _data()
    with pytest.raises(InputError, match="rank methods need null='matched'"):
        ie.tl.score(adata, sigs, method="ucell", null="analytic")


@case
def null_signature_fills_the_pool():
    adata, _ = _data()  # 80 genes: crowded bins merge, until one bin of all 80 is still more than half the signature's
    with pytest.raises(InputError, match="holds 67 of the 80 genes.*score it without a null"):
        ie.tl.score(adata, {"big": list(adata.var_names[3:70])}, null="matched", null_bins=20)
    res = ie.tl.score(adata, {"half": list(adata.var_names[3:40])}, null="matched", null_bins=20, inplace=False)
    assert np.isfinite(res["pval"].to_numpy()).all()  # 37 of 80: its bins merged, not refused


@case
def compare_one_group():
    frame = pd.DataFrame({"g": ["a"] * 4 + ["b"] * 4, "v": range(8), "note": [f"n{i}" for i in range(8)]})
    with pytest.raises(InputError, match="at least two groups"):
        ie.tl.compare(frame, "g", groups=["a"])
    with pytest.raises(InputError, match="Did you mean"):
        ie.tl.compare(frame, "gg")
    with pytest.raises(InputError, match="not one of the groups"):
        ie.tl.compare(frame, "g", reference="c")
    with pytest.raises(InputError, match="neither numeric"):
        ie.tl.compare(frame, "g", features="note")
    with pytest.raises(InputError, match="random_state must be"):  # was numpy's "expected non-negative integer"
        ie.tl.compare(frame, "g", features="v", test="permutation", random_state=-1)
    for n in (True, 99.0):
        with pytest.raises(InputError, match="n_permutations must be an integer"):
            ie.tl.compare(frame, "g", features="v", test="permutation", n_permutations=n)
    # scipy keeps every permuted statistic: 10**9 reached 6.8 GiB with no answer yet
    with pytest.raises(InputError, match="GiB of permuted statistics"):
        ie.tl.compare(frame, "g", features="v", test="permutation", n_permutations=10**12)


def _doc_ids() -> list[str]:
    return re.findall(r"^\| (\w+) \|", DOC.read_text(), flags=re.M)[1:]  # skip the header row


@case
def classify_bad_threshold(tmp_path, capsys):
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=60, seed=1)
    bulk = ie.pp.pseudobulk(cells, "sample")
    for bad in ("abc", True, float("nan")):
        with pytest.raises(InputError, match="checkpoint_high"):
            ie.tl.classify(bulk, thresholds={"checkpoint_high": bad})
    with pytest.raises(InputError, match="Unknown threshold"):
        ie.tl.classify(bulk, thresholds={"nonsense": 1})
    path = tmp_path / "bulk.h5ad"
    bulk.write_h5ad(path)
    out = tmp_path / "calls.csv"
    assert main(["-q", "classify", str(path), "-o", str(out), "--threshold", "checkpoint_high=abc"]) == 1
    err = capsys.readouterr().err
    assert "checkpoint_high" in err and "Traceback" not in err and not out.exists()


@case
def classify_feature_table():
    # a table of sample features given as a DataFrame: what a CSV read on a bad day holds
    cells = ie.datasets.simulate_tumor(n_samples=4, cells_per_sample=60, seed=1)
    ie.tl.score(cells, "immune_escape,bagaev2021")
    samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    table = pd.DataFrame(samples.X, index=samples.obs_names, columns=samples.var_names)
    clean = ie.tl.classify(table)
    text = table.astype(object)
    text.iloc[0, 0] = "0,42"  # a decimal comma: the value was silently missing before
    with pytest.warns(ie.DataWarning, match=r"1 value\(s\) of the feature table are not numbers \(e.g. '0,42'") as seen:
        ie.tl.classify(text)
    assert len([w for w in seen if "not numbers" in str(w.message)]) == 1  # once per call, not per use
    infinite = table.copy()
    infinite.iloc[:, 1] = np.inf
    with pytest.warns(ie.DataWarning, match="4 value\\(s\\) of the feature table are infinite"):
        calls = ie.tl.classify(infinite)
    assert calls.index.equals(clean.index)
    twice = table.copy()
    twice.index = ["a", "a", "b", "c"]
    with pytest.warns(ie.DataWarning, match="sample names are not unique"):
        ie.tl.classify(twice)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ie.DataWarning)  # a clean table of numbers passes silently
        warnings.filterwarnings("ignore", message=".*(reference|cohort|model).*")
        ie.tl.classify(table)


@case
def classify_bad_reference(tmp_path, capsys):
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=60, seed=1)
    bulk = ie.pp.pseudobulk(cells, "sample")
    (tmp_path / "ref.json").write_text('{"not": "a profile"}')
    with pytest.raises(InputError, match="not a reference profile"):
        ie.tl.classify(bulk, reference=tmp_path / "ref.json")
    with pytest.raises(InputError, match="reference must be"):
        ie.tl.classify(bulk, reference=3.5)
    path = tmp_path / "bulk.h5ad"
    bulk.write_h5ad(path)
    assert (
        main(["-q", "classify", str(path), "-o", str(tmp_path / "c.csv"), "--reference", str(tmp_path / "ref.json")])
        == 1
    )
    err = capsys.readouterr().err
    assert "not a reference profile" in err and "Traceback" not in err


@case
def classify_no_model_genes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.poisson(3, (12, 40)).astype(float),
        index=[f"s{i}" for i in range(12)],
        columns=[f"ENSX{i:06d}" for i in range(40)],
    )
    bulk = ad.AnnData(frame.to_numpy(), obs=pd.DataFrame(index=frame.index), var=pd.DataFrame(index=frame.columns))
    bulk.obsm["immunescape"] = pd.DataFrame(
        rng.normal(size=(12, 2)), index=frame.index, columns=["apm_mariathasan2018", "immune_checkpoints_curated"]
    )
    with pytest.warns(ie.DataWarning, match="gene_symbols="):
        calls = ie.tl.classify(bulk, inplace=False)
    assert set(calls["immune_context"]) == {"indeterminate"} and calls.attrs["reference"] == "this cohort"


@case
def classify_single_cells(tmp_path, capsys):
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=40, seed=4)
    with pytest.raises(ie.InputError, match="look like single cells"):
        ie.tl.classify(cells)
    path = tmp_path / "cells.h5ad"
    cells.write_h5ad(path)
    assert main(["report", str(path), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "--sample-key" in err and "--rows-are-samples" in err and "added obsm" not in err
    assert not (tmp_path / "r.html").exists()


@case
def cli_wrong_key(tmp_path, capsys):
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=40, seed=4)
    path = tmp_path / "cells.h5ad"
    cells.write_h5ad(path)
    before = path.read_bytes()
    assert main(["classify", str(path), "-o", str(tmp_path / "c.csv"), "--sample-key", "Sample"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean 'sample'" in err and "added obsm" not in err and err.count("\n") == 1
    assert path.read_bytes() == before and not (tmp_path / "c.csv").exists()


@case
def file_named_like_a_collection(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "immune_escape").write_text("")
    assert [s.name for s in ie.signatures.load("immune_escape")] == [
        s.name for s in ie.signatures.collection("immune_escape")
    ]


def _damage(matrix: sp.csr_matrix, how: str) -> sp.csr_matrix:
    m = matrix.copy()
    if how == "index_too_large":
        m.indices[5] = m.shape[1] + 7
    elif how == "index_negative":
        m.indices[5] = -3
    elif how == "indptr_decreases":
        m.indptr[3] = m.indptr[5] + 10
    elif how == "indptr_past_values":
        m.indptr[-1] += 1000
    return m


@case
def damaged_sparse_matrix(tmp_path, capsys):
    import dask.array as da

    adata, sigs = _data()
    for how in ("index_too_large", "index_negative", "indptr_decreases", "indptr_past_values"):
        bad = adata.copy()
        bad.X = _damage(adata.X.tocsr(), how)
        for method in ("ucell", "mean", "wmean", "aucell"):
            with pytest.raises(InputError, match="sparse matrix"):
                ie.tl.score(bad, sigs, method=method)
        with pytest.raises(InputError, match="sparse matrix"):
            ie.pp.pseudobulk(_with_samples(bad), "sample", layer=None)
        # each dask block damaged after slicing (scipy's own row slicing silently drops bad column indices)
        if how != "indptr_past_values":  # scipy itself refuses to carry such a block through dask
            dask_x = da.from_array(adata.X.tocsr(), chunks=(25, bad.n_vars), asarray=False).map_blocks(
                _damage, how, dtype=np.float32, meta=sp.csr_matrix((0, bad.n_vars), dtype=np.float32)
            )
            with pytest.raises(InputError, match="sparse matrix"):
                ie.tl.score(ad.AnnData(dask_x, obs=bad.obs, var=bad.var), sigs)
        path = tmp_path / f"{how}.h5ad"
        ad.AnnData(bad.X, obs=bad.obs, var=bad.var).write_h5ad(path)
        for backed in ([], ["--backed"]):
            out = tmp_path / "o.h5ad"
            assert main(["-q", "score", str(path), "-o", str(out), *backed, "-s", str(_sets_file(tmp_path))]) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "damaged" in err, err
            assert not out.exists()
    # a CSC matrix whose row index is out of range
    good = adata.X.tocsc()
    good.indices[2] = adata.n_obs + 5
    with pytest.raises(InputError, match="row index"):
        ie.tl.score(ad.AnnData(good, obs=adata.obs, var=adata.var), sigs)
    # 4 KiB of garbage inside the stored column indices
    import h5py

    path = tmp_path / "garbage.h5ad"
    adata.write_h5ad(path)
    with h5py.File(path) as f:
        ds = f["X/indices"]
        offset = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.random.default_rng(0).integers(2**20, 2**30, 1024, dtype=np.int32).tobytes())
    for backed in ([], ["--backed"]):
        assert (
            main(["-q", "score", str(path), "-o", str(tmp_path / "g.h5ad"), *backed, "-s", str(_sets_file(tmp_path))])
            == 1
        )
        assert "damaged" in capsys.readouterr().err


def _with_samples(adata):
    adata.obs["sample"] = np.where(np.arange(adata.n_obs) % 2, "a", "b")
    return adata


@case
def unusual_dtypes(tmp_path):
    adata, sigs = _data()
    reference = ie.tl.score(adata, sigs, inplace=False)
    half = ad.AnnData(adata.X.toarray().astype(np.float16), obs=adata.obs, var=adata.var)
    expected = ie.tl.score(ad.AnnData(half.X.astype(np.float32), obs=adata.obs, var=adata.var), sigs, inplace=False)
    pd.testing.assert_frame_equal(ie.tl.score(half, sigs, inplace=False), expected)
    path = tmp_path / "half.h5ad"
    half.write_h5ad(path)
    pd.testing.assert_frame_equal(ie.tl.score(ad.read_h5ad(path, backed="r"), sigs, inplace=False), expected)
    assert np.abs(expected.to_numpy() - reference.to_numpy()).max() < 0.05
    for values in (adata.X.toarray().astype(np.complex128), adata.X.toarray().astype(str)):
        with pytest.raises(InputError, match="real numbers"):
            ie.tl.score(ad.AnnData(values, obs=adata.obs, var=adata.var), sigs)


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@case
def output_is_an_input(tmp_path, capsys):
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=40, seed=2)
    path = tmp_path / "in.h5ad"
    cells.write_h5ad(path)
    (tmp_path / "link.h5ad").symlink_to(path)
    import os

    os.link(path, tmp_path / "hard.h5ad")
    before = _sha(path)
    for out in ("in.h5ad", "link.h5ad", "hard.h5ad"):
        for command in (
            ["classify", str(path), "--sample-key", "sample"],
            ["score", str(path), "-s", "cytolytic_activity_rooney2015"],
            ["enrich", str(path), "--groupby", "sample", "-s", "cytolytic_activity_rooney2015"],
            ["drivers", str(path), "--sample-key", "sample"],
        ):
            assert main(["-q", *command, "-o", str(tmp_path / out), "--force"]) == 1
            assert "is the input" in capsys.readouterr().err
    assert main(["-q", "report", str(path), "--sample-key", "sample", "-o", str(path), "--force"]) == 2
    sets = _sets_file(tmp_path)
    assert (
        main(["-q", "score", str(path), "-s", str(sets), "--scores-only", str(sets), "--force"]) == 1
    )  # the signature file
    assert (
        main(
            [
                "-q",
                "score",
                str(path),
                "--scores-only",
                str(tmp_path / "x.csv"),
                "-o",
                str(tmp_path / "x.csv"),
                "--force",
            ]
        )
        == 2
    )
    assert (
        main(["-q", "score", str(path), "--scores-only", str(tmp_path / "x.csv"), "-o", str(tmp_path / "./x.csv")]) == 2
    )
    capsys.readouterr()
    assert _sha(path) == before and not (tmp_path / "x.csv").exists()


@case
def output_path_unusable(tmp_path, capsys):
    path = _h5ad(tmp_path)
    (tmp_path / "folder.h5ad").mkdir()
    sets = str(_sets_file(tmp_path))
    assert main(["-q", "score", str(path), "-s", sets, "-o", str(tmp_path / "folder.h5ad"), "--force"]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert (tmp_path / "folder.h5ad").is_dir()
    assert main(["-q", "score", str(path), "-s", sets, "-o", str(tmp_path / ("a" * 300 + ".h5ad"))]) == 1
    assert "longer than this file system allows" in capsys.readouterr().err
    long_ok = tmp_path / ("b" * 245 + ".h5ad")  # 250 characters: allowed, and the temporary name must fit too
    assert main(["-q", "score", str(path), "-s", sets, "-o", str(long_ok)]) == 0
    assert long_ok.exists()
    assert main(["-q", "score", str(path), "-s", sets, "-o", str(tmp_path / "missing" / "o.h5ad")]) == 1
    assert "does not exist" in capsys.readouterr().err


@case
def inplace_update(tmp_path, capsys):
    import os
    import stat

    from immunescape.io import exclusive_update

    path = _h5ad(tmp_path)
    os.chmod(path, 0o600)
    link = tmp_path / "link.h5ad"
    link.symlink_to(path)
    sets = str(_sets_file(tmp_path))
    assert main(["-q", "score", str(link), "--inplace", "-s", sets, "--key-added", "first"]) == 0
    assert link.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600
    with exclusive_update(path):  # another run holds the file
        assert main(["-q", "score", str(path), "--inplace", "-s", sets, "--key-added", "second"]) == 1
        assert "Another immunescape run is updating" in capsys.readouterr().err
    assert main(["-q", "score", str(path), "--inplace", "-s", sets, "--key-added", "second"]) == 0
    assert {"first", "second"} <= set(ad.read_h5ad(path).obsm)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ie-")] == []
    os.chmod(path, 0o400)
    before = _sha(path)
    assert main(["-q", "score", str(path), "--inplace", "-s", sets, "--key-added", "third"]) == 1
    assert "read-only" in capsys.readouterr().err and _sha(path) == before


@case
def outputs_together(tmp_path, monkeypatch):
    from immunescape import io

    path = _h5ad(tmp_path)
    table, out = tmp_path / "t.csv", tmp_path / "o.h5ad"
    original = io.write_h5ad

    def fail_second(*args, **kwargs):
        raise io.ImmunescapeIOError("simulated failure of the second output")

    monkeypatch.setattr(io, "write_h5ad", fail_second)
    assert (
        main(["-q", "score", str(path), "-s", str(_sets_file(tmp_path)), "--scores-only", str(table), "-o", str(out)])
        == 1
    )
    assert not table.exists() and not out.exists()
    monkeypatch.setattr(io, "write_h5ad", original)
    # a failed rename puts back what was there before
    (tmp_path / "a.txt").write_text("old a")
    import os

    real_replace = os.replace

    def replace_fails_on_b(src, dst):
        if str(dst).endswith("b.txt"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", replace_fails_on_b)
    with pytest.raises(io.ImmunescapeIOError, match="nothing was written"), io.all_or_nothing():
        io.atomic_write_text(tmp_path / "a.txt", "new a")
        io.atomic_write_text(tmp_path / "b.txt", "new b")
    monkeypatch.setattr(io.os, "replace", real_replace)
    assert (tmp_path / "a.txt").read_text() == "old a" and not (tmp_path / "b.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ie-")) == []


@case
def write_fails(tmp_path):
    import resource
    import subprocess
    import sys

    path = _h5ad(tmp_path)
    size = path.stat().st_size

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    for extra in ([], ["--backed"]):
        out = tmp_path / "o.h5ad"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "immunescape.cli",
                "-q",
                "score",
                str(path),
                "-o",
                str(out),
                *extra,
                "-s",
                str(_sets_file(tmp_path)),
            ],
            capture_output=True,
            text=True,
            preexec_fn=limit,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert proc.stderr.count("\n") == 1 and "nothing was written" in proc.stderr and "Traceback" not in proc.stderr
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".ie-")]
    from immunescape.io import check_free_space

    with pytest.raises(ie.ImmunescapeIOError, match="free some space"):
        check_free_space(tmp_path, 2**62, "The test output")


@case
def bad_method_param_types(tmp_path):
    adata, sigs = _data()
    for method, params in (
        ("mean", {"ctrl_size": "abc"}),
        ("mean", {"ctrl_size": True}),
        ("ucell", {"max_rank": True}),
        ("ucell", {"w_neg": "abc"}),
        ("ucell", {"w_neg": float("nan")}),
        ("aucell", {"n_up": "abc"}),
        ("ssgsea", {"alpha": "abc"}),
        ("ssgsea", {"alpha": -1}),
        ("singscore", {"center": "yes"}),
        ("ucell", {"missing_genes": 3}),
    ):
        with pytest.raises(InputError, match="is not valid"):
            ie.tl.score(adata, sigs, method=method, **params)
    with pytest.raises(InputError, match="random_state"):
        ie.tl.score(adata, sigs, random_state=-1)
    # scanpy's controls come from numpy's legacy RandomState, which took 2**32 with a ValueError from numpy
    with pytest.raises(InputError, match="below 4,294,967,296 for method 'mean'"):
        ie.tl.score(adata, sigs, method="mean", random_state=2**32)
    from immunescape.methods import get_method

    get_method("mean").check_random_state(np.uint32(2**32 - 1))  # the largest legacy seed
    get_method("ucell").check_random_state(2**70)  # no legacy generator (the nulls seed a SeedSequence)
    path = _h5ad(tmp_path)
    for argv in (["-p", "ctrl_size=abc", "-m", "mean"], ["-p", "max_rank=true"]):
        assert main(["-q", "score", str(path), "-o", str(tmp_path / "o.h5ad"), *argv]) == 1
    for argv in (
        ["--seed", "-1"],
        ["--n-jobs", "0"],
        ["--min-coverage", "2"],
        ["--chunk-size", "x"],
        ["--n-null", "1"],
    ):
        assert main(["-q", "score", str(path), "-o", str(tmp_path / "o.h5ad"), *argv]) == 2
    assert (
        main(["-q", "enrich", str(path), "--groupby", "group", "-o", str(tmp_path / "e.csv"), "--permutations", "0"])
        == 2
    )
    assert not (tmp_path / "o.h5ad").exists()


@case
def bad_key_added(tmp_path):
    adata, sigs = _data()
    for key in ("", "a/b", ".", 3):
        with pytest.raises(InputError, match="key_added"):
            ie.tl.score(adata, sigs, key_added=key)
    assert main(["-q", "score", str(_h5ad(tmp_path)), "-o", str(tmp_path / "o.h5ad"), "--key-added", "a/b"]) == 2


@case
def enrich_one_group():
    adata, sigs = _data()
    adata.obs["one"] = "x"
    adata.obs["pair"] = ["a"] + ["b"] * (adata.n_obs - 1)
    with pytest.raises(InputError, match="single value"):
        ie.tl.enrich(adata, "one", signatures=sigs)
    with pytest.raises(InputError, match="fewer than two observations"):
        ie.tl.enrich(adata, "pair", signatures=sigs)
    adata.obs["two"] = np.where(np.arange(adata.n_obs) % 2, "a", "b")
    with pytest.raises(InputError, match="both tested and the reference"):
        ie.tl.enrich(adata, "two", groups=["a"], reference="a", signatures=sigs)


@case
def hostile_signature_file(tmp_path):
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi"):
        bomb += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    cases = {
        "bomb.yaml": (bomb, "expands to more than"),
        "deep.yaml": ("x: " + "[" * 3000 + "]" * 3000, "nested"),
        "dup.yaml": ("s: [CD8A]\ns: [GZMB]\n", "appears twice"),
        "dup.json": ('{"s": ["CD8A"], "s": ["GZMB"]}', "appears twice"),
        "deep.json": ('{"s": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ie.SignatureError, match=message):
            ie.signatures.load(str(tmp_path / name))
    import immunescape.signatures as signatures

    big = tmp_path / "big.yaml"
    big.write_text("s: [CD8A]\n")
    original = signatures.MAX_FILE_BYTES
    signatures.MAX_FILE_BYTES = 4
    try:
        with pytest.raises(ie.SignatureError, match="larger than any signature library"):
            ie.signatures.load(str(big))
    finally:
        signatures.MAX_FILE_BYTES = original


@case
def too_many_signatures(tmp_path, capsys):
    path = _h5ad(tmp_path)
    adata, _ = _data()
    gmt = tmp_path / "many.gmt"
    gmt.write_text(
        "".join(f"signature_with_a_rather_long_name_{i:05d}\tx\t{adata.var_names[i % 50]}\n" for i in range(3000))
    )
    out = tmp_path / "o.h5ad"
    assert main(["-q", "score", str(path), "-s", str(gmt), "-o", str(out)]) == 1
    assert "--scores-only" in capsys.readouterr().err and not out.exists()
    assert (
        main(
            ["-q", "score", str(path), "-s", str(gmt), "--scores-only", str(tmp_path / "t.csv"), "--min-coverage", "0"]
        )
        == 0
    )
    adata, sigs = _data()
    with pytest.raises(InputError, match="n_null=.*GiB"):
        ie.tl.score(adata, sigs, null="matched", n_null=10**12, null_bins=5)


@case
def celltype_label_words():
    labels = pd.Series(
        [
            "Tumor-infiltrating CD8+ T cells",
            "Cancer-associated fibroblasts",
            "Tumor-associated macrophages",
            "Tumour cells",
            "T/NK cells",
            "TILs",
            "NKT cells",
            "Plasma cells",
        ]
    )
    with pytest.warns(ie.DataWarning, match="'T/NK cells' \\(T, NK\\).*'TILs'"):
        mapped = ie.tl.compartments_from_labels(labels)
    assert mapped.tolist() == ["T", "fibroblast", "myeloid", "malignant", "other", "other", "T", "B"]
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=60, seed=1)
    ie.tl.score(cells, "immune_escape")
    samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    table = samples.uns["immunescape_samples"]["compartment_map"]
    assert set(table["label"]) == set(cells.obs["cell_type"].astype(str)) and "compartment" in table


@case
def backed_without_x(tmp_path, capsys):
    adata, _ = _data()
    path = tmp_path / "nox.h5ad"
    ad.AnnData(obs=adata.obs, var=adata.var).write_h5ad(path)
    assert main(["-q", "score", str(path), "-o", str(tmp_path / "o.h5ad"), "--backed"]) == 1
    assert "stores no X" in capsys.readouterr().err


@case
def missing_sample_labels():
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=60, seed=1)
    cells.obs["sample"] = cells.obs["sample"].astype(object)
    cells.obs.iloc[:10, cells.obs.columns.get_loc("sample")] = np.nan
    cells.obs.iloc[10:12, cells.obs.columns.get_loc("sample")] = ""
    with pytest.warns(ie.DataWarning, match="12 of 180 rows have no label"):
        bulk = ie.pp.pseudobulk(cells, "sample")
    assert "nan" not in bulk.obs_names and bulk.obs["n_cells"].sum() == 168
    ie.tl.score(cells, "cytolytic_activity_rooney2015")
    with pytest.warns(ie.DataWarning, match="no label"):
        samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    assert "nan" not in samples.obs_names and samples.obs["n_cells"].sum() == 168
    cells.obs["sample"] = np.nan
    with pytest.raises(InputError, match="all missing"), pytest.warns(ie.DataWarning):
        ie.pp.pseudobulk(cells, "sample")


@case
def file_reads_elsewhere(tmp_path, capsys):
    import h5py

    path = _h5ad(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOPSECRET" * 20000)
    variants = {}
    for kind in ("external_storage", "external_link", "virtual", "external_storage_in_uns"):
        target = tmp_path / f"{kind}.h5ad"
        target.write_bytes(path.read_bytes())
        with h5py.File(target, "r+") as f:
            n, dtype = f["X/data"].shape[0], f["X/data"].dtype
            if kind == "external_storage_in_uns":  # not the first dataset a visit meets: every dataset is checked
                f.create_dataset("uns/extra", shape=(100,), dtype="uint8", external=[(str(secret), 0, 100)])
                f["uns/extra"].attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
                variants[kind] = target
                continue
            del f["X/data"]
            if kind == "external_storage":
                f.create_dataset("X/data", shape=(n,), dtype=dtype, external=[(str(secret), 0, n * dtype.itemsize)])
            elif kind == "external_link":
                f["X/data"] = h5py.ExternalLink(str(path), "/X/data")
            else:
                layout = h5py.VirtualLayout(shape=(n,), dtype=dtype)
                layout[:] = h5py.VirtualSource(str(path), "X/data", shape=(n,))
                f.create_virtual_dataset("X/data", layout)
        variants[kind] = target
    for kind, target in variants.items():
        before = _sha(target)
        for extra in ([], ["--backed"]):
            out = tmp_path / "o.h5ad"
            assert main(["-q", "score", str(target), "-o", str(out), *extra, "-s", str(_sets_file(tmp_path))]) == 1, (
                kind
            )
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "outside itself" in err, (kind, err)
            assert not out.exists() and _sha(target) == before
        with pytest.raises(ie.ImmunescapeIOError, match="outside itself"):
            ie.io.read_h5ad(target)


@case
def claimed_shapes(tmp_path, capsys, monkeypatch):
    import h5py

    import immunescape._utils

    path = _h5ad(tmp_path)
    with h5py.File(path, "r+") as f:  # far longer than indptr needs: 1.6 GB of zeros in a few kB on disk
        for name, dtype in (("data", "float32"), ("indices", "int32")):
            del f[f"X/{name}"]
            f.create_dataset(f"X/{name}", shape=(2 * 10**8,), dtype=dtype, chunks=(2**20,), compression="gzip")
    assert path.stat().st_size < 10 * 2**20
    monkeypatch.setattr(immunescape._utils, "physical_memory", lambda: 2**30)  # a 1 GiB machine
    out = tmp_path / "o.csv"
    assert main(["-q", "score", str(path), "--scores-only", str(out), "-s", str(_sets_file(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "GiB of memory by its stored shapes" in err and "--backed" in err and not out.exists()
    )


@case
def stored_index_types(tmp_path, capsys):
    import h5py

    path = _h5ad(tmp_path)
    floats = tmp_path / "float_indices.h5ad"
    floats.write_bytes(path.read_bytes())
    with h5py.File(floats, "r+") as f:  # scipy would truncate 3.9 to column 3 on a backed read: another gene
        indices = f["X/indices"][:]
        del f["X/indices"]
        f["X/indices"] = indices.astype(np.float64) + 0.9
    half = tmp_path / "half_sparse.h5ad"
    half.write_bytes(path.read_bytes())
    with h5py.File(half, "r+") as f:
        data = f["X/data"][:]
        del f["X/data"]
        f["X/data"] = data.astype(np.float16)
    for target, message in ((floats, "not integers"), (half, "sparse float16")):
        for extra in ([], ["--backed"]):
            out = tmp_path / "o.csv"
            assert (
                main(["-q", "score", str(target), "--scores-only", str(out), *extra, "-s", str(_sets_file(tmp_path))])
                == 1
            )
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and message in err and not out.exists(), err


@case
def key_added_taken(tmp_path, capsys):
    adata, sigs = _data()
    umap = np.random.default_rng(0).normal(size=(adata.n_obs, 2))
    adata.obsm["X_umap"] = umap.copy()
    with pytest.raises(InputError, match="obsm\\['X_umap'\\].*no immunescape score run"):
        ie.tl.score(adata, sigs, key_added="X_umap")
    adata.obs["immunescape_s"] = "my notes"
    with pytest.raises(InputError, match="obs\\['immunescape_s'\\]"):
        ie.tl.score(adata, sigs)
    del adata.obs["immunescape_s"]
    adata.uns["mine"] = {"a": 1}
    with pytest.raises(InputError, match="uns\\['mine'\\]"):
        ie.tl.score(adata, sigs, key_added="mine")
    np.testing.assert_array_equal(adata.obsm["X_umap"], umap)
    ie.tl.score(adata, sigs)  # our own key: scored again, replacing only what the first run wrote
    ie.tl.score(adata, sigs)
    assert "immunescape_s" in adata.obs
    path = tmp_path / "umap.h5ad"
    adata.write_h5ad(path)
    before = _sha(path)
    for extra in (["--inplace"], ["-o", str(tmp_path / "o.h5ad")], ["--backed", "-o", str(tmp_path / "o.h5ad")]):
        assert main(["-q", "score", str(path), "--key-added", "X_umap", "-s", str(_sets_file(tmp_path)), *extra]) == 2
        assert "no immunescape score run" in capsys.readouterr().err
        assert _sha(path) == before and not (tmp_path / "o.h5ad").exists()


@case
def foreign_score_table():
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=40, seed=2)
    for value, message in (
        (np.zeros((cells.n_obs, 3)), "not the score table"),
        (pd.DataFrame({"a": ["x"] * cells.n_obs}, index=cells.obs_names), "not numbers"),
        (pd.DataFrame(np.zeros((cells.n_obs, 2)), index=cells.obs_names), "not signature names"),
    ):
        cells.obsm["immunescape"] = value
        with pytest.raises(InputError, match=message):
            ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
        bulk = ad.AnnData(
            np.ones((cells.n_obs, 3)), obs=pd.DataFrame(index=cells.obs_names), obsm={"immunescape": value}
        )
        with pytest.raises(InputError, match=message), warnings.catch_warnings():
            warnings.simplefilter("ignore", ie.DataWarning)  # no context-model genes in this toy: said, then refused
            ie.tl.classify(bulk, reference="cohort", rows_are_samples=True)


@case
def reference_single_cells(tmp_path, capsys):
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=40, seed=2)
    path = tmp_path / "cells.h5ad"
    cells.write_h5ad(path)
    out = tmp_path / "c.csv"
    assert main(["-q", "classify", str(path), "--sample-key", "sample", "--reference", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "looks like single cells" in err and not out.exists()
    ie.tl.score(cells, "immune_escape,bagaev2021")
    samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    with pytest.raises(InputError, match="reference cohort looks like single cells"):
        ie.tl.classify(samples, reference=cells)


@case
def repeated_option(tmp_path, capsys):
    path = _h5ad(tmp_path)
    out = tmp_path / "o.csv"
    assert main(["-q", "score", str(path), "--scores-only", str(out), "-p", "max_rank=10", "-p", "max_rank=20"]) == 2
    assert "given twice" in capsys.readouterr().err and not out.exists()
    assert (
        main(
            [
                "-q",
                "classify",
                str(path),
                "--rows-are-samples",
                "-o",
                str(out),
                "--threshold",
                "checkpoint_high=1",
                "--threshold",
                "checkpoint_high=2",
            ]
        )
        == 2
    )
    assert "given twice" in capsys.readouterr().err and not out.exists()


@case
def signature_file_text(tmp_path):
    adata, _ = _data()
    genes = list(adata.var_names[:6])
    bom = tmp_path / "bom.gmt"
    bom.write_bytes(("\ufeffsetA\tdesc\t" + "\t".join(genes) + "\r\n").encode())
    assert [s.name for s in ie.signatures.load(str(bom))] == ["setA"]
    latin = tmp_path / "latin.gmt"
    latin.write_bytes(b"set\xe9\tdesc\t" + "\t".join(genes).encode() + b"\n")
    with pytest.raises(ie.SignatureError, match="not UTF-8 text"):
        ie.signatures.load(str(latin))
    h5 = tmp_path / "cells.h5ad"
    adata.write_h5ad(h5)
    with pytest.raises(ie.SignatureError, match="not a signature file"):
        ie.signatures.load(str(h5))


@case
def enrich_permutations_memory():
    adata, _ = _data()
    adata.obs["group"] = np.where(np.arange(adata.n_obs) % 2, "a", "b")
    with pytest.raises(InputError, match="permutation_num=.*GiB.*at most about"):
        ie.tl.enrich(
            adata, "group", signatures={"s": list(adata.var_names[:10])}, permutation_num=10**12, min_coverage=0
        )


@case
def api_argument_types():
    adata, sigs = _data()
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=40, seed=2)
    ie.tl.score(cells, "immune_escape,bagaev2021")
    samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    cases = [
        (lambda: ie.tl.score(adata, {}), ie.SignatureError, "mapping is empty"),
        (lambda: ie.tl.score(adata, []), ie.SignatureError, "list is empty"),
        (lambda: ie.tl.score(adata, sigs, min_coverage="0.5"), InputError, "min_coverage"),
        (lambda: ie.tl.score(adata, sigs, min_coverage=True), InputError, "min_coverage"),
        (lambda: ie.tl.aggregate(cells, "sample", min_cells="5"), InputError, "min_cells must be a whole number"),
        (lambda: ie.tl.aggregate(cells, "sample", min_cells=0), InputError, "min_cells must be a whole number"),
        (lambda: ie.tl.aggregate(cells, 5), InputError, "sample_key=5"),
        # a quantile outside [0, 1] raised pandas' ValueError, a text level a TypeError
        (lambda: ie.tl.aggregate(cells, "sample", high_quantile=2.0), InputError, "high_quantile must be a number"),
        (lambda: ie.tl.aggregate(cells, "sample", high_quantile=np.nan), InputError, "high_quantile must be a number"),
        (lambda: ie.tl.exclusion_drivers(samples, level="0.9"), InputError, "level must be a number strictly between"),
        (lambda: ie.tl.exclusion_drivers(samples, level=1.0), InputError, "level must be a number strictly between"),
        (
            lambda: ie.tl.classify(samples, thresholds={"checkpoint_high": np.bool_(True)}),
            InputError,
            "must be a number",
        ),
        (lambda: ie.tl.adjust_pvalues(pd.DataFrame({"a": [0.5, 2.0]})), InputError, "between 0 and 1"),
        (lambda: ie.tl.adjust_pvalues(pd.DataFrame({"a": ["x", "y"]})), InputError, "must hold numbers"),
        # the simulator passed these to numpy (negative dimensions, blocks must be 2-D) or used them silently
        (lambda: ie.datasets.simulate_tumor(n_samples=0), InputError, "n_samples must be a whole number >= 1"),
        (lambda: ie.datasets.simulate_tumor(3, cells_per_sample=0), InputError, "cells_per_sample must be"),
        (lambda: ie.datasets.simulate_tumor(3, 20, n_background_genes=-1), InputError, "n_background_genes must"),
        (lambda: ie.datasets.simulate_tumor(3, 20, mechanism_rate=2), InputError, "mechanism_rate must be a number"),
        (lambda: ie.datasets.simulate_tumor(3, 20, pathway_fold=-1.0), InputError, "pathway_fold must be a positive"),
        (lambda: ie.datasets.simulate_tumor(3, 20, pathway_fold=np.nan), InputError, "pathway_fold must be a positive"),
        (lambda: ie.datasets.simulate_tumor(3, 20, seed=-1), InputError, "seed must be None or a whole number"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


@case
def pseudobulk_not_counts():
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=40, seed=4)
    ie.tl.score(cells, "immune_escape")
    good = ie.pp.pseudobulk(cells, "sample")
    for how, error in (("nan", "NaN or infinite"), ("inf", "NaN or infinite"), ("negative", "negative values")):
        bad = cells.copy()
        bad.layers["counts"] = bad.layers["counts"].astype(np.float32)
        bad.layers["counts"].data[:3] = {"nan": np.nan, "inf": np.inf, "negative": -2.0}[how]
        # NaN spread over the sample's whole profile and negative counts into log1p's NaN, silently
        with pytest.raises(InputError, match=error):
            ie.pp.pseudobulk(bad, "sample")
        with pytest.raises(InputError, match=error):
            ie.tl.aggregate(bad, "sample", celltype_key="cell_type", mode="pseudobulk", min_cells=5)
    with pytest.warns(ie.DataWarning, match="not whole numbers"):  # log-normalised X summed as if counts
        ie.pp.pseudobulk(cells, "sample", layer=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ie.DataWarning)
        np.testing.assert_array_equal(ie.pp.pseudobulk(cells, "sample").X, good.X)  # raw counts: no warning
    for target in (0, -5.0, np.nan, np.inf, "1e4", True):  # 0 gave all zeros, NaN all NaN
        with pytest.raises(InputError, match="target_sum must be a positive finite number"):
            ie.pp.pseudobulk(cells, "sample", target_sum=target)
    for call, message in (
        (lambda: ie.tl.contributions(cells, "ifng_ayers2017", chunk_size=0), "chunk_size must be a positive"),
        (lambda: ie.tl.contributions(cells, "ifng_ayers2017", chunk_size=True), "chunk_size must be a positive"),
        (lambda: ie.tl.label_compartments("T cells"), "got one string"),  # its letters were taken for labels
        (lambda: ie.tl.compartments_from_markers(cells, min_z=np.nan), "min_z must be a finite number"),
        (lambda: ie.tl.compartments_from_markers(cells, min_gap="0.5"), "min_gap must be a finite number"),
    ):
        with pytest.raises(InputError, match=message):
            call()


@case
def figure_format(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    adata, sigs = _data()
    ie.tl.score(adata, sigs)
    for name in ("cells.h5ad", "figure.v2"):  # matplotlib's ValueError, from deep inside savefig
        with pytest.raises(InputError, match="matplotlib writes no"):
            ie.pl.coverage(adata, save=tmp_path / name, show=False)
    assert list(tmp_path.iterdir()) == []
    ie.pl.coverage(adata, save=tmp_path / "c.PDF", show=False)
    assert (tmp_path / "c.PDF").stat().st_size > 0
    # the command line: --plot checked before any work (enrich ran its whole analysis first), and
    # signatures export wrote GMT text over an .h5ad named with --force
    data = _h5ad(tmp_path)
    before = _sha(data)
    for argv in (
        ["enrich", str(data), "--groupby", "group", "-o", str(tmp_path / "e.csv"), "--plot", str(tmp_path / "x.h5ad")],
        ["drivers", str(data), "--sample-key", "group", "-o", str(tmp_path / "d.csv"), "--plot", "x.h5"],
        ["signatures", "export", "immune_escape", "-o", str(data), "--force"],
        ["signatures", "export", "immune_escape", "-o", str(tmp_path / "s.yaml"), "--format", "gmt"],
        ["signatures", "export", "immune_escape", "-o", str(tmp_path / "s.json")],
    ):
        assert main(["-q", *argv]) == 2, argv
    assert _sha(data) == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.PDF", data.name]
    for name in ("s.gmt", "s.txt", "s.yaml", "s"):
        assert main(["-q", "signatures", "export", "immune_escape", "-o", str(tmp_path / name)]) == 0
    assert "\t" in (tmp_path / "s.txt").read_text() and "\t" not in (tmp_path / "s.yaml").read_text()  # GMT, YAML


@case
def plot_arguments():
    import matplotlib

    matplotlib.use("Agg")
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=40, seed=3)
    ie.tl.score(cells, "immune_escape")
    calls = ie.tl.classify(ie.tl.aggregate(cells, "sample", celltype_key="cell_type"))
    cells.obs["depth"] = np.random.default_rng(0).random(cells.n_obs)  # continuous: one violin per value
    for kind in ("violin", "box", "dot"):
        with pytest.raises(InputError, match="distinct numbers, not groups"):
            ie.pl.scores(cells, "ifng_ayers2017", groupby="depth", kind=kind, show=False)
    cells.obs["batch"] = np.arange(cells.n_obs) % 3  # whole numbers naming groups stay groups
    ie.pl.scores(cells, "ifng_ayers2017", groupby="batch", show=False)
    for limit in (0, -1.0, np.nan, "8"):  # NaN reached matplotlib's "Axis limits cannot be NaN"; 0 drew no axis
        with pytest.raises(InputError, match="limit must be a positive finite number"):
            ie.pl.escape_profile(calls, calls.index[0], limit=limit, show=False)


@case
def reference_too_small(tmp_path):
    cells = ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=40, seed=3)
    ie.tl.score(cells, "immune_escape")
    samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    one = ie.tl.reference_profile(samples[:1])
    one.save(tmp_path / "one.json")
    # one sample's spread is 0: every z came out near 0 and no mechanism was ever called, silently
    for reference in (one, tmp_path / "one.json", samples[:2]):
        with pytest.raises(InputError, match="needs at least 5"):
            ie.tl.classify(samples, reference=reference)
    with pytest.warns(ie.DataWarning, match="reference of 6 samples"):
        ie.tl.classify(samples, reference=ie.tl.reference_profile(samples))
    # compartments= maps labels: without celltype_key it was ignored and markers were used instead
    with pytest.raises(InputError, match="pass celltype_key"):
        ie.tl.aggregate(cells, "sample", compartments={"T": ["CD8 T"]})


@case
def values_overflow(tmp_path):
    adata, sigs = _data()
    huge = adata.copy()
    huge.X = huge.X.astype(np.float64) * 1e306  # each value finite, their sums not
    # were: NaN scores (zmean), "gene_pool leaves out genes" (mean), "Too few genes (0) for n_bins" (nulls)
    for method in ("mean", "zmean", "wmean", "ucell", "aucell"):
        for null in (None, "matched"):
            with pytest.raises(InputError, match="too large to add up"):
                ie.tl.score(huge, sigs, method=method, null=null, n_null=10)
    wide = adata.copy()
    wide.X = (wide.X.astype(np.float64) * 1e37).astype(np.float32)  # scanpy's float32 gene sums overflow
    with pytest.raises(InputError, match="too large to add up"):
        ie.tl.score(wide, sigs, method="mean")
    path = tmp_path / "huge.h5ad"
    huge.write_h5ad(path)
    for backed in ([], ["--backed"]):
        out = tmp_path / "o.h5ad"
        assert main(["-q", "score", str(path), "-o", str(out), "-s", str(_sets_file(tmp_path)), *backed]) == 1
        assert not out.exists()


@case
def gene_name_shapes():
    cells = ie.datasets.simulate_tumor(n_samples=2, cells_per_sample=30, seed=5)
    names = cells.var_names
    for shaped, hint, fix in (
        (" " + names + " ", "spaces around them", lambda v: v.str.strip()),
        ("GRCh38_" + names, "carry a prefix", lambda v: v.str.removeprefix("GRCh38_")),  # 10x multi-genome
        (pd.Index([str(i) for i in range(len(names))]), "are numbers", None),
    ):
        bad = cells.copy()
        bad.var_names = shaped
        with pytest.raises(ie.GeneResolutionError, match=hint):
            ie.tl.score(bad, "ifng_ayers2017")
        if fix is not None:  # the suggested line makes the names match
            bad.var_names = fix(bad.var_names)
            ie.tl.score(bad, "ifng_ayers2017")
    with pytest.raises(ie.GeneResolutionError) as err:  # names of another kind: no shape to blame
        ie.tl.score(cells[:, 400:].copy(), "ifng_ayers2017")
    assert "spaces" not in str(err.value) and "prefix" not in str(err.value) and "numbers" not in str(err.value)


def _pathway_samples(n_samples: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = ie.datasets.simulate_tumor(
            n_samples=n_samples, cells_per_sample=40, seed=8, pathways={"progeny_tgfb": "t_cell_poor"}
        )
        ie.tl.score(cells, "immune_escape")
        ie.tl.score(cells, "tumour_intrinsic", method="wmean", key_added="pathways", min_coverage=0)
        return ie.tl.aggregate(cells, "sample", celltype_key="cell_type", key=["immunescape", "pathways"])


@case
def drivers_too_few_samples():
    samples = _pathway_samples(8)
    with pytest.raises(ie.InputError, match="min_samples"):
        ie.tl.exclusion_drivers(samples, exclusion=pd.Series("inflamed", index=samples.obs_names))
    samples = _pathway_samples(12)
    labels = pd.Series(["excluded", "inflamed"] * 3 + ["desert"] * 6, index=samples.obs_names)
    with pytest.warns(ie.DataWarning, match="left out"):
        table = ie.tl.exclusion_drivers(samples, exclusion=labels)
    assert set(table["outcome"]) == {"infiltration"}


@case
def drivers_exclusion_labels():
    samples = _pathway_samples(12)
    with pytest.raises(ie.InputError, match="run ie.tl.classify"):
        ie.tl.exclusion_drivers(samples)
    with pytest.raises(ie.InputError, match="'excluded' or 'inflamed'"):
        ie.tl.exclusion_drivers(samples, exclusion=pd.Series(["hot", "cold"] * 6, index=samples.obs_names))
    with pytest.raises(ie.InputError, match="not a column"):
        ie.tl.exclusion_drivers(samples, exclusion="phenotype")


@case
def drivers_bulk_without_stroma():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(20, 2)), columns=["cd8_t_effector_mariathasan2018", "progeny_tgfb"]).set_axis(
        [f"s{i}" for i in range(20)]
    )
    labels = pd.Series(["excluded", "inflamed"] * 10, index=frame.index)
    with pytest.raises(ie.InputError, match="adjust=None"):
        ie.tl.exclusion_drivers(frame, pathways=["progeny_tgfb"], exclusion=labels)
    assert len(ie.tl.exclusion_drivers(frame, pathways=["progeny_tgfb"], exclusion=labels, adjust=None)) == 2


@case
def scores_under_two_keys():
    adata, sets = _data()
    ie.tl.score(adata, sets, key_added="a", min_coverage=0)
    ie.tl.score(adata, sets, key_added="b", min_coverage=0)
    adata.obs["sample"], adata.obs["cell_type"] = "x", "malignant"
    with pytest.raises(ie.InputError, match="one key per signature"):
        ie.tl.aggregate(adata, "sample", celltype_key="cell_type", key=["a", "b"], min_cells=1)
    with pytest.raises(ie.InputError, match="one key per signature"):
        ie.tl.classify(adata, key=["a", "b"], rows_are_samples=True)


@case
def gene_pool_without_signature_genes(tmp_path):
    adata, sets = _data()
    left_out = sets["s"][0]
    pool = [g for g in adata.var_names if g != left_out]
    with pytest.raises(ie.InputError, match=r"gene_pool leaves out genes of 1 signature\(s\) \(s\).*gene_pool=None"):
        ie.tl.score(adata, sets, method="mean", gene_pool=pool, min_coverage=0)
    assert "immunescape" not in adata.obsm
    scores = ie.tl.score(adata, sets, method="mean", gene_pool=[*pool, left_out], min_coverage=0, inplace=False)
    assert np.isfinite(scores.to_numpy()).all()


@case
def simulate_bad_pathway():
    with pytest.raises(ie.InputError, match="not a tumour-intrinsic pathway"):
        ie.datasets.simulate_tumor(
            n_samples=2, cells_per_sample=20, pathways={"cd8_t_effector_mariathasan2018": "random"}
        )
    with pytest.raises(ie.InputError, match="t_cell_poor"):
        ie.datasets.simulate_tumor(n_samples=2, cells_per_sample=20, pathways={"progeny_wnt": 1})


@case
def null_beyond_memory(monkeypatch):
    import immunescape._null

    adata, sets = _data()
    monkeypatch.setattr(immunescape._null, "physical_memory", lambda: 2**20)  # a 1 MiB machine
    with pytest.raises(InputError, match="more than half of this machine's memory; lower n_null"):
        ie.tl.score(adata, sets, method="ucell", null="matched", n_null=10**4)
    monkeypatch.setattr(immunescape._null, "physical_memory", lambda: 2**11)  # the sources alone do not fit
    with pytest.raises(InputError, match="candidate genes .* use more null_bins"):
        ie.tl.score(adata, sets, method="ucell", null="matched", n_null=2, null_bins=2)
    assert "immunescape" not in adata.obsm
    monkeypatch.undo()
    res = ie.tl.score(adata, sets, method="ucell", null="matched", n_null=20, null_bins=2, inplace=False)
    assert np.isfinite(res["pval"].to_numpy()).all()  # two bins: each gene's source is the whole pool


@case
def foreign_byte_order():
    # arrays in big-endian order or with narrow index types (as other tools and machines write them)
    # reach no kernel as they are: the kernels take native float32/float64 and int32/int64
    adata, sets = _data()
    X = sp.csr_matrix(adata.X)
    foreign = sp.csr_matrix(X.shape, dtype=np.float32)
    foreign.data, foreign.indices, foreign.indptr = (
        X.data.astype(">f4"),
        X.indices.astype(">u2"),
        X.indptr.astype(">i8"),
    )
    other = ad.AnnData(foreign, obs=adata.obs, var=adata.var)
    for method in ("mean", "aucell", "ucell"):
        got = ie.tl.score(other, sets, method=method, min_coverage=0, inplace=False)
        expected = ie.tl.score(adata, sets, method=method, min_coverage=0, inplace=False)
        assert np.array_equal(got.to_numpy(), expected.to_numpy()), method
    dense = X.toarray().astype(">f4")
    got = ie.tl.score(
        ad.AnnData(dense, obs=adata.obs, var=adata.var), sets, method="ucell", min_coverage=0, inplace=False
    )
    assert np.array_equal(got.to_numpy(), expected.to_numpy())  # the last method's scores
    dense[3, 4] = np.nan  # the counting kernel runs on the values as they are
    with pytest.raises(InputError, match="NaN or infinite"):
        ie.tl.score(ad.AnnData(dense, obs=adata.obs, var=adata.var), sets, method="ucell", min_coverage=0)


@case
def foreign_byte_order_file(tmp_path, capsys):
    # an .h5ad whose sparse arrays are big-endian: scipy.sparse (1.15 and later) refuses them, with an
    # error naming float32 as unsupported; the user is told what the file holds, not that it is damaged
    import h5py

    adata, sets = _data()
    adata.X = sp.csr_matrix(adata.X)
    path = tmp_path / "big_endian.h5ad"
    adata.write_h5ad(path)
    with h5py.File(path, "r+") as f:
        for name in ("data", "indices", "indptr"):
            values = f["X"][name][...]
            del f["X"][name]
            f["X"].create_dataset(name, data=values.astype(values.dtype.newbyteorder(">")))
    assert main(["score", str(path), "-o", str(tmp_path / "o.h5ad")]) == 1
    err = capsys.readouterr().err
    assert "big-endian byte order" in err and "corrupted" not in err and "Traceback" not in err
    backed = ad.read_h5ad(path, backed="r")
    with pytest.raises(InputError, match="big-endian byte order, which scipy.sparse cannot hold; rewrite it"):
        ie.tl.score(backed, sets, min_coverage=0)


@case
def extreme_weights(tmp_path):
    # weights near the float64 limit: their absolute sum overflowed, and every wmean / zmean score came
    # out 0 without a word; the shares weight / sum(|weight|) do not depend on the scale
    adata, sets = _data()
    rng = np.random.default_rng(3)
    genes = list(sets["s"])
    plain = {g: float(v) for g, v in zip(genes, rng.normal(size=len(genes)))}
    huge = {g: v * 1e307 for g, v in plain.items()}
    for method in ("wmean", "zmean"):
        want = ie.tl.score(adata, {"s": plain}, method=method, inplace=False, min_coverage=0, null="matched", n_null=20)
        got = ie.tl.score(adata, {"s": huge}, method=method, inplace=False, min_coverage=0, null="matched", n_null=20)
        assert np.abs(want["score"].to_numpy()).max() > 0
        for table in ("score", "z", "pval"):
            np.testing.assert_allclose(got[table].to_numpy(), want[table].to_numpy(), rtol=1e-9, atol=1e-12)
    want = ie.tl.contributions(adata, ie.signatures.load({"s": plain})[0], method="wmean")
    got = ie.tl.contributions(adata, ie.signatures.load({"s": huge})[0], method="wmean")
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-9, atol=1e-15)


def test_every_documented_row_has_a_test():
    ids = _doc_ids()
    assert len(ids) >= 30
    assert set(ids) == set(CASES), set(ids) ^ set(CASES)


@pytest.mark.parametrize("row", sorted(CASES))
def test_bad_input(row, tmp_path, capsys, monkeypatch, request):
    fn = CASES[row]
    kwargs = {}
    names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    for name in names:
        kwargs[name] = {"tmp_path": tmp_path, "capsys": capsys, "monkeypatch": monkeypatch}.get(
            name
        ) or request.getfixturevalue(name)
    fn(**kwargs)
