"""One test per row of docs/bad_inputs.md (the test id is the row id)."""

from __future__ import annotations

import hashlib
import re
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
    raw[: 64] = b"\x00" * 64  # the HDF5 signature and superblock
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
    with pytest.raises(ie.InputError, match="numeric"):
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
    adata = ad.AnnData(np.random.default_rng(0).random((4, 2)), var=pd.DataFrame(index=["ENSG00000145649.8", "ENSG00000180644.7"]))
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
    with pytest.warns(ie.DataWarning, match="fewer than min_cells=121"):
        with pytest.raises(ie.InputError, match="No sample"):
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
    assert main(["-q", "score", str(path), "-o", str(tmp_path / "nowhere" / "o.h5ad"), "-s", str(_sets_file(tmp_path))]) == 1
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()


@case
def output_parent_is_file(tmp_path, capsys):
    path = _h5ad(tmp_path)
    (tmp_path / "afile").write_text("x")
    assert main(["-q", "score", str(path), "-o", str(tmp_path / "afile" / "o.h5ad"), "-s", str(_sets_file(tmp_path))]) == 1
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
def null_bin_too_small():
    adata, _ = _data()
    with pytest.raises(InputError, match="lower null_bins"):
        ie.tl.score(adata, {"big": list(adata.var_names[3:70])}, null="matched", null_bins=20)


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
    assert main(["-q", "classify", str(path), "-o", str(tmp_path / "c.csv"), "--reference", str(tmp_path / "ref.json")]) == 1
    err = capsys.readouterr().err
    assert "not a reference profile" in err and "Traceback" not in err


@case
def classify_no_model_genes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.poisson(3, (12, 40)).astype(float), index=[f"s{i}" for i in range(12)],
                         columns=[f"ENSX{i:06d}" for i in range(40)])  # fmt: skip
    bulk = ad.AnnData(frame.to_numpy(), obs=pd.DataFrame(index=frame.index), var=pd.DataFrame(index=frame.columns))
    bulk.obsm["immunescape"] = pd.DataFrame(rng.normal(size=(12, 2)), index=frame.index, columns=["apm_mariathasan2018", "immune_checkpoints_curated"])
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
    assert [s.name for s in ie.signatures.load("immune_escape")] == [s.name for s in ie.signatures.collection("immune_escape")]


def test_every_documented_row_has_a_test():
    ids = _doc_ids()
    assert len(ids) >= 30
    assert set(ids) == set(CASES), (set(ids) ^ set(CASES))


@pytest.mark.parametrize("row", sorted(CASES))
def test_bad_input(row, tmp_path, capsys, monkeypatch, request):
    fn = CASES[row]
    kwargs = {}
    names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    for name in names:
        kwargs[name] = {"tmp_path": tmp_path, "capsys": capsys, "monkeypatch": monkeypatch}.get(name) or request.getfixturevalue(name)
    fn(**kwargs)
