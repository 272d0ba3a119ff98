from __future__ import annotations

import subprocess
import sys

import pytest

import immunescape as ie
from immunescape.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "immunescape.cli", *args], capture_output=True, text=True, timeout=300)


def test_console_help_and_version():
    out = run("--help")
    assert out.returncode == 0 and "signatures" in out.stdout
    out = run("--version")
    assert out.returncode == 0 and ie.__version__ in out.stdout


def test_signatures_list_shows_library_with_sources(capsys):
    assert main(["signatures", "list"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines()[2:] if line.strip()]
    assert len(rows) >= 25 and "10.1186/s12943" not in text  # the unobtainable Zhang list is not shipped
    assert "10.1172/JCI91190" in text


def test_signatures_show_and_export(tmp_path, capsys):
    assert main(["signatures", "show", "ifng_ayers2017"]) == 0
    assert "CXCL9" in capsys.readouterr().out
    out = tmp_path / "lib.gmt"
    assert main(["signatures", "export", "immune_escape", "-o", str(out)]) == 0
    assert len(ie.signatures.load(out)) == len(ie.signatures.collection("immune_escape"))
    assert main(["signatures", "export", "immune_escape", "-o", str(out)]) == 1  # exists, no --force
    assert main(["signatures", "export", "immune_escape", "-o", str(out), "--force"]) == 0


def test_errors_are_one_line_with_exit_codes(capsys):
    assert main(["signatures", "show", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("immunescape: error: Unknown signature 'nope'") and "Traceback" not in err
    assert main(["no-such-command"]) == 2
    with pytest.raises(ie.SignatureError):
        main(["--debug", "signatures", "show", "nope"])


def test_gmt_export_reads_identically_in_gseapy(tmp_path):
    gseapy = pytest.importorskip("gseapy")
    path = tmp_path / "lib.gmt"
    ie.signatures.to_gmt("immune_escape", path)
    theirs = gseapy.read_gmt(str(path))
    ours = {s.name: s for s in ie.signatures.load(path)}
    for name, genes in theirs.items():
        base, _, part = name.rpartition("_")
        if part in ("UP", "DN") and base in ours:
            assert tuple(genes) == (ours[base].genes_up if part == "UP" else ours[base].genes_down)
        else:
            assert tuple(genes) == ours[name].genes_up
