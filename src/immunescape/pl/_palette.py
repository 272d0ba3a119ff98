"""The colours and groupings every plot and the report share: one definition per category.

Immune context, Bagaev TME class and escape hallmark have fixed colours (the same sample is the same
colour in the heatmap, the profile and the report); any other categorical follows scanpy: category
order from the categorical, colours from ``adata.uns[f"{key}_colors"]`` when they match, else
scanpy's default palettes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

#: Immune context (pathologists' inflamed / excluded / desert): warm for T cells in the tumour, blue for none.
CONTEXT_COLOURS = {
    "inflamed": "#c0392b",
    "excluded": "#e69f00",
    "desert": "#3b75af",
    "indeterminate": "#9e9e9e",
}
#: Bagaev et al. 2021 TME classes: immune-enriched (fibrotic or not), fibrotic, depleted.
BAGAEV_COLOURS = {
    "IE": "#d6604d",
    "IE/F": "#8e2a3c",
    "F": "#4d9221",
    "D": "#4393c3",
    "not assessed": "#bdbdbd",
}
#: The "three Cs" hallmarks of immune evasion (Galassi et al. 2024): a called mechanism takes its hallmark's colour.
HALLMARK_COLOURS = {
    "camouflage": "#7b3294",
    "coercion": "#e66101",
    "cytoprotection": "#1b7837",
}
NOT_CALLED = "#dddddd"
MISSING = "#f5f5f5"

#: Fixed palettes by column name (obs column or calls column).
FIXED = {
    "immune_context": CONTEXT_COLOURS,
    "immune context": CONTEXT_COLOURS,
    "immunescape_class": CONTEXT_COLOURS,
    "bagaev_class": BAGAEV_COLOURS,
    "immunescape_class_bagaev_class": BAGAEV_COLOURS,
    "Bagaev class": BAGAEV_COLOURS,
}


def is_called(value) -> bool:
    """A call cell of :func:`~immunescape.tl.classify` (True, False or NaN; numpy's bool after a CSV
    round trip) read as called or not."""
    return isinstance(value, (bool, np.bool_)) and bool(value)


def mechanism_colour(mechanism: str) -> str:
    """The colour of a called escape mechanism: that of its hallmark."""
    from ..tl._classify import MECHANISMS

    return HALLMARK_COLOURS.get(MECHANISMS[mechanism].hallmark, "#555555")


def _default_palette(n: int) -> list[str]:
    from scanpy.plotting import palettes

    if n <= 20:
        return list(palettes.default_20)
    if n <= 28:
        return list(palettes.default_28)
    return [palettes.default_102[i % len(palettes.default_102)] for i in range(n)]


def category_colours(
    values: pd.Series | Iterable, key: str | None = None, uns: Mapping | None = None
) -> tuple[list[str], dict[str, str]]:
    """Categories in display order and a colour for each.

    Order: the categorical's categories (present ones only), else fixed palette order for known keys,
    else sorted. Colours: the fixed palette for ``key`` (context, Bagaev class; also for any column
    whose values are all context or all Bagaev labels), then ``uns[f"{key}_colors"]`` when it has
    one colour per category (scanpy's convention), then scanpy's default palette.

    Examples
    --------
    >>> import pandas as pd
    >>> order, colours = category_colours(pd.Series(["desert", "inflamed"]), "immune_context")
    >>> order, colours["inflamed"]
    (['inflamed', 'desert'], '#c0392b')
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values))
    present = set(series.dropna().astype(str))
    fixed = FIXED.get(key or "", {})
    # a column of context or Bagaev labels under another name keeps their colours (unless uns has its own)
    like = next((pal for pal in (CONTEXT_COLOURS, BAGAEV_COLOURS) if present and present <= set(pal)), {})
    stored: dict[str, str] = {}
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = [str(c) for c in series.cat.categories]
        colours = (uns or {}).get(f"{key}_colors") if key else None
        if colours is not None and len(colours) == len(categories):
            stored = dict(zip(categories, (str(c) for c in colours)))
        order = [c for c in categories if c in present]
    elif fixed or like:
        known = fixed or like
        order = [c for c in known if c in present] + sorted(present - set(known))
    else:
        order = sorted(present)
    default = _default_palette(len(order))
    palette = {
        c: fixed.get(c) or stored.get(c) or like.get(c) or default[i % len(default)] for i, c in enumerate(order)
    }
    return order, palette


def context_css() -> str:
    """CSS classes for the report's table rows, from the same context colours (pale tints)."""
    from matplotlib.colors import to_rgb

    rules = []
    for name, colour in CONTEXT_COLOURS.items():
        r, g, b = (int(255 - 0.22 * (255 - 255 * c)) for c in to_rgb(colour))
        rules.append(f".ctx-{name} {{ background: rgb({r},{g},{b}); }}")
    for name, colour in HALLMARK_COLOURS.items():
        rules.append(f".hm-{name} {{ color: {colour}; font-weight: 600; }}")
    return "\n".join(rules)


# Display groups of the heatmap's features ("axes" of immune escape), in display order; the first
# rule whose fragment occurs in a signature's name wins. Pathway footprints group by their category.
AXES: list[tuple[str, tuple[str, ...]]] = [
    ("R-loop", ("rloop",)),
    ("antigen presentation", ("apm_", "mhc1", "MHCI", "MHCII")),
    ("IFN / STING", ("ifn_", "cgas_sting", "ifng", "IFN_score")),
    (
        "metabolism",
        ("glycolysis", "kynurenine", "adenosine", "lactate"),
    ),
    (
        "T-cell dysfunction",
        ("tex_", "exhaustion", "heckpoint", "treg", "Treg", "T_reg"),
    ),
    (
        "myeloid",
        ("tam_", "tan_", "mdsc", "MDSC", "acrophage", "eutrophil", "ranulocyte", "M1_", "CSF1", "stat3", "Protumor"),
    ),
    (
        "exclusion (stroma, TGF-beta, WNT)",
        ("tgfb", "TGFB", "caf_", "CAF", "Matrix", "wnt_", "EMT", "ngiogenesis", "ndothelium", "SERUM_RESPONSE"),
    ),
    (
        "infiltration",
        (
            "cd8_",
            "cytolytic",
            "ffector",
            "T_cell",
            "NK_",
            "B_cells",
            "tis_gep",
            "ayers2017",
            "oactivation",
            "ntitumor",
            "chemokines",
            "LIexpression",
            "Th1",
            "Th2",
        ),
    ),
]
PATHWAY_AXIS = "tumour-intrinsic pathways"
OTHER_AXIS = "other"
# Shown top to bottom in the heatmap: infiltration first, as a pathologist reads a slide.
DISPLAY_ORDER = [
    "infiltration",
    "T-cell dysfunction",
    "myeloid",
    "exclusion (stroma, TGF-beta, WNT)",
    "antigen presentation",
    "IFN / STING",
    "R-loop",
    "metabolism",
    PATHWAY_AXIS,
    OTHER_AXIS,
]


def feature_axis(name: str) -> str:
    """The immune-escape axis a feature (signature score) is shown under.

    Examples
    --------
    >>> feature_axis("cd8_t_effector_mariathasan2018"), feature_axis("tam_spp1_xue2022")
    ('infiltration', 'myeloid')
    """
    for axis, fragments in AXES:
        if any(f in name for f in fragments):
            return axis
    if name.startswith(("progeny_", "hallmark_")):
        return PATHWAY_AXIS
    meta = _signature_meta(name)
    return PATHWAY_AXIS if meta.get("category") == "pathway" else OTHER_AXIS


def _signature_meta(name: str) -> dict:
    """A library signature's file fields; empty for a user feature (frac_*, a custom score)."""
    from .. import signatures
    from .._errors import SignatureError

    try:
        return dict(signatures.get(name).meta)
    except SignatureError:
        return {}


def display_name(name: str) -> str:
    """A signature's title from its file (``name`` itself for a feature with no signature file)."""
    return str(_signature_meta(name).get("title") or name)


def mechanism_name(mechanism: str) -> str:
    """A mechanism as a reader would write it: its rule's label, capitalised, with its direction
    (``"Antigen presentation low"``)."""
    from ..tl._classify import MECHANISMS

    rule = MECHANISMS[mechanism]
    label = rule.label[:1].upper() + rule.label[1:]
    return f"{label} {rule.direction}"
