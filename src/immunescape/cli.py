"""Command line: a thin layer over the public functions a notebook calls.

Exit codes: 0 success, 1 data or input error, 2 usage error. Errors print one line; ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._errors import ImmunescapeError, ImmunescapeWarning, UsageError
from ._logging import follow_scanpy, use_stderr
from .io import check_outputs

logger = logging.getLogger("immunescape")


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help (unless the help already states it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or isinstance(action.default, bool) or action.default == argparse.SUPPRESS:
            return text
        if "default" in text or not action.option_strings:
            return text
        if isinstance(action.default, list) and not action.default:
            return text
        return f"{text} (default: %(default)s)"


def _add_parser(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(name, formatter_class=_HelpFormatter, **kwargs)


def _parser() -> argparse.ArgumentParser:
    from ._null import NULL_KINDS
    from .methods import method_names

    methods = method_names()
    parser = argparse.ArgumentParser(
        prog="immunescape",
        description="Score transcriptomes with curated tumour immune-escape signatures.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"immunescape {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sig = _add_parser(sub, "signatures", help="list, show or export the signature library")
    sig_sub = sig.add_subparsers(dest="action", metavar="ACTION")
    lst = _add_parser(sig_sub, "list", help="table of signatures")
    lst.add_argument("-c", "--collection", default="all", help="immune_escape, bagaev2021, thorsson2018 or all")
    lst.add_argument("--format", choices=["table", "csv", "tsv"], default="table", help="output format")
    show = _add_parser(sig_sub, "show", help="one signature with its genes and source")
    show.add_argument("name", help="signature name or alias")
    exp = _add_parser(sig_sub, "export", help="write signatures as GMT or YAML")
    exp.add_argument("signatures", nargs="?", default="all", help="names, a collection, or a file (default: all)")
    exp.add_argument("-o", "--output", help="output file (default: standard output)")
    exp.add_argument("--format", choices=["gmt", "yaml"], help="default: from the output suffix, else gmt")
    exp.add_argument("--force", action="store_true", help="overwrite an existing output file")

    cov = _add_parser(sub, "coverage", help="gene coverage of signatures on an .h5ad file")
    cov.add_argument("input", help=".h5ad file")
    cov.add_argument("-s", "--signatures", default="immune_escape", help=_SIGNATURES_HELP)
    _matrix_arguments(cov)

    sc_ = _add_parser(
        sub,
        "score",
        help="score an .h5ad file with signatures",
        description=(
            "Score every cell/sample of IN.h5ad. Writes OUT.h5ad (-o), a score table (--scores-only), or updates "
            "the input (--inplace); outputs appear only when complete."
        ),
    )
    sc_.add_argument("input", help="input .h5ad file")
    sc_.add_argument("-o", "--output", help="output .h5ad with scores in obsm/obs/uns")
    _scoring_arguments(sc_, methods, signatures="immune_escape", min_coverage=0.5)
    sc_.add_argument(
        "--chunk-size", type=_whole(1), help="cells per chunk; results do not depend on it (default: 10000)"
    )
    sc_.add_argument(
        "--n-jobs",
        type=_whole(1, also=(-1,)),
        help="threads of the numba kernels, -1 for all; results do not depend on it (default: all cores)",
    )
    sc_.add_argument("--seed", type=_whole(0), default=0, help="random_state of the method and of the null")
    sc_.add_argument(
        "--null",
        choices=list(NULL_KINDS),
        help="also test each score against random gene sets matched gene by gene in mean expression (z, "
        "p-value, BH-adjusted p-value per cell); 'analytic': the exact moments of uniform draws within "
        f"expression bins instead of n-null draws ({', '.join(method_names(null='analytic'))}) (default: no test)",
    )
    sc_.add_argument("--n-null", type=_whole(2), default=100, help="random gene sets per signature with --null")
    sc_.add_argument(
        "--null-bins",
        type=_whole(2),
        help="expression bins of the null genes (default: 200 quantiles of mean expression, at least 20 genes each)",
    )
    sc_.add_argument(
        "--adjust",
        choices=["signatures", "cells"],
        default="signatures",
        help="Benjamini-Hochberg of the null's p-values across the signatures of each cell or across cells "
        "(default: signatures)",
    )
    sc_.add_argument("--key-added", default="immunescape", help="obsm key of the scores (obs columns KEY_<signature>)")
    sc_.add_argument("--backed", action="store_true", help="stream X from disk instead of loading it")
    sc_.add_argument("--scores-only", metavar="TABLE", help="write only the score table (.csv, .tsv or .parquet)")
    sc_.add_argument("--inplace", action="store_true", help="add the scores to the input file itself")
    sc_.add_argument("--force", action="store_true", help="overwrite existing outputs")
    sc_.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="method parameter, repeatable, e.g. -p max_rank=1000 (see ie.tl.methods())",
    )

    cl = _add_parser(
        sub,
        "classify",
        help="per-sample immune context and escape mechanisms",
        description=(
            "Classify each sample of IN.h5ad. Single cells: give --sample-key (and --celltype-key); bulk: every obs is "
            "a "
            "sample. Cells/samples are scored first (-s, -m) unless obsm[--key] already holds scores."
        ),
    )
    _sample_arguments(cl, methods, output_help="samples.csv (table of calls) or samples.h5ad (sample AnnData)")
    cl.add_argument(
        "--mode",
        choices=["scores", "pseudobulk"],
        default="scores",
        help="per-sample features from the cells' scores, or from scoring each sample's pseudobulk",
    )
    cl.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a threshold, repeatable, e.g. --threshold checkpoint_high=1.5 (see ie.tl.Thresholds)",
    )

    rp = _add_parser(sub, "report", help="self-contained HTML report: calls with reasons, heatmap, profiles, coverage")
    _sample_arguments(rp, methods, output_help="report.html")

    dr = _add_parser(
        sub,
        "drivers",
        help="which tumour-intrinsic pathway goes with T-cell exclusion across samples (ie.tl.exclusion_drivers)",
    )
    _sample_arguments(dr, methods, output_help="table (.csv/.tsv/.parquet)")
    dr.add_argument(
        "--pathway-key",
        default="pathways",
        help="obsm key of the tumour_intrinsic footprints (scored with wmean first when absent)",
    )
    dr.add_argument(
        "--exclusion",
        help="obs column of the exclusion axis: labels (excluded / inflamed, e.g. pathologists' calls) or numbers; "
        "default: the immune context classify calls",
    )
    dr.add_argument(
        "--adjust",
        default="auto",
        help="covariates: 'auto' (stromal content in bulk, nothing for single-cell aggregates), 'none', "
        "or comma-separated features",
    )
    dr.add_argument("--plot", help="also draw the forest plot (.png/.pdf/.svg)")

    en = _add_parser(sub, "enrich", help="pre-ranked GSEA of signatures between groups (scanpy + gseapy)")
    en.add_argument("input", help="input .h5ad file (log-normalised)")
    en.add_argument("--groupby", required=True, help="obs column defining the groups")
    en.add_argument("--groups", help="comma-separated groups to test (default: all)")
    en.add_argument("--reference", default="rest", help="group the others are compared with, or 'rest'")
    en.add_argument("-s", "--signatures", default="immune_escape", help=_SIGNATURES_HELP)
    en.add_argument("-o", "--output", required=True, help="table (.csv/.tsv/.parquet)")
    en.add_argument("--plot", help="also draw the table (.png/.pdf/.svg)")
    en.add_argument("--permutations", type=_whole(1), default=1000, help="gseapy permutations per test")
    en.add_argument("--seed", type=_whole(0), default=0, help="random_state of the permutations")
    en.add_argument(
        "--min-coverage", type=_fraction, default=0.5, help="signatures below this share of genes found are left out"
    )
    en.add_argument("--layer", help="layer to rank genes on (default: X, or .raw when present)")
    en.add_argument("--use-raw", action="store_true", default=None, help="rank genes on adata.raw")
    en.add_argument("--force", action="store_true", help="overwrite existing outputs")

    demo = _add_parser(sub, "demo", help="run the main job on the bundled example data")
    demo.add_argument("-o", "--outdir", default="immunescape_demo", help="output folder")
    return parser


_SIGNATURES_HELP = "collection, names (comma separated), or a .yaml/.gmt file"


def _whole(lowest: int, *, also: tuple[int, ...] = ()):
    """argparse type: a whole number >= ``lowest`` (or one of ``also``), refused in one line otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < lowest and value not in also:
            allowed = f" (or {', '.join(map(str, also))})" if also else ""
            raise argparse.ArgumentTypeError(f"must be {lowest} or more{allowed}, got {value}")
        return value

    return parse


def _fraction(text: str) -> float:
    """argparse type: a share between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _matrix_arguments(parser: argparse.ArgumentParser) -> None:
    """Which matrix and gene names to read, as scanpy's layer / use_raw / gene_symbols."""
    parser.add_argument("--layer", help="layer to read (default: X, or .raw when present)")
    parser.add_argument(
        "--use-raw", action="store_true", default=None, help="read adata.raw (default: when present and no --layer)"
    )
    parser.add_argument(
        "--no-raw", dest="use_raw", action="store_false", default=None, help="read X even if .raw exists"
    )
    parser.add_argument("--gene-symbols", help="var column holding gene symbols (default: var_names)")


def _scoring_arguments(
    parser: argparse.ArgumentParser, methods: list[str], *, signatures: str, min_coverage: float
) -> None:
    """The signatures, method and gene-coverage options of every command that scores."""
    parser.add_argument("-s", "--signatures", default=signatures, help=_SIGNATURES_HELP)
    parser.add_argument(
        "-m",
        "--method",
        default="ucell",
        choices=methods,
        metavar="METHOD",
        help="scoring method: " + ", ".join(methods),
    )
    _matrix_arguments(parser)
    parser.add_argument(
        "--min-coverage",
        type=_fraction,
        default=min_coverage,
        help="smallest share of a signature's genes that must be found in the data",
    )
    parser.add_argument(
        "--low-coverage",
        choices=["auto", "drop", "raise"],
        default="auto",
        help="signatures below --min-coverage: drop them with one warning, raise an error, or 'auto' "
        "(drop members of a collection or file, raise for a signature named one by one)",
    )


def _sample_arguments(parser: argparse.ArgumentParser, methods: list[str], *, output_help: str) -> None:
    """Arguments shared by the per-sample commands (classify, report)."""
    parser.add_argument("input", help="input .h5ad file")
    parser.add_argument("-o", "--output", required=True, help=output_help)
    parser.add_argument("--sample-key", help="obs column with the sample of each cell; required for single cells")
    parser.add_argument(
        "--rows-are-samples",
        action="store_true",
        help="classify every row as a sample even if the rows look like single cells",
    )
    parser.add_argument("--celltype-key", help="obs column with cell-type labels (default: marker-based compartments)")
    _scoring_arguments(parser, methods, signatures="immune_escape,bagaev2021", min_coverage=0.3)
    parser.add_argument("--key", default="immunescape", help="obsm key of existing scores (scored first when absent)")
    parser.add_argument(
        "--min-cells", type=_whole(1), default=10, help="fewest cells of a compartment per sample to average it"
    )
    parser.add_argument(
        "--reference",
        help="what mechanisms are judged against: 'shipped' (the reference distributions "
        "shipped with the context model; default for bulk), 'cohort' (the samples themselves; default for "
        "single cells), a saved profile (.json) or a samples .h5ad",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``immunescape`` console script."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.WARNING, format="%(message)s", stream=sys.stderr
    )  # other libraries: warnings only
    use_stderr(logging.WARNING if args.quiet else logging.INFO)
    _interrupt_on_sigterm()
    from . import io

    io.WRITE_FAILED.clear()
    if argv is None:  # the console script, not an in-process caller
        io.HOLD_NATIVE_STDERR.set()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            code = _run(args)
    finally:
        io.HOLD_NATIVE_STDERR.clear()
        io.release_native_stderr()
        follow_scanpy()  # an in-process caller (a test, a notebook) gets the library's logging back
    if io.WRITE_FAILED.is_set() and argv is None:  # HDF5's exit-time cleanup can crash on a failed file: skip it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(args: argparse.Namespace) -> int:
    from .io import INTERRUPTED, WRITTEN

    WRITTEN.clear()
    try:
        code = _COMMANDS[args.command](args)
        if INTERRUPTED.is_set():  # the interrupt was swallowed somewhere, but no output was renamed into place
            raise KeyboardInterrupt
        return code
    except ImmunescapeError as err:
        if args.debug:
            raise
        print(f"immunescape: error: {_one_line(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        from .io import release_native_stderr

        release_native_stderr()  # the message below must reach the terminal, wherever the signal landed
        INTERRUPTED.clear()  # handled: later writes in this process must not see a stale flag
        written = ", ".join(map(str, WRITTEN)) if WRITTEN else ""
        print(
            f"immunescape: interrupted after writing {written}."
            if written
            else "immunescape: interrupted; no output was written.",
            file=sys.stderr,
        )
        return 130


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr: the message, not the source line that raised it."""
    origin = "" if issubclass(category, ImmunescapeWarning) else f" ({category.__name__})"
    print(f"immunescape: warning{origin}: {_one_line(message)}", file=sys.stderr)


def _interrupt_on_sigterm() -> None:
    """SIGINT and SIGTERM: flag the interruption (checked before any output is renamed into place) and
    raise KeyboardInterrupt, so an ended run removes its temporary files and leaves no output."""
    import signal

    from .io import INTERRUPTED

    INTERRUPTED.clear()

    def handler(signum, frame):
        INTERRUPTED.set()
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (e.g. called from a notebook worker): leave signals alone
        pass


def _cmd_signatures(args: argparse.Namespace) -> int:
    from . import signatures as sigs

    if args.action in (None, "list"):
        table = sigs.list_signatures(getattr(args, "collection", "all"))
        fmt = getattr(args, "format", "table")
        if fmt == "table":
            import pandas as pd

            with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 48):
                print(table[["category", "compartment", "n_genes", "exact", "doi", "title"]].to_string())
        else:
            print(table.to_csv(sep="," if fmt == "csv" else "\t"), end="")
        return 0
    if args.action == "show":
        import yaml

        print(yaml.safe_dump(sigs.get(args.name).to_dict(), sort_keys=False, allow_unicode=True, width=100), end="")
        return 0
    suffix = Path(args.output or "").suffix.lower()
    fmt = args.format or ("yaml" if suffix in (".yaml", ".yml") else "gmt")
    # a name of another format (cells.h5ad, sets.json) would get GMT text: refused before anything is replaced
    if args.output and suffix not in {"gmt": ("", ".gmt", ".txt"), "yaml": ("", ".yaml", ".yml")}[fmt]:
        raise UsageError(
            f"-o writes {fmt.upper()} and must end in "
            + (".gmt or .txt" if fmt == "gmt" else ".yaml or .yml")
            + f", got {args.output!r}."
        )
    writer = sigs.to_yaml if fmt == "yaml" else sigs.to_gmt
    if args.output:
        from .io import atomic_path

        check_outputs([args.output], inputs=[_file_argument(args.signatures)], overwrite=args.force)
        with atomic_path(args.output, overwrite=args.force) as tmp:
            writer(args.signatures, tmp)
        logger.info("wrote %s", args.output)
    else:
        print(writer(args.signatures), end="")
    return 0


def _cmd_coverage(args: argparse.Namespace) -> int:
    from .io import read_h5ad
    from .pp import coverage

    adata = read_h5ad(args.input, backed=True)
    table = coverage(adata, args.signatures, layer=args.layer, use_raw=args.use_raw, gene_symbols=args.gene_symbols)
    print(table.to_string())
    return 0


def _method_params(pairs: list[str], option: str = "--param") -> dict:
    import yaml

    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"{option} takes NAME=VALUE, got {pair!r}.")
        if name in params:
            raise UsageError(f"{option} {name} is given twice ({name}={params[name]!r} and {pair!r}); give it once.")
        try:
            params[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UsageError(
                f"{option} {pair!r}: cannot read {value!r} as a value; quote text, e.g. NAME='text'."
            ) from None
    return params


def _cmd_score(args: argparse.Namespace) -> int:
    from ._utils import check_key
    from .io import all_or_nothing, check_column_names, check_updatable, exclusive_update

    if not (args.output or args.scores_only or args.inplace):
        raise UsageError("say where the scores go: -o OUT.h5ad, --scores-only TABLE.csv, or --inplace.")
    if args.inplace and args.output:
        raise UsageError("use either --inplace or -o, not both.")
    if args.output and Path(args.output).suffix.lower() != ".h5ad":
        raise UsageError(
            f"-o writes an AnnData file and must end in .h5ad, got {args.output!r}; a table goes to --scores-only."
        )
    _usage(check_key, args.key_added, "--key-added")
    check_outputs(
        [args.output, args.scores_only], inputs=[args.input, _file_argument(args.signatures)], overwrite=args.force
    )
    if args.inplace:
        check_updatable(args.input)
    params = _method_params(args.param)
    names = _signature_names(args.signatures)
    if args.output or args.inplace:
        check_column_names(names, args.key_added)
    with contextlib.ExitStack() as stack:
        if args.inplace:
            stack.enter_context(exclusive_update(args.input))
        stack.enter_context(all_or_nothing())  # the table and the .h5ad appear together, or neither
        return _score_and_write(args, params, names)


def _check_space_for_scores(args: argparse.Namespace, n_obs: int, n_signatures: int) -> None:
    """Refuse a run whose outputs cannot fit on their disk, before scoring (a full disk mid-write helps nobody)."""
    from .io import check_free_space

    tables = 4 if args.null else 1  # scores, z, p, adjusted p
    target = args.input if args.inplace else args.output
    if target:
        need = Path(args.input).stat().st_size + 2 * 8 * n_obs * n_signatures * tables + 2**20
        check_free_space(Path(os.path.realpath(target)).parent, need, "The .h5ad output")
    if args.scores_only:
        check_free_space(Path(args.scores_only).parent, 25 * n_obs * n_signatures * tables + 2**20, "The score table")


def _score_and_write(args: argparse.Namespace, params: dict, names: list[str]) -> int:
    import pandas as pd

    from ._engine import check_key_is_ours, obs_columns, previous_outputs, removed_record, store_scores
    from .io import add_to_h5ad, read_h5ad, write_h5ad, write_table
    from .tl import compute_scores

    adata = read_h5ad(args.input, backed=args.backed)
    if args.output or args.inplace:
        _usage(check_key_is_ours, adata, args.key_added, [f"{args.key_added}_{name}" for name in names])
    _check_space_for_scores(args, adata.n_obs, len(names))
    table, record, null_tables = compute_scores(
        adata,
        args.signatures,
        args.method,
        null=args.null,
        n_null=args.n_null,
        null_bins=args.null_bins,
        adjust=args.adjust,
        layer=args.layer,
        use_raw=args.use_raw,
        gene_symbols=args.gene_symbols,
        min_coverage=args.min_coverage,
        low_coverage=args.low_coverage,
        chunk_size=args.chunk_size,
        n_jobs=args.n_jobs,
        random_state=args.seed,
        progress=None if not args.quiet else False,
        **params,
    )
    obsm = {args.key_added: table, **{args.key_added + suffix: frame for suffix, frame in null_tables.items()}}
    if args.scores_only:  # one table: the scores, then <signature>_z, _pval, _padj columns with a null
        extra = [frame.add_suffix(suffix) for suffix, frame in null_tables.items()]
        write_table(pd.concat([table, *extra], axis=1) if extra else table, args.scores_only, overwrite=args.force)
        logger.info("wrote %s", args.scores_only)
    target = args.input if args.inplace else args.output
    if target:
        if args.backed or args.inplace:  # X is copied byte for byte, never loaded
            new_obs = obs_columns(table, args.key_added)
            stale_obs, stale_obsm = previous_outputs(adata, args.key_added, new_obs, list(obsm))
            record["removed_previous"] = removed_record(stale_obs, stale_obsm)
            add_to_h5ad(
                args.input,
                target,
                obsm=obsm,
                obs=adata.obs.drop(columns=stale_obs),
                obs_columns=new_obs,
                uns={args.key_added: record},
                obsm_removed=stale_obsm,
                overwrite=args.force or args.inplace,
            )
        else:
            store_scores(adata, table, record, null_tables, args.key_added)
            write_h5ad(adata, target, overwrite=args.force)
        logger.info("wrote %s", target)
    return 0


def _cmd_classify(args: argparse.Namespace) -> int:
    from .io import read_h5ad, write_h5ad, write_table
    from .tl import classify

    out = Path(args.output)
    if out.suffix.lower() not in (".csv", ".tsv", ".h5ad"):
        raise UsageError("-o must end in .csv, .tsv (the table of calls) or .h5ad (the sample AnnData).")
    _check_sample_outputs(args)
    thresholds = _method_params(args.threshold, option="--threshold")
    reference = _reference_argument(args.reference)
    adata = read_h5ad(args.input)
    _check_sample_arguments(args, adata)
    samples = _samples(args, adata)
    table = classify(
        samples, reference=reference, thresholds=thresholds, key=args.key, rows_are_samples=args.rows_are_samples
    )
    if out.suffix.lower() == ".h5ad":
        write_h5ad(samples, out, overwrite=args.force)
    else:
        write_table(table, out, overwrite=args.force)
    counts = table["immune_context"].value_counts().to_dict()
    logger.info(
        "classified %d samples: %s; wrote %s", len(table), ", ".join(f"{k} {v}" for k, v in counts.items()), out
    )
    return 0


def _check_sample_arguments(args: argparse.Namespace, adata) -> None:
    """Every key classify and report will use, checked before any scoring starts."""
    from ._anndata import single_cell_evidence
    from ._utils import closest

    for option, column in (("--sample-key", args.sample_key), ("--celltype-key", args.celltype_key)):
        if column is not None and column not in adata.obs:
            raise UsageError(
                f"{option} {column!r} is not an obs column of {args.input}; it has: "
                f"{', '.join(map(str, adata.obs.columns[:20])) or 'none'}." + closest(column, adata.obs.columns)
            )
    if args.layer is not None and args.layer not in adata.layers:
        raise UsageError(
            f"--layer {args.layer!r} is not in {args.input}; its layers: {', '.join(adata.layers) or 'none'}."
        )
    if args.use_raw and adata.raw is None:
        raise UsageError(f"--use-raw: {args.input} has no .raw.")
    if args.sample_key is None and "immunescape_samples" not in adata.uns:
        evidence = single_cell_evidence(adata, layer=args.layer, use_raw=args.use_raw)
        if evidence and not args.rows_are_samples:
            raise UsageError(
                f"{args.input} looks like single cells ({evidence}): give --sample-key COLUMN to call each "
                "sample from its cells, or --rows-are-samples to classify every row as a sample."
            )
        if evidence:
            logger.warning(
                "treating each of the %d rows as a sample (--rows-are-samples), although %s", adata.n_obs, evidence
            )
    elif args.sample_key is not None and args.rows_are_samples:
        raise UsageError("--rows-are-samples and --sample-key contradict each other; give one.")


def _pathway_scores(
    args: argparse.Namespace, adata, pathway_key: str = "pathways", *, required: bool = False
) -> list[str]:
    """Score the tumour-intrinsic footprints (weighted means, as PROGENy) under ``pathway_key`` when
    absent; the key, or nothing where too few of their genes are in the data (an error if ``required``)."""
    from ._errors import InputError
    from .tl import score

    if pathway_key not in adata.obsm:
        try:
            score(
                adata,
                "tumour_intrinsic",
                method="wmean",
                key_added=pathway_key,
                min_coverage=args.min_coverage,
                low_coverage="drop",
                layer=args.layer,
                use_raw=args.use_raw,
                gene_symbols=args.gene_symbols,
            )
        except InputError as err:
            if required:
                raise
            logger.info("tumour-intrinsic pathways not scored: %s", err)
            return []
    return [pathway_key]


def _samples(args: argparse.Namespace, adata, keys: list[str] | None = None):
    """Score the rows if needed, then aggregate cells into samples (or take the rows as samples)."""
    from .tl import aggregate, score

    if getattr(args, "mode", "scores") == "scores" and args.key not in adata.obsm:
        score(
            adata,
            args.signatures,
            method=args.method,
            layer=args.layer,
            use_raw=args.use_raw,
            gene_symbols=args.gene_symbols,
            key_added=args.key,
            min_coverage=args.min_coverage,
            low_coverage=args.low_coverage,
        )
    if not args.sample_key:
        return adata
    return aggregate(
        adata,
        args.sample_key,
        celltype_key=args.celltype_key,
        key=keys or args.key,
        mode=getattr(args, "mode", "scores"),
        min_cells=args.min_cells,
        signatures=args.signatures,
        method=args.method,
    )


def _usage(check, *values):
    """Run an API check, reporting its failure as a usage error (exit 2)."""
    from ._errors import InputError

    try:
        return check(*values)
    except InputError as err:
        raise UsageError(str(err)) from err


def _check_sample_outputs(args: argparse.Namespace) -> None:
    """classify/report: the output is checked against every input before any work."""
    reference = args.reference if args.reference not in (None, "shipped", "cohort") else None
    check_outputs([args.output], inputs=[args.input, reference, _file_argument(args.signatures)], overwrite=args.force)


def _file_argument(value: str | None) -> str | None:
    """A --signatures/--reference value when it names an existing file (an input to protect), else None."""
    return value if value and Path(value).is_file() else None


def _signature_names(spec: str) -> list[str]:
    from .signatures import load

    return [s.name for s in load(spec)]


def _reference_argument(value: str | None):
    from .io import read_h5ad

    if value is None or value in ("shipped", "cohort"):
        return value
    if not Path(value).is_file():
        raise UsageError(
            f"--reference {value!r} is neither 'shipped', 'cohort' nor an existing .json profile or .h5ad file."
        )
    if not value.endswith(".h5ad"):
        return value
    from ._anndata import single_cell_evidence

    reference = read_h5ad(value)
    evidence = None if "immunescape_samples" in reference.uns else single_cell_evidence(reference)
    if evidence:
        raise UsageError(
            f"--reference {value!r} looks like single cells ({evidence}); give a samples .h5ad "
            "(immunescape classify CELLS.h5ad --sample-key ... -o samples.h5ad) or a bulk cohort."
        )
    return reference


def _cmd_report(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from ._errors import InputError
    from .io import read_h5ad
    from .pp import coverage
    from .report import write_report
    from .tl import classify, exclusion_drivers

    if Path(args.output).suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o writes an HTML report and must end in .html, got {args.output!r}.")
    _check_sample_outputs(args)
    reference = _reference_argument(args.reference)
    adata = read_h5ad(args.input)
    _check_sample_arguments(args, adata)
    keys = [args.key, *_pathway_scores(args, adata)]
    samples = _samples(args, adata, keys)
    calls = classify(samples, reference=reference, key=keys, rows_are_samples=args.rows_are_samples, inplace=False)
    try:
        drivers = exclusion_drivers(samples, key=keys, exclusion=calls["immune_context"])
    except InputError as err:
        drivers = str(err)
    cover = coverage(adata, args.signatures, layer=args.layer, use_raw=args.use_raw, gene_symbols=args.gene_symbols)
    write_report(
        args.output,
        samples,
        calls,
        coverage=cover,
        drivers=drivers,
        parameters={
            "input": args.input,
            "method": args.method,
            "signatures": args.signatures,
            "sample_key": args.sample_key,
            "celltype_key": args.celltype_key,
        },
        overwrite=args.force,
    )
    logger.info("wrote %s (%d samples)", args.output, len(calls))
    return 0


def _check_plot_format(plot: str | None) -> None:
    """--plot names a format matplotlib writes (checked before the work, not after it)."""
    if plot:
        from .pl._utils import check_figure_format, figure_path

        try:
            check_figure_format(figure_path(Path(plot).resolve(), "plot"), f"--plot {plot!r}")
        except ImmunescapeError as err:
            raise UsageError(str(err)) from None


def _cmd_drivers(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .io import all_or_nothing, read_h5ad, write_table
    from .pl import exclusion_drivers as draw
    from .tl import classify, exclusion_drivers

    reference = args.reference if args.reference not in (None, "shipped", "cohort") else None
    check_outputs(
        [args.output, args.plot],
        inputs=[args.input, reference, _file_argument(args.signatures)],
        overwrite=args.force,
    )
    _check_plot_format(args.plot)
    adata = read_h5ad(args.input)
    _check_sample_arguments(args, adata)
    keys = [args.key, *_pathway_scores(args, adata, args.pathway_key, required=True)]
    samples = _samples(args, adata, keys)
    if args.exclusion is None:
        classify(
            samples, reference=_reference_argument(args.reference), key=keys, rows_are_samples=args.rows_are_samples
        )
    adjust = {"auto": "auto", "none": None}.get(args.adjust, [a.strip() for a in args.adjust.split(",") if a.strip()])
    table = exclusion_drivers(samples, key=keys, exclusion=args.exclusion, adjust=adjust)
    with all_or_nothing():
        write_table(table, args.output, overwrite=args.force)
        if args.plot:
            draw(table, save=Path(args.plot).resolve(), show=False)
    logger.info("wrote %s (%d pathways, %d samples)", args.output, table["pathway"].nunique(), int(table["n"].max()))
    return 0


def _cmd_enrich(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .io import all_or_nothing, read_h5ad, write_table
    from .pl import enrichment
    from .tl import enrich

    check_outputs([args.output, args.plot], inputs=[args.input, _file_argument(args.signatures)], overwrite=args.force)
    _check_plot_format(args.plot)
    adata = read_h5ad(args.input)
    groups = [g.strip() for g in args.groups.split(",")] if args.groups else None
    table = enrich(
        adata,
        args.groupby,
        groups=groups,
        reference=args.reference,
        signatures=args.signatures,
        layer=args.layer,
        use_raw=args.use_raw,
        min_coverage=args.min_coverage,
        permutation_num=args.permutations,
        random_state=args.seed,
    )
    with all_or_nothing():
        write_table(table, args.output, overwrite=args.force)
        if args.plot:
            enrichment(table, save=Path(args.plot).resolve(), show=False)  # the path as given, not into figdir
    logger.info(
        "%d signature tests, %d with FDR < 0.05; wrote %s", len(table), int((table["fdr"] < 0.05).sum()), args.output
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from .demo import RECOVERY_CSV, run_demo

    outputs = run_demo(Path(args.outdir))
    for label, path in outputs.items():
        print(f"{label}: {path}")
    recovery = pd.read_csv(Path(args.outdir) / RECOVERY_CSV, index_col=0, keep_default_na=False)
    print("\nPlanted escape mechanisms in the simulated cohort, as classify found them:")
    print(recovery.to_string(float_format=lambda x: f"{x:.2f}"))
    return 0


_COMMANDS = {
    "signatures": _cmd_signatures,
    "coverage": _cmd_coverage,
    "score": _cmd_score,
    "classify": _cmd_classify,
    "enrich": _cmd_enrich,
    "report": _cmd_report,
    "drivers": _cmd_drivers,
    "demo": _cmd_demo,
}


if __name__ == "__main__":
    sys.exit(main())
