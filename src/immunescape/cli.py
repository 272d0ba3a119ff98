"""Command line: a thin layer over the public functions a notebook calls.

Exit codes: 0 success, 1 data or input error, 2 usage error. Errors print one line; ``--debug`` shows
the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._errors import ImmunescapeError
from .io import check_target

logger = logging.getLogger("immunescape")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="immunescape",
        description="Score transcriptomes with curated tumour immune-escape signatures.",
    )
    parser.add_argument("--version", action="version", version=f"immunescape {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sig = sub.add_parser("signatures", help="list, show or export the signature library")
    sig_sub = sig.add_subparsers(dest="action", metavar="ACTION")
    lst = sig_sub.add_parser("list", help="table of signatures")
    lst.add_argument("-c", "--collection", default="all", help="immune_escape, bagaev2021, thorsson2018 or all")
    lst.add_argument("--format", choices=["table", "csv", "tsv"], default="table")
    show = sig_sub.add_parser("show", help="one signature with its genes and source")
    show.add_argument("name")
    exp = sig_sub.add_parser("export", help="write signatures as GMT or YAML")
    exp.add_argument("signatures", nargs="?", default="all", help="names, a collection, or a file (default: all)")
    exp.add_argument("-o", "--output", help="output file (default: standard output)")
    exp.add_argument("--format", choices=["gmt", "yaml"], help="default: from the output suffix, else gmt")
    exp.add_argument("--force", action="store_true", help="overwrite an existing output file")

    cov = sub.add_parser("coverage", help="gene coverage of signatures on an .h5ad file")
    cov.add_argument("input", help=".h5ad file")
    cov.add_argument("-s", "--signatures", default="immune_escape")
    cov.add_argument("--layer")
    cov.add_argument("--use-raw", action="store_true", default=None)
    cov.add_argument("--gene-symbols", help="var column holding gene symbols")

    sc_ = sub.add_parser("score", help="score an .h5ad file with signatures", description=(
        "Score every cell/sample of IN.h5ad. Writes OUT.h5ad (-o), a score table (--scores-only), or updates "
        "the input (--inplace); outputs appear only when complete."))  # fmt: skip
    sc_.add_argument("input", help="input .h5ad file")
    sc_.add_argument("-o", "--output", help="output .h5ad with scores in obsm/obs/uns")
    sc_.add_argument("-s", "--signatures", default="immune_escape", help="collection, names (comma separated), or a .yaml/.gmt file")
    sc_.add_argument("-m", "--method", default="ucell", help="ucell, aucell, mean, ssgsea, singscore, wmean, zmean")
    sc_.add_argument("--layer")
    sc_.add_argument("--use-raw", action="store_true", default=None, help="score adata.raw")
    sc_.add_argument("--no-raw", dest="use_raw", action="store_false", help="score X even if .raw exists")
    sc_.add_argument("--gene-symbols", help="var column holding gene symbols")
    sc_.add_argument("--chunk-size", type=int)
    sc_.add_argument("--n-jobs", type=int)
    sc_.add_argument("--seed", type=int, default=0, help="random_state of the method (default 0)")
    sc_.add_argument("--null", choices=["matched", "analytic"], help="also test each score against random gene sets "
                     "matched in size and expression (z, p-value, BH-adjusted p-value per cell); 'analytic': their exact "
                     "moments instead of n-null draws (mean, wmean, zmean)")  # fmt: skip
    sc_.add_argument("--n-null", type=int, default=100, help="random gene sets per signature with --null (default 100)")
    sc_.add_argument("--null-bins", type=int, help="expression bins of the null genes (default 25; aucell 50)")
    sc_.add_argument("--min-coverage", type=float, default=0.5)
    sc_.add_argument("--key-added", default="immunescape")
    sc_.add_argument("--backed", action="store_true", help="stream X from disk instead of loading it")
    sc_.add_argument("--scores-only", metavar="TABLE", help="write only the score table (.csv, .tsv or .parquet)")
    sc_.add_argument("--inplace", action="store_true", help="add the scores to the input file itself")
    sc_.add_argument("--force", action="store_true", help="overwrite existing outputs")
    sc_.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="method parameter, e.g. -p max_rank=1000")

    cl = sub.add_parser("classify", help="per-sample immune context and escape mechanisms", description=(
        "Classify each sample of IN.h5ad. Single cells: give --sample-key (and --celltype-key); bulk: every obs is a "
        "sample. Cells/samples are scored first (-s, -m) unless obsm[--key] already holds scores."))  # fmt: skip
    _sample_arguments(cl, output_help="samples.csv (table of calls) or samples.h5ad (sample AnnData)")
    cl.add_argument("--mode", choices=["scores", "pseudobulk"], default="scores")
    cl.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE", help="override a threshold")

    rp = sub.add_parser("report", help="self-contained HTML report: calls with reasons, heatmap, profiles, coverage")
    _sample_arguments(rp, output_help="report.html")

    en = sub.add_parser("enrich", help="pre-ranked GSEA of signatures between groups (scanpy + gseapy)")
    en.add_argument("input", help="input .h5ad file (log-normalised)")
    en.add_argument("--groupby", required=True, help="obs column defining the groups")
    en.add_argument("--groups", help="comma-separated groups to test (default: all)")
    en.add_argument("--reference", default="rest")
    en.add_argument("-s", "--signatures", default="immune_escape")
    en.add_argument("-o", "--output", required=True, help="table (.csv/.tsv/.parquet)")
    en.add_argument("--plot", help="also draw the table (.png/.pdf/.svg)")
    en.add_argument("--permutations", type=int, default=1000)
    en.add_argument("--seed", type=int, default=0)
    en.add_argument("--min-coverage", type=float, default=0.5)
    en.add_argument("--layer")
    en.add_argument("--use-raw", action="store_true", default=None)
    en.add_argument("--force", action="store_true")

    demo = sub.add_parser("demo", help="run the main job on the bundled example data")
    demo.add_argument("-o", "--outdir", default="immunescape_demo", help="output folder")
    return parser


def _sample_arguments(parser: argparse.ArgumentParser, *, output_help: str) -> None:
    """Arguments shared by the per-sample commands (classify, report)."""
    parser.add_argument("input", help="input .h5ad file")
    parser.add_argument("-o", "--output", required=True, help=output_help)
    parser.add_argument("--sample-key", help="obs column with the sample of each cell (single-cell data)")
    parser.add_argument("--celltype-key", help="obs column with cell-type labels")
    parser.add_argument("-s", "--signatures", default="immune_escape,bagaev2021")
    parser.add_argument("-m", "--method", default="ucell")
    parser.add_argument("--key", default="immunescape", help="obsm key of existing scores")
    parser.add_argument("--min-cells", type=int, default=10)
    parser.add_argument("--reference", help="what mechanisms are judged against: 'shipped' (the reference distributions "
                        "shipped with the context model; default for bulk), 'cohort' (the samples themselves; default for "
                        "single cells), a saved profile (.json) or a samples .h5ad")  # fmt: skip
    parser.add_argument("--layer")
    parser.add_argument("--use-raw", action="store_true", default=None)
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``immunescape`` console script."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help/--version
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)  # other libraries: warnings only
    logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
    _interrupt_on_sigterm()
    if args.command is None:
        parser.print_help()
        return 2
    from .io import INTERRUPTED

    try:
        code = _COMMANDS[args.command](args)
        if INTERRUPTED.is_set():  # the interrupt was swallowed somewhere, but no output was renamed into place
            raise KeyboardInterrupt
        return code
    except ImmunescapeError as err:
        if args.debug:
            raise
        print(f"immunescape: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        INTERRUPTED.clear()  # handled: later writes in this process must not see a stale flag
        print("immunescape: interrupted; no output was written.", file=sys.stderr)
        return 130


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
    fmt = args.format or ("yaml" if str(args.output or "").endswith((".yaml", ".yml")) else "gmt")
    writer = sigs.to_yaml if fmt == "yaml" else sigs.to_gmt
    if args.output:
        from .io import atomic_path

        with atomic_path(args.output, overwrite=args.force) as tmp:
            writer(args.signatures, tmp)
        logger.info("wrote %s", args.output)
    else:
        print(writer(args.signatures), end="")
    return 0


def _cmd_coverage(args: argparse.Namespace) -> int:
    from .pp import coverage
    from .io import read_h5ad

    adata = read_h5ad(args.input, backed=True)
    table = coverage(adata, args.signatures, layer=args.layer, use_raw=args.use_raw, gene_symbols=args.gene_symbols)
    print(table.to_string())
    return 0


class UsageError(ImmunescapeError):
    exit_code = 2


def _method_params(pairs: list[str]) -> dict:
    import yaml

    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param takes NAME=VALUE, got {pair!r}.")
        params[name.strip()] = yaml.safe_load(value)
    return params


def _cmd_score(args: argparse.Namespace) -> int:
    import pandas as pd

    from .io import add_to_h5ad, read_h5ad, write_h5ad, write_table
    from .tl import compute_scores
    from .tl._score import obs_columns

    if not (args.output or args.scores_only or args.inplace):
        raise UsageError("say where the scores go: -o OUT.h5ad, --scores-only TABLE.csv, or --inplace.")
    if args.inplace and args.output:
        raise UsageError("use either --inplace or -o, not both.")
    outputs = [p for p in (args.output, args.scores_only) if p]
    for path in outputs:
        check_target(path, overwrite=args.force)  # fail before any work
        if Path(path).resolve() == Path(args.input).resolve():
            raise UsageError("an output path is the input file; use --inplace to update the input.")
    params = _method_params(args.param)
    adata = read_h5ad(args.input, backed=args.backed)
    table, record, null_tables = compute_scores(
        adata, args.signatures, args.method, null=args.null, n_null=args.n_null, null_bins=args.null_bins,
        layer=args.layer, use_raw=args.use_raw, gene_symbols=args.gene_symbols, min_coverage=args.min_coverage,
        chunk_size=args.chunk_size, n_jobs=args.n_jobs, random_state=args.seed, progress=None if not args.quiet else False,
        **params,
    )  # fmt: skip
    obsm = {args.key_added: table, **{args.key_added + suffix: frame for suffix, frame in null_tables.items()}}
    if args.scores_only:  # one table: the scores, then <signature>_z, _pval, _padj columns with a null
        extra = [frame.add_suffix(suffix) for suffix, frame in null_tables.items()]
        write_table(pd.concat([table, *extra], axis=1) if extra else table, args.scores_only, overwrite=args.force)
        logger.info("wrote %s", args.scores_only)
    target = args.input if args.inplace else args.output
    if target:
        if args.backed or args.inplace:  # X is copied byte for byte, never loaded
            add_to_h5ad(args.input, target, obsm=obsm, obs=adata.obs, obs_columns=obs_columns(table, args.key_added),
                        uns={args.key_added: record}, overwrite=args.force or args.inplace)  # fmt: skip
        else:
            adata.obsm.update(obsm)
            for name, values in obs_columns(table, args.key_added).items():
                adata.obs[name] = values
            adata.uns[args.key_added] = record
            write_h5ad(adata, target, overwrite=args.force)
        logger.info("wrote %s", target)
    return 0


def _cmd_classify(args: argparse.Namespace) -> int:
    from .io import read_h5ad, write_h5ad, write_table
    from .tl import aggregate, classify, score

    out = Path(args.output)
    check_target(out, overwrite=args.force)
    if out.suffix.lower() not in (".csv", ".tsv", ".h5ad"):
        raise UsageError("-o must end in .csv, .tsv (the table of calls) or .h5ad (the sample AnnData).")
    thresholds = _method_params(args.threshold)
    adata = read_h5ad(args.input)
    if args.mode == "scores" and args.key not in adata.obsm:
        score(adata, args.signatures, method=args.method, layer=args.layer, use_raw=args.use_raw, key_added=args.key,
              min_coverage=0.3, low_coverage="drop")  # fmt: skip
    if args.sample_key:
        samples = aggregate(adata, args.sample_key, celltype_key=args.celltype_key, key=args.key, mode=args.mode,
                            min_cells=args.min_cells, signatures=args.signatures, method=args.method)  # fmt: skip
    else:
        samples = adata
    reference = _reference_argument(args.reference)
    table = classify(samples, reference=reference, thresholds=thresholds, key=args.key)
    if out.suffix.lower() == ".h5ad":
        write_h5ad(samples, out, overwrite=args.force)
    else:
        write_table(table, out, overwrite=args.force)
    counts = table["immune_context"].value_counts().to_dict()
    logger.info("classified %d samples: %s; wrote %s", len(table), ", ".join(f"{k} {v}" for k, v in counts.items()), out)
    return 0


def _reference_argument(value: str | None):
    from .io import read_h5ad

    if value is None or value in ("shipped", "cohort"):
        return value
    return read_h5ad(value) if value.endswith(".h5ad") else value


def _cmd_report(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .io import read_h5ad
    from .pp import coverage
    from .report import write_report
    from .tl import aggregate, classify, score

    check_target(args.output, overwrite=args.force)
    adata = read_h5ad(args.input)
    if args.key not in adata.obsm:
        score(adata, args.signatures, method=args.method, layer=args.layer, use_raw=args.use_raw, key_added=args.key,
              min_coverage=0.3, low_coverage="drop")  # fmt: skip
    samples = aggregate(adata, args.sample_key, celltype_key=args.celltype_key, key=args.key, min_cells=args.min_cells) if args.sample_key else adata
    reference = _reference_argument(args.reference)
    calls = classify(samples, reference=reference, key=args.key, inplace=False)
    write_report(args.output, samples, calls, coverage=coverage(adata, args.signatures, layer=args.layer, use_raw=args.use_raw),
                 parameters={"input": args.input, "method": args.method, "signatures": args.signatures,
                             "sample_key": args.sample_key, "celltype_key": args.celltype_key}, overwrite=args.force)  # fmt: skip
    logger.info("wrote %s (%d samples)", args.output, len(calls))
    return 0


def _cmd_enrich(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .io import read_h5ad, write_table
    from .pl import enrichment
    from .tl import enrich

    for path in filter(None, (args.output, args.plot)):
        check_target(path, overwrite=args.force)
    adata = read_h5ad(args.input)
    groups = [g.strip() for g in args.groups.split(",")] if args.groups else None
    table = enrich(adata, args.groupby, groups=groups, reference=args.reference, signatures=args.signatures, layer=args.layer,
                   use_raw=args.use_raw, min_coverage=args.min_coverage, permutation_num=args.permutations, random_state=args.seed)  # fmt: skip
    write_table(table, args.output, overwrite=args.force)
    if args.plot:
        enrichment(table, save=args.plot, show=False)
    logger.info("%d signature tests, %d with FDR < 0.05; wrote %s", len(table), int((table["fdr"] < 0.05).sum()), args.output)
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


_COMMANDS = {"signatures": _cmd_signatures, "coverage": _cmd_coverage, "score": _cmd_score, "classify": _cmd_classify,
             "enrich": _cmd_enrich, "report": _cmd_report, "demo": _cmd_demo}


if __name__ == "__main__":
    sys.exit(main())
