"""Regenerate the figures the README shows (``docs/images/``) from the demo, so a reader sees what
``immunescape demo`` gives.

Usage::

    python scripts/make_docs_images.py            # writes docs/images/*.png

Runs :func:`immunescape.demo.run_demo` in a temporary folder, copies its figures, and, when Debian's
Chromium is installed, a 1400 px wide screenshot of the top of the HTML report.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
#: demo output -> file in docs/images (the README links these names)
FIGURES = {
    "tumour_heatmap.png": "heatmap.png",
    "tumour_profile_P01.png": "escape_profile.png",
    "pbmc_scores.png": "scores.png",
    "tumour_compare.png": "compare.png",
}
REPORT_SHOT = "report.png"


def screenshot(page: Path, out: Path, workdir: Path) -> bool:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium not found: the report screenshot is left as it was", file=sys.stderr)
        return False
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    subprocess.run(
        [
            browser,
            *flags,
            f"--user-data-dir={workdir / 'profile'}",
            f"--screenshot={out}",
            "--window-size=1400,1000",
            "--hide-scrollbars",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return True


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from immunescape.demo import run_demo

    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        run_demo(out)
        for source, target in FIGURES.items():
            shutil.copyfile(out / source, IMAGES / target)
            print(f"docs/images/{target}")
        if screenshot(out / "tumour_report.html", Path(tmp) / REPORT_SHOT, Path(tmp)):
            shutil.copyfile(Path(tmp) / REPORT_SHOT, IMAGES / REPORT_SHOT)
            print(f"docs/images/{REPORT_SHOT}")


if __name__ == "__main__":
    main()
