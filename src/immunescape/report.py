"""A self-contained HTML report: per-sample calls with reasons, heatmap, profiles, coverage, parameters.

Images are inline PNGs (base64) and the page has no external references, so one file can be mailed or
archived. ``immunescape report IN.h5ad --sample-key S -o report.html`` calls :func:`write_report`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from anndata import AnnData

from . import __version__
from ._utils import package_versions
from .io import atomic_write_text

_STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em; color: #222;
  max-width: 1200px; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }
th { background: #f3f3f3; } td.reason { font-size: 0.9em; color: #444; } img { max-width: 100%; }
.inflamed { background: #fde0dd; } .excluded { background: #fff3cd; } .desert { background: #e0ecf8; }
.note { color: #666; font-size: 0.9em; }
"""


def _by_hallmark(row, hallmarks) -> str:
    """A sample's called mechanisms, hallmark by hallmark ('-' when none)."""
    groups = [f"{h}: {html.escape(str(row.get(h, '')))}" for h in hallmarks if str(row.get(h, "") or "")]
    return "<br>".join(groups) or "-"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def build_report(
    samples: AnnData,
    calls: pd.DataFrame,
    *,
    coverage: pd.DataFrame | None = None,
    title: str = "Immune-escape report",
    parameters: dict | None = None,
    max_profiles: int = 24,
) -> str:
    """Return the report as one HTML string (see the module docstring).

    Parameters
    ----------
    samples
        Sample-level AnnData (:func:`immunescape.tl.aggregate`, or a scored bulk AnnData).
    calls
        :func:`immunescape.tl.classify` output for those samples.
    coverage
        A gene-coverage table (:func:`immunescape.pp.coverage`) to show.
    title
        Page title.
    parameters
        Extra parameters to list (method, input file, ...).
    max_profiles
        At most this many per-sample escape profiles are drawn.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from . import pl
    from .tl import HALLMARKS, MECHANISMS

    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>immunescape {__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
        f"{len(calls)} samples. "
        "Immune context from "
        + html.escape(str(calls.attrs.get("context_model", "the context model")))
        + " (fitted on IMvigor210 pathology; each sample read alone). Mechanisms are robust z-scores against "
        + html.escape(str(calls.attrs.get("reference", "the cohort")))
        + ".</p>",
    ]
    counts = calls["immune_context"].value_counts()
    parts.append("<h2>Summary</h2><p>" + ", ".join(f"{html.escape(k)}: {v}" for k, v in counts.items()) + "</p>")
    mech_counts = {m: int((calls[m] == True).sum()) for m in MECHANISMS}  # noqa: E712 (object column of True/False/NaN)
    parts.append(
        "<p>Escape mechanisms called: "
        + ", ".join(f"{m.replace('_', ' ')} {n}" for m, n in mech_counts.items())
        + ".</p>"
    )
    parts.append(
        "<p class='note'>Grouped by the three hallmarks of immune evasion (Galassi et al., Cancer Cell 2024): "
        + "; ".join(
            f"<b>{h}</b> ({html.escape(what)}): "
            + (", ".join(m.replace("_", " ") for m in MECHANISMS if MECHANISMS[m].hallmark == h) or "no mechanism yet")
            for h, what in HALLMARKS.items()
        )
        + ".</p>"
    )

    parts.append(
        "<h2>Samples</h2><table><tr><th>sample</th><th>immune context</th><th>mechanisms by hallmark</th>"
        "<th>Bagaev class</th><th>why</th></tr>"
    )
    for sample, row in calls.iterrows():
        reasons = [row["context_reason"]] + [row[f"{m}_reason"] for m in MECHANISMS if row[m] is True]
        parts.append(
            f"<tr class='{html.escape(str(row['immune_context']))}'><td>{html.escape(str(sample))}</td>"
            f"<td>{html.escape(str(row['immune_context']))}</td><td>{_by_hallmark(row, HALLMARKS)}</td>"
            f"<td>{html.escape(str(row.get('bagaev_class', '')))}</td>"
            f"<td class='reason'>{'<br>'.join(html.escape(str(r)) for r in reasons)}</td></tr>"
        )
    parts.append("</table>")

    samples = samples.copy()
    samples.obs["immune context"] = calls.loc[samples.obs_names, "immune_context"].astype(str)
    parts.append("<h2>Signatures across samples</h2>")
    parts.append(
        f"<img alt='heatmap' src='{_png(pl.heatmap(samples, annotate=['immune context'], cluster=True, show=False))}'>"
    )
    parts.append("<h2>Per-sample profiles</h2>")
    for sample in list(calls.index)[:max_profiles]:
        parts.append(
            f"<img alt='profile {html.escape(str(sample))}' src='{_png(pl.escape_profile(calls, sample, show=False))}'>"
        )
    if len(calls) > max_profiles:
        parts.append(
            f"<p class='note'>{len(calls) - max_profiles} more samples not drawn (max_profiles={max_profiles}).</p>"
        )
    if coverage is not None:
        parts.append("<h2>Gene coverage</h2>")
        parts.append(f"<img alt='coverage' src='{_png(pl.coverage(coverage, show=False))}'>")
    parts.append("<h2>Parameters and versions</h2><table>")
    thresholds = calls.attrs.get("thresholds", {})
    info = {**(parameters or {}), "thresholds": json.dumps(thresholds), **_versions()}
    for key, value in info.items():
        parts.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def _versions() -> dict[str, str]:
    return {f"version {k}": v for k, v in package_versions().items()}


def write_report(path: str | Path, samples: AnnData, calls: pd.DataFrame, *, overwrite: bool = False, **kwargs) -> Path:
    """Build the report and write it atomically to ``path``."""
    atomic_write_text(path, build_report(samples, calls, **kwargs), overwrite=overwrite)
    return Path(path)
