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
        self.images, self.refs, self.stack, self.cells, self.ids = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
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
    outside = [r for r in parser.refs if not (r.startswith("data:image/png;base64,") or r.startswith("#"))]
    assert not outside  # inline images and in-page links only: no script, no file, no network
    anchors = [r[1:] for r in parser.refs if r.startswith("#")]
    assert anchors and set(anchors) <= set(parser.ids)  # every link of the contents resolves
    assert len(parser.ids) == len(set(parser.ids))
    assert "http://" not in text and "https://" not in text
    assert len(parser.images) >= 3
    for src in parser.images:
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()
        assert image.size[0] > 100 and np.asarray(image.convert("L"), dtype=float).std() > 5
    body = " ".join(parser.cells)
    for sample in sorted(cells.obs["sample"].unique()):
        assert sample in body
    assert "robust z" in body and "scanpy" in body and "Mechanism thresholds" in body
    assert '"mechanisms"' not in text and '{"' not in text  # thresholds as tables, not a JSON dump
    for section in ("Cohort summary", "Samples", "Per-sample profiles", "Thresholds, parameters and versions"):
        assert section in body
    assert body.index("Cohort summary") < body.index("Per-sample profiles")  # the summary first
    assert "Galassi" in text and "camouflage" in text and "coercion" in text and "cytoprotection" in text


def test_outputs_get_normal_permissions(report_file):
    out, _ = report_file
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH  # not mkstemp's 0600


def _chromium(tmp_path, *args: str) -> str:
    """Run Debian's headless Chromium (flags as this machine's notes give them); its standard output."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed here (.ci/run installs it when it can)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    run = subprocess.run(
        [browser, *flags, f"--user-data-dir={tmp_path / 'profile'}", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return run.stdout


def test_report_renders_in_headless_chromium(report_file, tmp_path):
    out, _ = report_file
    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", out.as_uri())
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape[0] > 500 and image.std() > 10  # text and colours, not a blank page


_LAYOUT_CHECK = """
<script>
window.addEventListener("load", () => {
  const width = document.documentElement.scrollWidth;
  const links = [...document.querySelectorAll("nav#toc a")].map(a => a.getAttribute("href"));
  const broken = links.filter(h => !document.getElementById(h.slice(1)));
  const nav = document.querySelector("nav#toc");
  const images = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length;
  window.scrollTo(0, document.body.scrollHeight / 2);
  const navTop = nav.getBoundingClientRect().top;
  const wide = [...document.images].filter(i => i.getBoundingClientRect().right > window.innerWidth + 1).length;
  const result = {width, links: links.length, broken, position: getComputedStyle(nav).position, navTop, images, wide};
  document.body.setAttribute("data-layout", JSON.stringify(result));
});
</script>
"""


def test_report_lays_out_at_1400px_with_a_working_table_of_contents(report_file, tmp_path):
    """In headless Chromium at 1400 px: no horizontal scrolling, every image loaded and inside the
    window, the table of contents sticky (still at the top half-way down) and every link resolving."""
    import json
    import re

    out, _ = report_file
    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text().replace("</body>", _LAYOUT_CHECK + "</body>"))
    dom = _chromium(tmp_path, "--window-size=1400,900", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found, "the layout probe did not run"
    layout = json.loads(found.group(1).replace("&quot;", '"'))
    assert layout["width"] <= 1400, layout
    assert layout["links"] >= 5 and layout["broken"] == [], layout
    assert layout["position"] == "sticky" and abs(layout["navTop"]) < 1, layout
    assert layout["images"] == 0 and layout["wide"] == 0, layout


def test_odd_sample_labels_keep_the_page_valid_and_its_links_unique():
    """Labels with markup, spaces, quotes and near-duplicates: escaped, one id per profile, every link resolving."""
    import matplotlib

    matplotlib.use("Agg")
    from immunescape.report import build_report

    cells = ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=60, seed=3)
    odd = ["<b>x</b>", "a b", "a_b", "q'uote\"", "é/ü", "P 05"]
    mapping = dict(zip(sorted(cells.obs["sample"].unique()), odd))
    cells.obs["sample"] = cells.obs["sample"].map(mapping).astype("category")
    ie.tl.score(cells, "immune_escape")
    samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    calls = ie.tl.classify(samples)
    page = build_report(samples, calls, max_profiles=6)
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert parser.stack == [] and "<b>x</b>" not in page
    anchors = [r[1:] for r in parser.refs if r.startswith("#")]
    assert set(anchors) <= set(parser.ids) and len(parser.ids) == len(set(parser.ids))
    assert sum(a.startswith("profile-") for a in set(anchors)) == 6  # a b and a_b do not collide
