"""The HTML report is one self-contained, well-formed file; the demo produces it; Chromium renders it."""

from __future__ import annotations

import base64
import io
import shutil
import stat
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

import immunescape as ie
from immunescape.cli import main


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.refs, self.stack, self.cells = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            if key in attrs:
                self.refs.append(attrs[key])
        if tag in ("script", "link", "iframe"):
            self.refs.append(f"<{tag}>")
        if tag not in ("img", "br", "meta"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
        self.stack.pop()

    def handle_data(self, data):
        self.cells.append(data)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    import matplotlib

    matplotlib.use("Agg")
    cells = ie.datasets.simulate_tumor(n_samples=8, cells_per_sample=150, seed=12)
    path = tmp_path_factory.mktemp("report") / "cells.h5ad"
    cells.write_h5ad(path)
    out = path.parent / "report.html"
    assert (
        main(["-q", "report", str(path), "--sample-key", "sample", "--celltype-key", "cell_type", "-o", str(out)]) == 0
    )
    return out, cells


def test_report_is_self_contained_and_well_formed(report_file):
    out, cells = report_file
    text = out.read_text()
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.stack == [], "unclosed tags"
    assert all(ref.startswith("data:image/png;base64,") for ref in parser.refs), [
        r for r in parser.refs if not r.startswith("data:")
    ]
    assert "http://" not in text and "https://" not in text
    assert len(parser.images) >= 3
    for src in parser.images:
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()
        assert image.size[0] > 100 and np.asarray(image.convert("L"), dtype=float).std() > 5
    body = " ".join(parser.cells)
    for sample in sorted(cells.obs["sample"].unique()):
        assert sample in body
    assert "robust z" in body and "version scanpy" in body and "thresholds" in body
    assert "Galassi" in text and "camouflage" in text and "coercion" in text and "cytoprotection" in text


def test_outputs_get_normal_permissions(report_file):
    out, _ = report_file
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH  # not mkstemp's 0600


def test_report_renders_in_headless_chromium(report_file, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed here (.ci/run installs it when it can)")
    out, _ = report_file
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            out.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape[0] > 500 and image.std() > 10  # text and colours, not a blank page
