"""A self-contained HTML report: cohort summary, per-sample calls with reasons, heatmap, profiles,
coverage, thresholds and parameters.

Images are inline PNGs (base64) and the page has no external references or scripts, so one file can
be mailed or archived. A table of contents stays at the side while reading (CSS ``position:
sticky``); colours are the package's palette (:mod:`immunescape.pl._palette`), the same as in the
figures. ``immunescape report IN.h5ad --sample-key S -o report.html`` calls :func:`write_report`.
"""

from __future__ import annotations

import base64
import html
import io
import re
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from . import __version__
from ._utils import package_versions
from .io import atomic_write_text
from .pl._palette import (
    BAGAEV_COLOURS,
    CONTEXT_COLOURS,
    NOT_CALLED,
    context_css,
    is_called,
    mechanism_colour,
    mechanism_name,
)

_STYLE = """
* { box-sizing: border-box; }
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 0; color: #222;
  line-height: 1.4; }
.layout { display: flex; align-items: flex-start; max-width: 1380px; margin: 0 auto; }
nav#toc { position: sticky; top: 0; flex: 0 0 210px; max-height: 100vh; overflow-y: auto; padding: 1.2em 1em;
  border-right: 1px solid #e3e3e3; font-size: 0.9em; background: #fafafa; }
nav#toc ol { padding-left: 1.1em; margin: 0.4em 0; } nav#toc li { margin: 0.25em 0; }
nav#toc a { color: #2c5d8f; text-decoration: none; } nav#toc a:hover { text-decoration: underline; }
main { flex: 1 1 auto; min-width: 0; padding: 1em 2em 3em 2em; }
h1 { font-size: 1.5em; margin-top: 0.4em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1em; margin-bottom: 0.3em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #d5d5d5; padding: 3px 7px; vertical-align: top; text-align: left; }
th { background: #f1f1f1; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; }
.note { color: #666; font-size: 0.9em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; vertical-align: -0.1em;
  margin-right: 0.35em; }
.badge { display: inline-block; padding: 0 0.45em; border-radius: 3px; color: white; font-size: 0.85em; }
.bar { display: inline-block; height: 0.75em; background: #8aa8c8; vertical-align: middle; }
details summary { cursor: pointer; color: #2c5d8f; }
.samples a { margin-right: 0.6em; }
.sample-card { border-top: 1px solid #eee; padding-top: 0.5em; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; } .grid > div { flex: 1 1 320px; }
"""

#: The report's sections: anchor and heading, in page order (the table of contents lists them).
SECTIONS = {
    "summary": "Cohort summary",
    "samples": "Samples",
    "heatmap": "Signatures across samples",
    "profiles": "Per-sample profiles",
    "drivers": "Tumour-intrinsic pathways and exclusion",
    "coverage": "Gene coverage",
    "parameters": "Thresholds, parameters and versions",
}


def _esc(value) -> str:
    return html.escape(str(value))


def _anchor(sample) -> str:
    """A stable, valid id for a sample's profile (any label, including spaces and symbols)."""
    return "profile-" + re.sub(r"[^A-Za-z0-9_-]", "_", str(sample)) + f"-{zlib.crc32(str(sample).encode()):08x}"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _swatch(colour: str) -> str:
    return f"<span class='swatch' style='background:{colour}'></span>"


def _badge(label: str, colour: str) -> str:
    return f"<span class='badge' style='background:{colour}'>{_esc(label)}</span>"


def build_report(
    samples: AnnData,
    calls: pd.DataFrame,
    *,
    coverage: pd.DataFrame | None = None,
    title: str = "Immune-escape report",
    parameters: dict | None = None,
    max_profiles: int = 24,
    drivers: pd.DataFrame | str | None = None,
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
        At most this many per-sample escape profiles are drawn (all samples stay in the tables).
    drivers
        A :func:`immunescape.tl.exclusion_drivers` table for the section on tumour-intrinsic
        pathways, or a sentence saying why there is none; default: computed from ``samples`` when
        they hold scored pathway footprints (against the immune context of ``calls``).

    Examples
    --------
    >>> import immunescape as ie
    >>> cells = ie.datasets.simulate_tumor(n_samples=6, cells_per_sample=80, seed=1)
    >>> ie.tl.score(cells, "immune_escape")
    >>> samples = ie.tl.aggregate(cells, "sample", celltype_key="cell_type")
    >>> page = build_report(samples, ie.tl.classify(samples), max_profiles=2)
    >>> page.count("<nav id='toc'>")
    1
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from . import pl

    sections = dict(SECTIONS)
    if coverage is None:
        sections.pop("coverage")
    toc = "".join(f"<li><a href='#{k}'>{_esc(v)}</a></li>" for k, v in sections.items())
    main = [
        f"<h1>{_esc(title)}</h1>",
        f"<p class='note'>immunescape {__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
        f"{len(calls)} samples. Immune context from {_esc(calls.attrs.get('context_model', 'the context model'))} "
        "(fitted on IMvigor210 pathology; each sample read alone). Mechanisms are robust z-scores against "
        f"{_esc(calls.attrs.get('reference', 'the cohort'))}.</p>",
    ]
    main += _summary(calls)
    main += _samples_table(calls)

    samples = samples.copy()
    samples.obs["immune context"] = calls.loc[samples.obs_names, "immune_context"].astype(str)
    main.append(f"<h2 id='heatmap'>{SECTIONS['heatmap']}</h2>")
    main.append(
        "<p class='note'>Each signature scaled across the samples (robust z); strips: immune context, Bagaev "
        "class and the escape mechanisms called (in their hallmark's colour); signatures grouped by axis.</p>"
    )
    figure = pl.heatmap(samples, calls=calls, cluster=True, show=False)
    main.append(f"<img alt='heatmap of signature scores' src='{_png(figure)}'>")

    main.append(f"<h2 id='profiles'>{SECTIONS['profiles']}</h2>")
    drawn = list(calls.index)[:max_profiles]
    main.append(
        "<p class='samples'>Jump to: " + " ".join(f"<a href='#{_anchor(s)}'>{_esc(s)}</a>" for s in drawn) + "</p>"
    )
    for sample in drawn:
        figure = pl.escape_profile(calls, sample, show=False)
        main.append(
            f"<div class='sample-card' id='{_anchor(sample)}'><h3>{_esc(sample)}</h3>"
            f"<img alt='escape profile of {_esc(sample)}' src='{_png(figure)}'></div>"
        )
    if len(calls) > max_profiles:
        main.append(
            f"<p class='note'>{len(calls) - max_profiles} more samples are not drawn (max_profiles={max_profiles}); "
            "their calls and reasons are in the Samples table.</p>"
        )
    main += _drivers_section(samples, calls, drivers)
    if coverage is not None:
        main.append(f"<h2 id='coverage'>{SECTIONS['coverage']}</h2>")
        main.append(
            "<p class='note'>Share of each signature's genes found in the data (as named, or through an alias, "
            "Ensembl id or ortholog); the counts are at the right of each bar.</p>"
        )
        main.append(f"<img alt='gene coverage' src='{_png(pl.coverage(coverage, show=False))}'>")
    main += _parameters(calls, parameters)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_esc(title)}</title>"
        f"<style>{_STYLE}\n{context_css()}</style></head><body><div class='layout'>"
        f"<nav id='toc'><b>Contents</b><ol>{toc}</ol></nav><main>" + "\n".join(main) + "</main></div></body></html>"
    )


def _summary(calls: pd.DataFrame) -> list[str]:
    """Context shares, mechanism frequencies by hallmark, and a small multiple of every profile."""
    from .tl import HALLMARKS, MECHANISMS

    n = max(len(calls), 1)
    parts = [f"<h2 id='summary'>{SECTIONS['summary']}</h2><div class='grid'><div><h3>Immune context</h3>"]
    parts.append("<table><tr><th>context</th><th>samples</th><th>share</th></tr>")
    counts = calls["immune_context"].astype(str).value_counts()
    order = [c for c in CONTEXT_COLOURS if c in counts] + [c for c in counts.index if c not in CONTEXT_COLOURS]
    for context in order:
        share = counts[context] / n
        parts.append(
            f"<tr><td>{_swatch(CONTEXT_COLOURS.get(context, '#cccccc'))}{_esc(context)}</td>"
            f"<td class='num'>{counts[context]}</td><td class='num'>{share:.0%} "
            f"<span class='bar' style='width:{share * 80:.0f}px'></span></td></tr>"
        )
    parts.append("</table>")
    if "bagaev_class" in calls:
        classes = calls["bagaev_class"].astype(str).value_counts()
        parts.append("<h3>Bagaev TME class</h3><table><tr><th>class</th><th>samples</th><th>share</th></tr>")
        for cls in [c for c in BAGAEV_COLOURS if c in classes] + [c for c in classes.index if c not in BAGAEV_COLOURS]:
            parts.append(
                f"<tr><td>{_swatch(BAGAEV_COLOURS.get(cls, '#cccccc'))}{_esc(cls)}</td>"
                f"<td class='num'>{classes[cls]}</td><td class='num'>{classes[cls] / n:.0%}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</div><div><h3>Escape mechanisms called</h3>")
    parts.append("<table><tr><th>hallmark</th><th>mechanism</th><th>samples</th><th>share</th></tr>")
    for hallmark in HALLMARKS:
        members = [m for m in MECHANISMS if MECHANISMS[m].hallmark == hallmark]
        if not members:
            parts.append(
                f"<tr><td class='hm-{hallmark}'>{hallmark}</td><td colspan='3' class='note'>no mechanism yet "
                "(resistance to killing is not scored)</td></tr>"
            )
        for k, m in enumerate(members):
            called = int(calls[m].map(is_called).sum()) if m in calls else 0
            head = f"<td class='hm-{hallmark}' rowspan='{len(members)}'>{hallmark}</td>" if k == 0 else ""
            parts.append(
                f"<tr>{head}<td>{_swatch(mechanism_colour(m))}{_esc(mechanism_name(m))}</td>"
                f"<td class='num'>{called}</td><td class='num'>{called / n:.0%} "
                f"<span class='bar' style='width:{called / n * 80:.0f}px;background:{mechanism_colour(m)}'></span>"
                "</td></tr>"
            )
    parts.append(
        "</table><p class='note'>Hallmarks of immune evasion after Galassi et al., Cancer Cell 2024: "
        + "; ".join(f"<b>{h}</b> {_esc(what)}" for h, what in HALLMARKS.items())
        + ".</p></div></div>"
    )
    parts.append("<h3>Every sample at a glance</h3>")
    parts.append(
        "<p class='note'>One panel per sample: each mechanism's robust z (bars in the hallmark's colour where "
        "called), in the order of the profiles below.</p>"
    )
    parts.append(f"<img alt='profiles of all samples' src='{_png(_small_multiples(calls))}'>")
    return parts


def _small_multiples(calls: pd.DataFrame, columns: int = 6):
    """Every sample's mechanism profile as a small panel (shared axis), titled with its context colour."""
    import matplotlib.pyplot as plt

    from .tl import HALLMARKS, MECHANISMS

    names = [m for h in HALLMARKS for m in MECHANISMS if MECHANISMS[m].hallmark == h]
    names += [m for m in MECHANISMS if m not in names]
    z = calls[[f"{m}_z" for m in names if f"{m}_z" in calls]].apply(pd.to_numeric, errors="coerce")
    reach = float(np.nanmax(np.abs(z.to_numpy()))) if z.size and np.isfinite(z.to_numpy()).any() else 3.0
    reach = max(3.0, min(reach, 8.0)) * 1.05
    rows = int(np.ceil(len(calls) / columns)) or 1
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.0 * columns, 1.9 * rows), sharex=True, sharey=True, squeeze=False
    )
    for ax in axes.ravel()[len(calls) :]:
        ax.axis("off")
    for ax, (sample, row) in zip(axes.ravel(), calls.iterrows()):
        values = [float(row.get(f"{m}_z", np.nan)) for m in names]
        shown = np.clip(np.nan_to_num(values), -reach, reach)
        colours = [mechanism_colour(m) if is_called(row.get(m)) else NOT_CALLED for m in names]
        ax.barh(range(len(names)), shown, color=colours, height=0.75)
        ax.axvline(0, color="grey", linewidth=0.5)
        context = str(row.get("immune_context", ""))
        ax.set_title(
            f"{sample}: {context}", fontsize=7.5, color=CONTEXT_COLOURS.get(context, "#333333"), fontweight="bold"
        )
        ax.set_xlim(-reach, reach)
        ax.tick_params(labelsize=6)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    for ax in axes[:, 0]:
        ax.set_yticks(range(len(names)), [mechanism_name(m) for m in names], fontsize=5.5)
    axes[0, 0].invert_yaxis()
    fig.tight_layout()
    return fig


def _drivers_section(samples: AnnData, calls: pd.DataFrame, drivers) -> list[str]:
    """Which tumour-intrinsic pathway goes with T-cell infiltration and exclusion: forest plot and table."""
    from . import pl
    from ._errors import InputError
    from .tl import exclusion_drivers

    parts = [f"<h2 id='drivers'>{SECTIONS['drivers']}</h2>"]
    if drivers is None:
        try:
            drivers = exclusion_drivers(samples, exclusion=calls["immune_context"])
        except InputError as err:
            drivers = str(err)
    if isinstance(drivers, str):
        return parts + [
            f"<p class='note'>Not computed: {_esc(drivers)} (score the tumour_intrinsic collection with "
            "method='wmean' and aggregate it with the other scores; see ie.tl.exclusion_drivers).</p>"
        ]
    parts.append(
        "<p class='note'>Across samples: each pathway footprint's partial Spearman correlation with T-cell "
        "infiltration and with exclusion (excluded 1, inflamed 0, from the immune context called above), "
        f"with 95% intervals and FDR over the pathways; adjusted for {_esc(drivers['adjusted_for'].iloc[0])}. "
        "An association across samples, not a cause.</p>"
    )
    parts.append(f"<img alt='pathways and exclusion' src='{_png(pl.exclusion_drivers(drivers, show=False))}'>")
    parts.append(
        "<table><tr><th>pathway</th><th>review</th><th>outcome</th><th>rho [95% interval]</th><th>p</th>"
        "<th>FDR</th><th>n</th></tr>"
    )
    for _, row in drivers.iterrows():
        parts.append(
            f"<tr><td>{_esc(row['pathway'])}</td><td>{_esc(row['review'])}</td><td>{_esc(row['outcome'])}</td>"
            f"<td class='num'>{row['rho']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]</td>"
            f"<td class='num'>{row['pval']:.2g}</td><td class='num'>{row['fdr']:.2g}</td>"
            f"<td class='num'>{int(row['n'])}</td></tr>"
        )
    parts.append("</table>")
    return parts


def _samples_table(calls: pd.DataFrame) -> list[str]:
    from .tl import HALLMARKS, MECHANISMS

    parts = [
        f"<h2 id='samples'>{SECTIONS['samples']}</h2>",
        "<table><tr><th>sample</th><th>immune context</th><th>Bagaev class</th><th>mechanisms by hallmark</th>"
        "<th>oncogenic pathways active</th><th>why</th></tr>",
    ]
    for sample, row in calls.iterrows():
        context = str(row["immune_context"])
        bagaev = str(row.get("bagaev_class", ""))
        called = [m for m in MECHANISMS if m in row and is_called(row[m])]
        by_hallmark = "<br>".join(
            f"<span class='hm-{h}'>{h}</span>: "
            + ", ".join(_esc(mechanism_name(m)) for m in called if MECHANISMS[m].hallmark == h)
            for h in HALLMARKS
            if any(MECHANISMS[m].hallmark == h for m in called)
        )
        pathways = [p.strip() for p in str(row.get("pathways_active", "") or "").split(",") if p.strip()]
        reasons = [str(row["context_reason"])] + [
            f"{mechanism_name(m)}: {row[f'{m}_reason']}" for m in called if f"{m}_reason" in row
        ]
        reasons += [str(row.get(f"pathway_{p}_reason", "")) for p in pathways]
        parts.append(
            f"<tr class='ctx-{_esc(context)}'><td>{_esc(sample)}</td>"
            f"<td>{_badge(context, CONTEXT_COLOURS.get(context, '#888888'))} "
            f"{float(row.get('context_confidence', np.nan)):.2f}</td>"
            f"<td>{_badge(bagaev, BAGAEV_COLOURS.get(bagaev, '#888888'))}</td>"
            f"<td>{by_hallmark or '-'}</td><td>{_esc(', '.join(pathways)) or '-'}</td>"
            f"<td><details><summary>{len(reasons)} reason{'s' if len(reasons) != 1 else ''}</summary>"
            + "<br>".join(_esc(r) for r in reasons)
            + "</details></td></tr>"
        )
    parts.append(
        "</table><p class='note'>The number after the context is its confidence (the model's probability "
        "margin); the row tint is the context's colour.</p>"
    )
    return parts


def _parameters(calls: pd.DataFrame, parameters: dict | None) -> list[str]:
    """Thresholds as a table (mechanism, direction, threshold), then parameters and versions."""
    from .tl import MECHANISMS

    thresholds = dict(calls.attrs.get("thresholds", {}))
    per_mechanism = thresholds.pop("mechanisms", {})
    parts = [f"<h2 id='parameters'>{SECTIONS['parameters']}</h2><div class='grid'><div>"]
    parts.append(
        "<h3>Mechanism thresholds</h3><table><tr><th>mechanism</th><th>called when robust z</th>"
        "<th>signatures</th></tr>"
    )
    for m, rule in MECHANISMS.items():
        cut = float(per_mechanism.get(m, rule.threshold))
        sign = ">=" if rule.direction == "high" else "<="
        parts.append(
            f"<tr><td>{_esc(mechanism_name(m))}</td><td class='num'>{sign} {cut:+.2f}</td>"
            f"<td>{_esc(', '.join(rule.features))}</td></tr>"
        )
    parts.append("</table>")
    if thresholds:
        parts.append("<h3>Other thresholds</h3><table><tr><th>name</th><th>value</th></tr>")
        parts += [f"<tr><td>{_esc(k)}</td><td class='num'>{_esc(v)}</td></tr>" for k, v in thresholds.items()]
        parts.append("</table>")
    parts.append("</div><div><h3>Parameters</h3><table><tr><th>name</th><th>value</th></tr>")
    info = {**(parameters or {}), **{k: v for k, v in calls.attrs.items() if k != "thresholds"}}
    parts += [f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in info.items()]
    parts.append("</table><h3>Versions</h3><table><tr><th>package</th><th>version</th></tr>")
    parts += [f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in package_versions().items()]
    parts.append("</table></div></div>")
    return parts


def write_report(path: str | Path, samples: AnnData, calls: pd.DataFrame, *, overwrite: bool = False, **kwargs) -> Path:
    """Build the report and write it atomically to ``path``."""
    atomic_write_text(path, build_report(samples, calls, **kwargs), overwrite=overwrite)
    return Path(path)
