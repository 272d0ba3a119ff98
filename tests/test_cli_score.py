"""`immunescape score` end to end on real files."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import immunescape as ie
from immunescape.cli import main

from ._synthetic import synthetic


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture()
def pbmc_file(tmp_path, pbmc):
    path = tmp_path / "pbmc.h5ad"
    pbmc.write_h5ad(path)
    return path


SIGS = "bagaev2021_NK_cells,bagaev2021_T_cells,cytolytic_activity_rooney2015"


def test_score_writes_h5ad_with_the_notebook_results(pbmc_file, tmp_path, pbmc):
    out = tmp_path / "out.h5ad"
    before = sha(pbmc_file)
    assert (
        main(["-q", "score", str(pbmc_file), "-o", str(out), "-s", SIGS, "-m", "aucell", "--min-coverage", "0.3"]) == 0
    )
    scored = ad.read_h5ad(out)
    expected = ie.tl.score(pbmc, SIGS, method="aucell", min_coverage=0.3, inplace=False)
    np.testing.assert_array_equal(scored.obsm["immunescape"].to_numpy(), expected.to_numpy())
    assert "immunescape_bagaev2021_NK_cells" in scored.obs and scored.uns["immunescape"]["method"] == "aucell"
    assert sha(pbmc_file) == before  # input untouched


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_scores_only(pbmc_file, tmp_path, suffix):
    out = tmp_path / f"scores{suffix}"
    assert (
        main(
            [
                "-q",
                "score",
                str(pbmc_file),
                "--scores-only",
                str(out),
                "-s",
                SIGS,
                "--min-coverage",
                "0.3",
                "-p",
                "max_rank=400",
            ]
        )
        == 0
    )
    table = (
        pd.read_parquet(out)
        if suffix == ".parquet"
        else pd.read_csv(out, sep="," if suffix == ".csv" else "\t", index_col=0)
    )
    assert table.shape == (700, 3) and list(table.columns)[0] == "bagaev2021_NK_cells"


def test_score_with_null_writes_z_p_and_padj(pbmc_file, tmp_path, pbmc):
    out, table = tmp_path / "out.h5ad", tmp_path / "scores.csv"
    args = [
        "-q",
        "score",
        str(pbmc_file),
        "-o",
        str(out),
        "--scores-only",
        str(table),
        "-s",
        SIGS,
        "--min-coverage",
        "0.3",
        "--null",
        "matched",
        "--n-null",
        "30",
        "--seed",
        "4",
    ]
    assert main(args) == 0
    expected = ie.tl.score(pbmc, SIGS, min_coverage=0.3, null="matched", n_null=30, random_state=4, inplace=False)
    scored = ad.read_h5ad(out)
    for suffix, frame in zip(("", "_z", "_pval", "_padj"), expected.values()):
        np.testing.assert_array_equal(scored.obsm["immunescape" + suffix].to_numpy(), frame.to_numpy())
    written = pd.read_csv(table, index_col=0)
    first = expected["score"].columns[0]
    assert list(written.columns[:4]) == [*expected["score"].columns, f"{first}_z"]
    np.testing.assert_allclose(written[f"{first}_padj"], expected["padj"].iloc[:, 0])


def test_score_with_analytic_null(pbmc_file, tmp_path, pbmc):
    out = tmp_path / "out.h5ad"
    args = [
        "-q",
        "score",
        str(pbmc_file),
        "-o",
        str(out),
        "-s",
        SIGS,
        "--min-coverage",
        "0.3",
        "-m",
        "wmean",
        "--null",
        "analytic",
    ]
    assert main(args) == 0
    expected = ie.tl.score(pbmc, SIGS, method="wmean", min_coverage=0.3, null="analytic", inplace=False)
    scored = ad.read_h5ad(out)
    for suffix, frame in zip(("", "_z", "_pval", "_padj"), expected.values()):
        np.testing.assert_array_equal(scored.obsm["immunescape" + suffix].to_numpy(), frame.to_numpy())
    assert scored.uns["immunescape"]["details"]["null"]["kind"] == "analytic"


def test_backed_output_equals_in_memory_output(tmp_path):
    adata, sets = synthetic(9, n_cells=400, n_genes=250)
    src = tmp_path / "in.h5ad"
    adata.write_h5ad(src)
    ie.signatures.to_yaml(sets, tmp_path / "sets.yaml")
    a, b = tmp_path / "a.h5ad", tmp_path / "b.h5ad"
    common = ["-s", str(tmp_path / "sets.yaml"), "-m", "mean", "--min-coverage", "0", "--chunk-size", "37"]
    assert main(["-q", "score", str(src), "-o", str(a), *common]) == 0
    assert main(["-q", "score", str(src), "-o", str(b), "--backed", *common]) == 0
    A, B = ad.read_h5ad(a), ad.read_h5ad(b)
    np.testing.assert_array_equal(A.obsm["immunescape"].to_numpy(), B.obsm["immunescape"].to_numpy())
    np.testing.assert_array_equal(B.X.toarray(), adata.X.toarray())  # X copied, not rewritten
    assert list(B.obs.columns) == list(A.obs.columns)


def test_inplace_updates_the_input_atomically(pbmc_file):
    assert main(["-q", "score", str(pbmc_file), "--inplace", "-s", SIGS, "--min-coverage", "0.3"]) == 0
    assert "immunescape" in ad.read_h5ad(pbmc_file).obsm
    assert not [p for p in os.listdir(pbmc_file.parent) if p.endswith(".part")]


def test_usage_and_data_errors_exit_codes(pbmc_file, tmp_path, capsys):
    assert main(["score", str(pbmc_file)]) == 2  # no destination
    assert "say where the scores go" in capsys.readouterr().err
    assert main(["score", str(pbmc_file), "-o", str(tmp_path / "x.h5ad"), "--inplace"]) == 2
    assert main(["score", str(pbmc_file), "-o", str(tmp_path / "x.h5ad"), "-p", "oops"]) == 2
    assert main(["score", str(tmp_path / "missing.h5ad"), "-o", str(tmp_path / "x.h5ad")]) == 1
    (tmp_path / "text.h5ad").write_text("not hdf5")
    assert main(["score", str(tmp_path / "text.h5ad"), "-o", str(tmp_path / "x.h5ad")]) == 1
    assert "not an HDF5" in capsys.readouterr().err
    existing = tmp_path / "exists.h5ad"
    existing.write_text("keep me")
    assert main(["score", str(pbmc_file), "-o", str(existing), "-s", SIGS]) == 1
    assert existing.read_text() == "keep me"
    assert main(["score", str(pbmc_file), "-o", str(tmp_path / "y.h5ad"), "-m", "ucel"]) == 2
    assert "invalid choice: 'ucel'" in capsys.readouterr().err
    assert not (tmp_path / "y.h5ad").exists()


def test_failure_during_write_leaves_nothing(pbmc_file, tmp_path, monkeypatch):
    import anndata.io

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # as if Ctrl-C arrived in the middle of writing

    monkeypatch.setattr(anndata.io, "write_elem", broken)
    before = sha(pbmc_file)
    out = tmp_path / "out.h5ad"
    assert main(["-q", "score", str(pbmc_file), "-o", str(out), "--backed", "-s", SIGS, "--min-coverage", "0.3"]) == 130
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    assert sha(pbmc_file) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_killed_run_leaves_no_output(pbmc_file, tmp_path, sig):
    out = tmp_path / "out.h5ad"
    before = sha(pbmc_file)
    env = {**os.environ, "IMMUNESCAPE_TEST_PAUSE_BEFORE_RENAME": "30"}  # hold the finished temporary file
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "immunescape.cli",
            "-q",
            "score",
            str(pbmc_file),
            "-o",
            str(out),
            "--backed",
            "-s",
            SIGS,
            "--min-coverage",
            "0.3",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120
    while not [p for p in os.listdir(tmp_path) if p.endswith(".part")]:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the run ended before writing (exit {proc.poll()}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    proc.send_signal(sig)  # mid-write: the temporary file exists, the output does not yet
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    assert sha(pbmc_file) == before


def test_interrupt_inside_the_quiet_stderr_cleanup_gives_descriptor_2_back(monkeypatch):
    # the killed-run test's rare failure (exit 130, empty stderr): the signal landed in gc.collect() while a
    # write held descriptor 2 on /dev/null, so the hold's cleanup stopped before giving it back
    import gc

    from immunescape import io

    before = os.fstat(2)
    monkeypatch.setattr(io.HOLD_NATIVE_STDERR, "is_set", lambda: True)

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(gc, "collect", interrupted)
    with pytest.raises(KeyboardInterrupt), io._native_stderr_held():
        assert os.fstat(2).st_ino != before.st_ino  # held: /dev/null
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert not io._QUIETED
