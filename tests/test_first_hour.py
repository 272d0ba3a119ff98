"""What a new user meets in the first hour: collections on partial gene panels, re-scoring, scanpy's
verbosity, pandas return types, CLI help and early key checks, single cells refused by classify,
provenance that says what was checked."""

from __future__ import annotations

import argparse
import io
import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import immunescape as ie
from immunescape.cli import _parser, main


@pytest.fixture
def panel():
    """Bulk-like samples on a small panel: the cytolytic genes, half of the IFN-gamma genes, none of the rest."""
    rng = np.random.default_rng(0)
    genes = ["GZMA", "PRF1", "IDO1", "CXCL10", "CXCL9", *(f"FILLER{i}" for i in range(40))]
    return ad.AnnData(
        rng.gamma(2.0, 1.0, (30, len(genes))),
        var=pd.DataFrame(index=genes),
        obs=pd.DataFrame(index=[f"S{i}" for i in range(30)]),
    )


# --------------------------------------------------------------------------- collections on partial panels
def test_collection_drops_uncovered_members_with_one_warning_and_a_record(panel):
    with pytest.warns(ie.CoverageWarning) as record:
        ie.tl.score(panel, "immune_escape")
    low = [w for w in record if "left out" in str(w.message)]
    assert len(low) == 1 and "apm_mariathasan2018 (0/6)" in str(low[0].message)
    kept = list(panel.obsm["immunescape"].columns)
    assert {"ifng_ayers2017", "cytolytic_activity_rooney2015"} <= set(kept)
    assert (panel.uns["immunescape"]["coverage"]["coverage"] >= 0.5).all()
    left_out = panel.uns["immunescape"]["left_out"]
    assert "apm_mariathasan2018" in set(left_out["name"]) and not set(kept) & set(left_out["name"])
    assert (left_out["coverage"] < 0.5).all() and len(kept) + len(left_out) == len(
        ie.signatures.collection("immune_escape")
    )
    assert f"{len(left_out)} of {len(kept) + len(left_out)} signatures" in str(low[0].message)


def test_a_signature_named_one_by_one_still_raises(panel):
    with pytest.raises(ie.GeneResolutionError, match="apm_mariathasan2018"):
        ie.tl.score(panel, "cytolytic_activity_rooney2015,apm_mariathasan2018")
    with pytest.raises(ie.GeneResolutionError):  # a collection with low_coverage="raise"
        ie.tl.score(panel, "immune_escape", low_coverage="raise")
    with pytest.warns(ie.CoverageWarning, match="left out"):  # and a named one with "drop"
        ie.tl.score(panel, "cytolytic_activity_rooney2015,apm_mariathasan2018", low_coverage="drop")
    assert list(panel.obsm["immunescape"].columns) == ["cytolytic_activity_rooney2015"]


def test_nothing_left_to_score_is_an_error(panel):
    with pytest.raises(
        ie.GeneResolutionError, match=r"29 signature\(s\) below min_coverage=50%:\n  bagaev2021_Angiogenesis: 0 of 15"
    ):
        ie.tl.score(panel, "bagaev2021")
    with pytest.raises(ie.InputError, match="low_coverage"):
        ie.tl.score(panel, "immune_escape", low_coverage="ignore")


def test_named_explicitly_tells_names_from_collections(tmp_path):
    assert ie.signatures.named_explicitly("immune_escape") == set()
    assert ie.signatures.named_explicitly("tam_bagaev2021,thorsson2018") == {"bagaev2021_Macrophages"}  # alias resolved
    assert ie.signatures.named_explicitly(["cytolytic_activity_rooney2015", {"a": ["X"], "b": ["Y"]}]) == {
        "cytolytic_activity_rooney2015"
    }
    path = tmp_path / "sets.gmt"
    path.write_text("a\tna\tGZMA\tPRF1\n")
    assert ie.signatures.named_explicitly(str(path)) == set()


def test_a_file_in_the_working_folder_never_shadows_a_builtin_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "immune_escape").write_text("")
    (tmp_path / "ifng_ayers2017").write_text("not a signature file")
    assert len(ie.signatures.load("immune_escape")) == len(ie.signatures.collection("immune_escape"))
    assert [s.name for s in ie.signatures.load("ifng_ayers2017")] == ["ifng_ayers2017"]
    (tmp_path / "mine.gmt").write_text("mine\tna\tGZMA\tPRF1\n")
    assert [s.name for s in ie.signatures.load("mine.gmt")] == ["mine"]  # a path is still a path


def test_cli_low_coverage_and_min_coverage(panel, tmp_path, capsys):
    path = tmp_path / "panel.h5ad"
    panel.write_h5ad(path)
    assert main(["score", str(path), "--scores-only", str(tmp_path / "a.csv")]) == 0
    err = capsys.readouterr().err
    expected = ie.tl.score(panel, "immune_escape", inplace=False)
    n_lib = len(ie.signatures.collection("immune_escape"))
    assert (
        f"immunescape: warning: {n_lib - expected.shape[1]} of {n_lib} signatures below min_coverage=50% were left out"
        in err
    )
    assert list(pd.read_csv(tmp_path / "a.csv", index_col=0).columns) == list(expected.columns)
    assert main(["score", str(path), "--scores-only", str(tmp_path / "b.csv"), "--low-coverage", "raise"]) == 1
    assert "below min_coverage" in capsys.readouterr().err and not (tmp_path / "b.csv").exists()
    assert main(["score", str(path), "--scores-only", str(tmp_path / "c.csv"), "--min-coverage", "0.9"]) == 0
    assert list(pd.read_csv(tmp_path / "c.csv", index_col=0).columns) == ["cytolytic_activity_rooney2015"]


# --------------------------------------------------------------------------- re-scoring
def test_rescoring_with_the_same_key_removes_the_earlier_runs_columns(panel):
    ie.tl.score(panel, "cytolytic_activity_rooney2015,ifng_ayers2017", null="matched", n_null=20)
    ie.tl.score(panel, "cytolytic_activity_rooney2015", key_added="other")  # another key is left alone
    ie.tl.score(panel, "cytolytic_activity_rooney2015")
    assert [c for c in panel.obs if c.startswith("immunescape_")] == ["immunescape_cytolytic_activity_rooney2015"]
    assert "other_cytolytic_activity_rooney2015" in panel.obs
    assert sorted(panel.obsm) == ["immunescape", "other"]
    removed = panel.uns["immunescape"]["removed_previous"]
    assert list(removed["obs"]) == ["immunescape_ifng_ayers2017"]
    assert sorted(removed["obsm"]) == ["immunescape_padj", "immunescape_pval", "immunescape_z"]
    np.testing.assert_array_equal(
        panel.obs["immunescape_cytolytic_activity_rooney2015"], panel.obsm["immunescape"].iloc[:, 0]
    )


@pytest.mark.parametrize("mode", [["--inplace"], ["--backed", "-o", "OUT"]])
def test_cli_rescoring_removes_the_earlier_runs_columns(panel, tmp_path, mode):
    path = tmp_path / "panel.h5ad"
    panel.write_h5ad(path)
    assert (
        main(
            [
                "-q",
                "score",
                str(path),
                "--inplace",
                "-s",
                "cytolytic_activity_rooney2015,ifng_ayers2017",
                "--null",
                "matched",
                "--n-null",
                "20",
            ]
        )
        == 0
    )
    out = tmp_path / "out.h5ad"
    assert (
        main(
            [
                "-q",
                "score",
                str(path),
                "-s",
                "cytolytic_activity_rooney2015",
                *[str(out) if m == "OUT" else m for m in mode],
            ]
        )
        == 0
    )
    result = ad.read_h5ad(path if "--inplace" in mode else out)
    assert [c for c in result.obs if c.startswith("immunescape_")] == ["immunescape_cytolytic_activity_rooney2015"]
    assert list(result.obsm) == ["immunescape"]
    assert list(result.uns["immunescape"]["removed_previous"]["obs"]) == ["immunescape_ifng_ayers2017"]


# --------------------------------------------------------------------------- logging and warnings
def test_messages_follow_scanpy_verbosity(panel):
    stream = io.StringIO()
    before_file, before_level = sc.settings.logfile, sc.settings.verbosity
    sc.settings.logfile = stream
    try:
        sc.settings.verbosity = 1
        ie.tl.score(panel, "cytolytic_activity_rooney2015")
        assert stream.getvalue() == ""
        sc.settings.verbosity = 4
        ie.tl.score(panel, "cytolytic_activity_rooney2015")
        assert "added obsm['immunescape'] (1 signatures, method ucell)" in stream.getvalue()
    finally:
        sc.settings.logfile, sc.settings.verbosity = before_file, before_level


def test_cli_gives_back_the_library_logging(panel, tmp_path):
    path = tmp_path / "panel.h5ad"
    panel.write_h5ad(path)
    assert main(["-q", "score", str(path), "-s", "cytolytic_activity_rooney2015", "--inplace"]) == 0
    logger = logging.getLogger("immunescape")
    ours = [type(h).__name__ for h in logger.handlers if type(h).__module__ == "immunescape._logging"]
    assert logger.propagate is False and ours == [
        "_ScanpyVerbosity"
    ]  # pytest >= 9.2 may add capture handlers of its own


def test_cli_warnings_are_one_line(tmp_path):
    cells = ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=60, seed=1)
    path = tmp_path / "cells.h5ad"
    cells.write_h5ad(path)
    from tests.test_cli import run

    done = run(
        "classify", str(path), "--sample-key", "sample", "--celltype-key", "cell_type", "-o", str(tmp_path / "c.csv")
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "Warning" in line or "warning:" in line]
    assert warned and all(line.startswith("immunescape: warning") for line in warned), done.stderr
    assert ".py:" not in done.stderr and "warnings.warn" not in done.stderr and "table = classify" not in done.stderr


# --------------------------------------------------------------------------- pandas return types
def test_inplace_false_returns_pandas(panel):
    plain = ie.tl.score(panel, "cytolytic_activity_rooney2015", inplace=False)
    assert isinstance(plain, pd.DataFrame) and "immunescape" not in panel.obsm
    tested = ie.tl.score(panel, "cytolytic_activity_rooney2015", null="analytic", method="wmean", inplace=False)
    assert isinstance(tested, dict) and list(tested) == ["score", "z", "pval", "padj"]
    assert all(isinstance(t, pd.DataFrame) and t.index.equals(panel.obs_names) for t in tested.values())
    calls = ie.tl.classify(panel, inplace=False)
    assert isinstance(calls, pd.DataFrame) and "immunescape_class" not in panel.uns


# --------------------------------------------------------------------------- CLI help
def _actions(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, (*path, name))
        else:
            yield path, action, parser


def test_every_cli_option_has_help_and_shows_its_default():
    for path, action, parser in _actions(_parser()):
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        where = f"immunescape {' '.join(path)} {action.option_strings or action.dest}"
        assert action.help and len(action.help) > 8, f"{where} has no help"
        if (
            action.option_strings
            and action.default not in (None, False, True, [])
            and action.default != argparse.SUPPRESS
        ):
            text = parser.format_help()
            assert f"default: {action.default}" in " ".join(text.split()), (
                f"{where} hides its default {action.default!r}"
            )


def test_cli_method_choices_come_from_the_registry():
    from immunescape.methods import method_names

    for path, action, _ in _actions(_parser()):
        if "--method" in action.option_strings:
            assert list(action.choices) == method_names(), path
            assert all(m in action.help for m in method_names())
    assert "gsva" in method_names()


# --------------------------------------------------------------------------- classify on single cells
@pytest.fixture(scope="module")
def cells_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "cells.h5ad"
    ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=60, seed=2).write_h5ad(path)
    return path


def test_classify_refuses_single_cells_without_a_sample_key():
    cells = ie.datasets.simulate_tumor(n_samples=4, cells_per_sample=60, seed=2)
    with pytest.raises(ie.InputError, match="look like single cells.*aggregate"):
        ie.tl.classify(cells)
    with pytest.warns(ie.DataWarning, match="each of the 240 rows as a sample"):
        calls = ie.tl.classify(cells, rows_are_samples=True, inplace=False)
    assert len(calls) == cells.n_obs
    embedded = ie.pp.pseudobulk(cells, "sample")
    embedded.obsm["X_umap"] = np.zeros((embedded.n_obs, 2))
    with pytest.raises(ie.InputError, match="X_umap"):
        ie.tl.classify(embedded)


@pytest.mark.parametrize("command", ["classify", "report"])
def test_cli_checks_every_key_before_any_work(cells_file, tmp_path, capsys, command):
    out = str(tmp_path / ("o.csv" if command == "classify" else "o.html"))
    cases = [
        ([], "looks like single cells", 2),
        (["--sample-key", "smaple"], "Did you mean 'sample'", 2),
        (["--sample-key", "sample", "--celltype-key", "celltype"], "'cell_type'", 2),
        (["--sample-key", "sample", "--layer", "normalised"], "--layer 'normalised' is not in", 2),
        (["--sample-key", "sample", "--reference", "missing.json"], "--reference 'missing.json'", 2),
        (["--sample-key", "sample", "--rows-are-samples"], "contradict", 2),
        (["--sample-key", "sample", "-m", "ucel"], "invalid choice", 2),
    ]
    for extra, message, code in cases:
        assert main([command, str(cells_file), "-o", out, *extra]) == code, extra
        err = capsys.readouterr().err
        assert message in err and "added obsm" not in err, (extra, err)  # refused before scoring
    assert ad.read_h5ad(cells_file).obsm.keys() == set()


def test_cli_rows_are_samples_says_so(cells_file, tmp_path, capsys):
    assert main(["classify", str(cells_file), "-o", str(tmp_path / "c.csv"), "--rows-are-samples"]) == 0
    err = capsys.readouterr().err
    assert "treating each of the 360 rows as a sample" in err
    assert len(pd.read_csv(tmp_path / "c.csv", index_col=0)) == 360


# --------------------------------------------------------------------------- provenance
def test_provenance_is_true_to_its_sources():
    iobr = ie.signatures.get("t_cell_exhaustion_iobr50")
    assert ie.signatures.get("t_cell_dysfunction_tide_iobr50") is iobr  # the old name still works
    assert "TIDE" not in iobr.meta["title"] and "IOBR" in iobr.meta["title"]
    assert iobr.meta["source"]["doi"] == "10.3389/fimmu.2021.687975"
    gep = ie.signatures.get("tis_gep_ayers2017")
    assert (
        gep.weighted and "deliberately left null" not in gep.meta["notes"] and "NOT verified" not in gep.meta["notes"]
    )
    assert "easier" in gep.meta["source"]["checked_against"]
    for name in ie.signatures.list_signatures().index:
        source = ie.signatures.get(name).meta["source"]
        assert source.get("checked_against"), f"{name}: say what the list was checked against"
        if source.get("via"):
            assert "intermediary" in source["checked_against"] or "source authors" in source["checked_against"], name


def test_results_record_the_signature_library_version(panel):
    ie.tl.score(panel, "cytolytic_activity_rooney2015")
    assert panel.uns["immunescape"]["versions"]["immunescape signature library"] == ie.signatures.library_version()
    cells = ie.datasets.simulate_tumor(n_samples=3, cells_per_sample=60, seed=3)
    ie.tl.score(cells, "immune_escape", min_coverage=0.3)
    samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    assert (
        samples.uns["immunescape_samples"]["versions"]["immunescape signature library"]
        == ie.signatures.library_version()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ie.tl.classify(samples)
    assert (
        samples.uns["immunescape_class"]["versions"]["immunescape signature library"] == ie.signatures.library_version()
    )
