"""The signature library and user gene sets: one type, many formats.

Built-in signatures are YAML files (``signatures/`` in the repository, ``immunescape/_signatures`` in
the wheel). User sets load from YAML, JSON, GMT, dicts and decoupler-style long DataFrames into the
same :class:`Signature` type.

Examples
--------
>>> import immunescape as ie
>>> ie.signatures.get("ifng_ayers2017").genes
('IDO1', 'CXCL10', 'CXCL9', 'HLA-DRA', 'STAT1', 'IFNG')
>>> len(ie.signatures.load("immune_escape")) > 20
True
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ._errors import SignatureError
from ._utils import closest

_list = builtins.list

CATEGORIES = ("escape_mechanism", "immune_context", "cell_state", "cell_type", "pathway")
COMPARTMENTS = ("any", "malignant", "T", "NK", "B", "myeloid", "fibroblast", "endothelial")
ORGANISMS = ("human", "mouse")
_REQUIRED = (
    "name",
    "title",
    "category",
    "organism",
    "compartment",
    "high_means",
    "genes_up",
    "source",
    "exact",
    "exact_note",
    "method_in_source",
    "collections",
)
_OPTIONAL = ("genes_down", "weights", "aliases", "symbol_updates", "notes", "pathway")
_GMT_UP = re.compile(r"^(?P<base>.+?)[_.](UP|up|Up)$")
_GMT_DOWN = re.compile(r"^(?P<base>.+?)[_.](DN|DOWN|dn|down|Dn|Down)$")


@dataclass(frozen=True)
class Signature:
    """A gene signature: genes up (and optionally down), optional weights, and provenance.

    Parameters
    ----------
    name
        Identifier used as the score's column name.
    genes_up
        Genes whose HIGH expression raises the score.
    genes_down
        Genes whose HIGH expression lowers the score (signed signatures).
    weights
        Optional signed weight per gene (model coefficients); when given, its signs define up/down.
    meta
        Everything else from the signature file: title, category, compartment, source, ...

    Examples
    --------
    >>> sig = Signature("my_set", ("CD8A", "GZMB"), ("FOXP3",))
    >>> sig.signed, sig.gene_weights()
    (True, {'CD8A': 1.0, 'GZMB': 1.0, 'FOXP3': -1.0})
    """

    name: str
    genes_up: tuple[str, ...]
    genes_down: tuple[str, ...] = ()
    weights: Mapping[str, float] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SignatureError("A signature needs a non-empty string name.")
        if "/" in self.name or "\x00" in self.name or self.name.strip() in (".", ".."):
            raise SignatureError(
                f"Signature name {self.name!r} cannot be a score column in an .h5ad file ('/' separates "
                "HDF5 groups); rename it, e.g. with '_' for '/'."
            )
        object.__setattr__(self, "genes_up", _clean_genes(self.genes_up, self.name))
        object.__setattr__(self, "genes_down", _clean_genes(self.genes_down, self.name))
        if self.weights is not None:
            weights = {str(g).strip(): w for g, w in dict(self.weights).items()}
            weights = dict(zip(weights, _weight_numbers(self.name, weights.values())))
            bad = [g for g, w in weights.items() if not pd.notna(w) or w in (float("inf"), float("-inf"))]
            if bad:
                raise SignatureError(f"Signature {self.name!r}: weights must be finite numbers (check {bad[:5]}).")
            object.__setattr__(self, "weights", weights)
            missing = [g for g in (*self.genes_up, *self.genes_down) if g not in weights]
            if missing:
                raise SignatureError(f"Signature {self.name!r}: genes without a weight: {missing[:10]}.")
            wrong = [g for g in self.genes_up if weights[g] < 0] + [g for g in self.genes_down if weights[g] > 0]
            if wrong:
                raise SignatureError(
                    f"Signature {self.name!r}: the sign of a weight sets its direction, but {wrong[:5]} sit in the "
                    "other list. Put negative-weight genes in genes_down, or give only weights."
                )
        overlap = set(self.genes_up) & set(self.genes_down)
        if overlap:
            raise SignatureError(f"Signature {self.name!r}: genes both up and down: {sorted(overlap)[:10]}.")
        if not self.genes_up and not self.genes_down:
            raise SignatureError(f"Signature {self.name!r} has no genes.")

    @property
    def genes(self) -> tuple[str, ...]:
        """All genes, up first then down."""
        return self.genes_up + self.genes_down

    @property
    def signed(self) -> bool:
        """Whether the signature has genes whose expression lowers the score."""
        return bool(self.genes_down)

    @property
    def weighted(self) -> bool:
        """Whether per-gene weights other than +1/-1 were given."""
        return self.weights is not None

    def gene_weights(self) -> dict[str, float]:
        """Weight per gene: the given weights, else +1 for up and -1 for down."""
        if self.weights is not None:
            return {g: self.weights[g] for g in self.genes}
        return {**dict.fromkeys(self.genes_up, 1.0), **dict.fromkeys(self.genes_down, -1.0)}

    def to_dict(self) -> dict[str, Any]:
        """The signature as a plain mapping in the YAML schema."""
        genes: dict[str, Any] = {"genes_up": _list(self.genes_up)}
        if self.genes_down:
            genes["genes_down"] = _list(self.genes_down)
        if self.weights is not None:
            genes["weights"] = dict(self.weights)
        meta = {k: v for k, v in self.meta.items() if k != "name"}
        head = {k: meta.pop(k) for k in ("title", "category", "organism", "compartment", "high_means") if k in meta}
        return {"name": self.name, **head, **genes, **meta}


def _clean_genes(genes: Iterable[Any] | None, name: str) -> tuple[str, ...]:
    if genes is None:
        return ()
    if isinstance(genes, str):
        raise SignatureError(f"Signature {name!r}: genes must be a list, not the single string {genes!r}.")
    if not isinstance(genes, Iterable) or isinstance(genes, Mapping):
        raise SignatureError(f"Signature {name!r}: genes must be a list of gene names, got {genes!r:.80}.")
    out = []
    for g in genes:
        if not isinstance(g, str) or not g.strip():
            raise SignatureError(f"Signature {name!r}: gene entries must be non-empty strings, got {g!r}.")
        out.append(g.strip())
    return tuple(dict.fromkeys(out))


def _weight_numbers(name: str, values: Iterable[Any]) -> list[float]:
    """The weights as floats, or a SignatureError naming the signature (a text or an object is no weight)."""
    try:
        return [float(w) for w in values]
    except (TypeError, ValueError) as err:
        raise SignatureError(f"Signature {name!r}: weights must be numbers ({err}).") from err


def from_weights(name: str, weights: Mapping[str, float], meta: Mapping[str, Any] | None = None) -> Signature:
    """Build a weighted signature; positive weights go up, negative down, zero weights are dropped."""
    weights = {g: w for g, w in zip(weights, _weight_numbers(name, weights.values())) if w != 0.0}
    up = tuple(g for g, w in weights.items() if w > 0)
    down = tuple(g for g, w in weights.items() if w < 0)
    return Signature(name, up, down, weights, dict(meta or {}))


# --------------------------------------------------------------------------- schema
def validate(entry: Mapping[str, Any], where: str = "signature") -> None:
    """Check one built-in signature mapping against the library schema.

    Raises
    ------
    SignatureError
        Naming the file and every field that is missing or wrong.
    """
    problems = [f"missing field {k!r}" for k in _REQUIRED if k not in entry]
    unknown = set(entry) - set(_REQUIRED) - set(_OPTIONAL)
    problems += [f"unknown field {k!r}" for k in sorted(unknown)]
    checks = [
        ("category", lambda v: v in CATEGORIES, f"one of {CATEGORIES}"),
        ("compartment", lambda v: v in COMPARTMENTS, f"one of {COMPARTMENTS}"),
        ("organism", lambda v: v in ORGANISMS, f"one of {ORGANISMS}"),
        ("exact", lambda v: isinstance(v, bool), "true or false"),
        ("genes_up", lambda v: isinstance(v, _list) and all(isinstance(g, str) and g for g in v), "a list of symbols"),
        (
            "genes_down",
            lambda v: isinstance(v, _list) and all(isinstance(g, str) and g for g in v),
            "a list of symbols",
        ),
        (
            "weights",
            lambda v: isinstance(v, dict) and all(isinstance(w, (int, float)) for w in v.values()),
            "gene: number",
        ),
        (
            "collections",
            lambda v: isinstance(v, _list) and all(isinstance(c, str) and c.isidentifier() and c != "all" for c in v),
            "a list of collection names (identifiers, not 'all')",
        ),
        (
            "source",
            lambda v: isinstance(v, dict) and bool(v.get("citation")) and bool(v.get("doi") or v.get("pmid")),
            "citation plus doi or pmid",
        ),
        ("high_means", lambda v: isinstance(v, str) and len(v) > 10, "a sentence"),
        ("exact_note", lambda v: isinstance(v, str) and bool(v), "a sentence"),
        ("title", lambda v: isinstance(v, str) and bool(v), "a string"),
        (
            "pathway",
            lambda v: isinstance(v, dict) and isinstance(v.get("review"), str) and isinstance(v.get("resource"), str),
            "review: the review's pathway, resource: the resource's own name",
        ),
    ]
    for key, ok, expected in checks:
        if key in entry and not ok(entry[key]):
            problems.append(f"field {key!r} must be {expected}, got {entry[key]!r:.80}")
    if "genes_up" in entry and not (entry.get("genes_up") or entry.get("genes_down")):
        problems.append("no genes")
    if problems:
        raise SignatureError(f"{where}: " + "; ".join(problems) + ".")


# --------------------------------------------------------------------------- built-in library
def library_path() -> Path:
    """Folder holding the built-in signature YAML files (wheel or source checkout)."""
    packaged = resources.files("immunescape") / "_signatures"
    if packaged.is_dir():
        return Path(str(packaged))
    source_tree = Path(__file__).resolve().parents[2] / "signatures"
    if source_tree.is_dir():
        return source_tree
    raise SignatureError("The built-in signature library is missing from this installation; reinstall immunescape.")


@lru_cache(maxsize=1)
def _library() -> dict[str, Signature]:
    out: dict[str, Signature] = {}
    for path in sorted(library_path().glob("*.yaml")):
        entry = yaml.safe_load(path.read_text())
        validate(entry, where=str(path.name))
        out[entry["name"]] = _from_mapping(entry["name"], entry)
    return out


@lru_cache(maxsize=1)
def library_version() -> str:
    """Version of the built-in signature library with the SHA-256 of its files, recorded in every result.

    The version is in ``signatures/VERSION`` beside the files; a test fails when the files change and
    the checksum there does not, so an edited library always carries a new version.

    Examples
    --------
    >>> library_version().startswith("20")
    True
    """
    return f"{read_version_file(library_path())['version']} (sha256 {library_checksum()[:12]})"


def read_version_file(folder: str | Path) -> dict[str, str]:
    """The ``version`` and ``sha256`` fields of a library folder's ``VERSION`` file."""
    lines = (Path(folder) / "VERSION").read_text().splitlines()
    return {key.strip(): value.strip() for key, sep, value in (line.partition(":") for line in lines) if sep}


def library_checksum(folder: str | Path | None = None) -> str:
    """SHA-256 over the library's YAML files (names and bytes, in name order)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder or library_path()).glob("*.yaml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    return {alias: sig.name for sig in _library().values() for alias in sig.meta.get("aliases", [])}


@lru_cache(maxsize=1)
def collection_names() -> tuple[str, ...]:
    """The collections the library's files declare (their ``collections`` field), then ``"all"``.

    A new collection is a word in some files' ``collections`` lists; nothing else changes.

    Examples
    --------
    >>> collection_names()[-1], "immune_escape" in collection_names()
    ('all', True)
    """
    declared = dict.fromkeys(c for sig in _library().values() for c in sig.meta.get("collections", ()))
    return (*declared, "all")


def collection(name: str) -> list[Signature]:
    """Signatures of a named collection: ``immune_escape``, ``bagaev2021``, ``thorsson2018`` or ``all``.

    Examples
    --------
    >>> [s.name for s in collection("thorsson2018")][:2]
    ['thorsson2018_CHANG_CORE_SERUM_RESPONSE_UP', 'thorsson2018_CSF1_response']
    """
    if name not in collection_names():
        raise SignatureError(
            f"Unknown collection {name!r}; choose from {collection_names()}." + closest(name, collection_names())
        )
    sigs = _list(_library().values())
    return sigs if name == "all" else [s for s in sigs if name in s.meta.get("collections", ())]


def get(name: str) -> Signature:
    """One built-in signature by name (or by one of its aliases).

    Examples
    --------
    >>> get("tam_bagaev2021").name  # an alias of the Bagaev panel member
    'bagaev2021_Macrophages'
    """
    lib = _library()
    key = _aliases().get(name, name)
    if key not in lib:
        raise SignatureError(
            f"Unknown signature {name!r}. `immunescape signatures list` shows the library."
            + closest(name, [*lib, *_aliases()])
        )
    return lib[key]


def list_signatures(collection_name: str = "all") -> pd.DataFrame:
    """The library as a table: one row per signature with its category, size and source.

    Examples
    --------
    >>> table = list_signatures()
    >>> {"category", "n_genes", "doi", "exact"} <= set(table.columns)
    True
    """
    rows = []
    for sig in collection(collection_name):
        m = sig.meta
        rows.append(
            {
                "name": sig.name,
                "title": m.get("title"),
                "category": m.get("category"),
                "compartment": m.get("compartment"),
                "n_genes": len(sig.genes),
                "signed": sig.signed,
                "weighted": sig.weighted,
                "exact": m.get("exact"),
                "collections": ",".join(m.get("collections", [])),
                "doi": m.get("source", {}).get("doi"),
                "pmid": m.get("source", {}).get("pmid"),
                "citation": m.get("source", {}).get("citation"),
            }
        )
    return pd.DataFrame(rows).set_index("name")


# --------------------------------------------------------------------------- loading user sets
SignatureLike = str | Path | Signature | Mapping | pd.DataFrame | Sequence


def load(source: SignatureLike, *, fmt: str | None = None) -> list[Signature]:
    """Load signatures from any supported source into a list of :class:`Signature`.

    Parameters
    ----------
    source
        A built-in name, alias or collection (comma-separated names allowed); a path to a ``.yaml``,
        ``.yml``, ``.json`` or ``.gmt`` file; a dict ``{name: genes}``, ``{name: {"up": [...],
        "down": [...]}}`` or ``{name: {gene: weight}}``; a decoupler-style DataFrame with ``source``,
        ``target`` and optional ``weight`` columns; a :class:`Signature`; or a list of any of these.
    fmt
        Force a file format (``yaml``, ``json`` or ``gmt``) instead of guessing from the suffix.

    Examples
    --------
    >>> [s.name for s in load({"cyto": ["GZMA", "PRF1"], "mixed": {"up": ["CD8A"], "down": ["FOXP3"]}})]
    ['cyto', 'mixed']
    """
    if isinstance(source, Signature):
        return [source]
    if isinstance(source, pd.DataFrame):
        return _from_long_frame(source)
    if isinstance(source, Path) or (isinstance(source, str) and (fmt or _is_file_source(source))):
        return load_file(source, fmt=fmt)
    if isinstance(source, str):
        out: list[Signature] = []
        for part in filter(None, (p.strip() for p in source.split(","))):
            out.extend(collection(part) if part in collection_names() else [get(part)])
        if not out:
            raise SignatureError("No signature named: pass a name, a collection or a file.")
        return _unique(out)
    if isinstance(source, Mapping):
        if not source:
            raise SignatureError("No signatures given: the mapping is empty ({name: [genes], ...} expected).")
        if _single_entry(source):
            return [_from_mapping(str(source["name"]), source)]
        return _unique([_from_mapping(str(name), body) for name, body in source.items()])
    if isinstance(source, Sequence):
        if not len(source):
            raise SignatureError("No signatures given: the list is empty.")
        return _unique([sig for item in source for sig in load(item)])
    raise SignatureError(f"Cannot load signatures from a {type(source).__name__}; see ie.signatures.load's docstring.")


def named_explicitly(source: SignatureLike) -> set[str]:
    """Names of the signatures ``source`` names one by one (not through a collection, a file or a table).

    :func:`immunescape.tl.score` drops members of a collection that the data barely cover, but
    raises for a signature the user asked for by name.

    Examples
    --------
    >>> sorted(named_explicitly("immune_escape,cytolytic_activity_rooney2015"))
    ['cytolytic_activity_rooney2015']
    """
    if isinstance(source, Signature):
        return {source.name}
    if isinstance(source, str) and not _is_file_source(source):
        return {
            get(part).name
            for part in filter(None, (p.strip() for p in source.split(",")))
            if part not in collection_names()
        }
    if isinstance(source, Mapping) and _single_entry(source):
        return {str(source["name"])}
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        return set().union(*(named_explicitly(item) for item in source)) if len(source) else set()
    return set()


def _single_entry(source: Mapping) -> bool:
    """A mapping that is one signature's entry (``{"name": ..., "genes_up": ...}``), not ``{name: genes}``."""
    return "name" in source and ("genes_up" in source or "genes" in source or "weights" in source)


def _is_file_source(text: str) -> bool:
    """A string names a file when it is not a built-in name or collection and looks like a path; a file
    in the working folder never shadows a collection or signature of the same name."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    builtin = parts and all(p in collection_names() or p in _library() or p in _aliases() for p in parts)
    return not builtin and _looks_like_path(text)


#: the formats a signature file may have, by its suffix (without the dot)
FILE_FORMATS = ("yaml", "yml", "json", "gmt", "txt")


def _looks_like_path(text: str) -> bool:
    return text.lower().endswith(tuple(f".{f}" for f in FILE_FORMATS)) or Path(text).is_file()


def _unique(sigs: list[Signature]) -> list[Signature]:
    seen: dict[str, Signature] = {}
    for sig in sigs:
        if sig.name in seen and seen[sig.name] != sig:
            raise SignatureError(f"Two different signatures are named {sig.name!r}; rename one.")
        seen[sig.name] = sig
    return _list(seen.values())


def _from_mapping(name: str, body: Any) -> Signature:
    if isinstance(body, Signature):
        return body
    if isinstance(body, str):
        raise SignatureError(f"Signature {name!r}: expected a list of genes, got the string {body!r}.")
    if isinstance(body, Mapping):
        keys = set(body)
        if keys & {"genes_up", "genes_down", "up", "down", "genes", "weights"}:
            meta = {
                k: v for k, v in body.items() if k not in {"genes_up", "genes_down", "up", "down", "genes", "weights"}
            }
            up = body.get("genes_up", body.get("up", body.get("genes")))
            down = body.get("genes_down", body.get("down"))
            weights = body.get("weights")
            if weights is not None and not isinstance(weights, Mapping):
                raise SignatureError(f"Signature {name!r}: 'weights' must map gene -> number.")
            if weights is not None and up is None and down is None:
                return from_weights(name, weights, meta)
            return Signature(name, () if up is None else up, () if down is None else down, weights, meta)
        try:  # {gene: weight}
            weights = {str(g): float(w) for g, w in body.items()}
        except (TypeError, ValueError) as err:
            raise SignatureError(f"Signature {name!r}: could not read {dict(body)!r:.120} as gene -> weight.") from err
        return from_weights(name, weights)  # its own errors: weights not finite, none left
    if isinstance(body, Iterable):
        return Signature(name, tuple(body))
    raise SignatureError(f"Signature {name!r}: cannot read genes from a {type(body).__name__}.")


def _from_long_frame(frame: pd.DataFrame) -> list[Signature]:
    missing = {"source", "target"} - set(frame.columns)
    if missing:
        raise SignatureError(
            f"A signature DataFrame needs 'source' and 'target' columns (decoupler style); missing {sorted(missing)}."
        )
    out = []
    for name, group in frame.groupby("source", sort=False):
        if "weight" in frame.columns:
            out.append(from_weights(str(name), dict(zip(group["target"].astype(str), group["weight"]))))
        else:
            out.append(Signature(str(name), tuple(group["target"].astype(str))))
    return out


# Limits of what a signature file may make the parser build: far above any real gene-set library
# (all of MSigDB is ~35,000 sets, ~4 million genes), far below what a hostile file could ask for.
MAX_FILE_BYTES = 200 * 2**20
MAX_NODES = 20_000_000  # YAML/JSON values after aliases are expanded
MAX_DEPTH = 64


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicated keys and documents whose aliases expand beyond ``MAX_NODES``."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node, depth: int = 0, sizes: dict | None = None) -> int:
    """Number of values ``node`` stands for once every alias is expanded (memoised: shared nodes count once per use)."""
    sizes = {} if sizes is None else sizes
    if id(node) in sizes:
        return sizes[id(node)]
    if depth > MAX_DEPTH:
        raise SignatureError(f"values nested more than {MAX_DEPTH} levels deep; a signature file needs three.")
    children = node.value if isinstance(node.value, _list) else []
    total = 1
    for child in children:
        for part in child if isinstance(child, tuple) else (child,):
            total += _expanded_size(part, depth + 1, sizes)
            if total > MAX_NODES:
                raise SignatureError(
                    f"the file expands to more than {MAX_NODES:,} values (YAML aliases?); refusing to build it."
                )
    sizes[id(node)] = total
    return total


def _parse_yaml(text: str):
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _json_object(pairs):
    keys = [k for k, _ in pairs]
    repeated = next((k for k in keys if keys.count(k) > 1), None)
    if repeated is not None:
        raise SignatureError(f"the key {repeated!r} appears twice")
    return dict(pairs)


def load_file(path: str | Path, *, fmt: str | None = None) -> list[Signature]:
    """Load a YAML, JSON or GMT signature file (see :func:`load`)."""
    path = Path(path)
    if not path.is_file():
        raise SignatureError(f"Signature file {str(path)!r} does not exist.")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SignatureError(
            f"{path}: {path.stat().st_size / 2**20:,.0f} MiB is larger than any signature library "
            f"({MAX_FILE_BYTES // 2**20} MiB at most); is this the right file?"
        )
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FILE_FORMATS:
        raise SignatureError(
            f"{path}: not a signature file by its name; signature files end in .yaml, .yml, .json or .gmt "
            "(rename it, or pass fmt= in Python)."
        )
    try:  # strict: replacement characters would become part of signature and gene names
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SignatureError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at position {err.start}); save it as UTF-8."
        ) from None
    if fmt == "gmt" or fmt == "txt":
        return read_gmt(text, where=str(path))
    try:
        data = json.loads(text, object_pairs_hook=_json_object) if fmt == "json" else _parse_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        line = line + 1 if line is not None else getattr(err, "lineno", "?")
        raise SignatureError(f"{path}: not valid {fmt.upper()} (line {line}): {str(err).splitlines()[0]}") from err
    except SignatureError as err:
        raise SignatureError(f"{path}: {err}") from err
    except RecursionError as err:
        raise SignatureError(f"{path}: values nested too deeply to be a signature file.") from err
    if data is None:
        raise SignatureError(f"{path}: the file is empty.")
    if not isinstance(data, (Mapping, _list)):
        raise SignatureError(f"{path}: expected a mapping or a list of signatures, got {type(data).__name__}.")
    try:
        return load(data)
    except SignatureError as err:
        raise SignatureError(f"{path}: {err}") from err


def read_gmt(text: str, where: str = "GMT") -> list[Signature]:
    """Parse GMT text; ``NAME_UP`` / ``NAME_DN`` pairs become one signed signature ``NAME``."""
    sets: dict[str, tuple[str, list[str]]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) < 3:
            raise SignatureError(
                f"{where}, line {lineno}: a GMT line needs name<TAB>description<TAB>genes...; "
                f"found {len(fields)} field(s)."
            )
        name = fields[0].strip()
        genes = [g.strip() for g in fields[2:] if g.strip()]
        if not name or not genes:
            raise SignatureError(f"{where}, line {lineno}: empty set name or no genes.")
        if name in sets:
            raise SignatureError(f"{where}, line {lineno}: set {name!r} appears twice.")
        sets[name] = (fields[1], genes)
    if not sets:
        raise SignatureError(f"{where}: no gene sets found.")
    out, used = [], set()
    for name, (desc, genes) in sets.items():
        if name in used:
            continue
        up, down = _GMT_UP.match(name), _GMT_DOWN.match(name)
        if up or down:
            base = (up or down).group("base")
            partner = next(
                (
                    n
                    for n in sets
                    if n != name
                    and (_GMT_DOWN if up else _GMT_UP).match(n)
                    and (_GMT_DOWN if up else _GMT_UP).match(n).group("base") == base
                ),
                None,
            )
            if partner:
                up_name, down_name = (name, partner) if up else (partner, name)
                out.append(
                    Signature(base, tuple(sets[up_name][1]), tuple(sets[down_name][1]), meta={"description": desc})
                )
                used |= {name, partner}
                continue
        out.append(Signature(name, tuple(genes), meta={"description": desc}))
        used.add(name)
    return out


def to_gmt(signatures: SignatureLike, path: str | Path | None = None) -> str:
    """Write signatures as GMT text (and to ``path`` if given); signed sets become ``NAME_UP``/``NAME_DN``.

    Weights do not survive GMT; use YAML (``to_yaml``) to keep them.

    Examples
    --------
    >>> to_gmt({"cyt": ["GZMA", "PRF1"]}).split()  # name, description, genes (tab-separated)
    ['cyt', 'immunescape', 'GZMA', 'PRF1']
    """
    lines = []
    for sig in load(signatures):
        desc = sig.meta.get("source", {}).get("doi") or sig.meta.get("description") or "immunescape"
        if sig.signed:
            lines.append("\t".join([f"{sig.name}_UP", str(desc), *sig.genes_up]))
            lines.append("\t".join([f"{sig.name}_DN", str(desc), *sig.genes_down]))
        else:
            lines.append("\t".join([sig.name, str(desc), *sig.genes_up]))
    text = "\n".join(lines) + "\n"
    if path is not None:
        from .io import atomic_write_text

        atomic_write_text(path, text)
    return text


def to_yaml(signatures: SignatureLike, path: str | Path | None = None) -> str:
    """Write signatures as a YAML list in the library schema (weights and provenance kept)."""
    text = yaml.safe_dump([s.to_dict() for s in load(signatures)], sort_keys=False, allow_unicode=True, width=100)
    if path is not None:
        from .io import atomic_write_text

        atomic_write_text(path, text)
    return text


list = list_signatures
