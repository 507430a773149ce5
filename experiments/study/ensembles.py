"""The ensemble part of the study: SiteNetEnsemble against the single network and the forest, on the same subsets.

Every row of the table compares methods on the label subsets where the
ensembles ran (seeds 0-4), so the comparison is paired: the forest and the
single network are averaged over those subsets only.
"""

from __future__ import annotations

import pandas as pd

from .features import SHIPPED, SHIPPED_MAGPIE_HEAD
from .runner import ENSEMBLE, ENSEMBLE_NETWORKS

__all__ = ["COMPARED", "ensemble_lines", "ensemble_table"]

COMPARED = {
    "RF, Magpie": ("Magpie", "RF"),
    "1 network, shipped": (SHIPPED, "fine-tuned"),
    "5 networks, shipped": (SHIPPED, ENSEMBLE_NETWORKS),
    "ensemble, shipped": (SHIPPED, ENSEMBLE),
    "ensemble, scratch": ("untrained", ENSEMBLE),
    "1 network, Magpie head": (SHIPPED_MAGPIE_HEAD, "fine-tuned"),
    "ensemble, Magpie head": (SHIPPED_MAGPIE_HEAD, ENSEMBLE),
}
"""The columns of the table: a name and the ledger's (features, model). "shipped": from the shipped DIM encoder;
"1 network": ``SiteNetRegressor`` fine-tuned alone; "5 networks": the ensemble's networks without the forest;
"Magpie head": from the shipped encoder, with a head that also sees the Magpie descriptors."""


def ensemble_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean test MAE of each of ``COMPARED`` per (dataset, target, n_labels), over the subsets the ensembles ran on.

    Returns
    -------
    DataFrame
        Columns dataset, target, n_labels, subsets, one per ``COMPARED`` name, and ``change``: the ensemble
        from DIM shipped against the better of the forest and the single network, in percent.
    """
    ensembles = frame[frame.model == ENSEMBLE]
    rows = []
    for (dataset, target, n), cell in ensembles.groupby(["dataset", "target", "n_labels"], sort=False):
        shipped = cell[cell.features == SHIPPED]
        seeds = set((shipped if len(shipped) else cell).seed)
        same = frame[
            (frame.dataset == dataset) & (frame.target == target) & (frame.n_labels == n) & frame.seed.isin(seeds)
        ]
        row: dict = {"dataset": dataset, "target": target, "n_labels": int(n), "subsets": len(seeds)}
        for name, (features, model) in COMPARED.items():
            runs = same[(same.features == features) & (same.model == model)]
            row[name] = runs.mae.mean() if len(runs) == len(seeds) else float("nan")
        single = min(row["RF, Magpie"], row["1 network, shipped"])
        row["change"] = 100 * (row["ensemble, shipped"] / single - 1)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["dataset", "target", "n_labels", "subsets", *COMPARED, "change"])
    return table.sort_values(["dataset", "target", "n_labels"], kind="stable", ignore_index=True)


def ensemble_lines(frame: pd.DataFrame) -> list[str]:
    """Markdown: ``ensemble_table`` as a table with a sentence on how it reads (nothing without ensemble rows)."""
    table = ensemble_table(frame)
    if table.empty:
        return []
    lines = [
        "| target | labels | subsets | " + " | ".join(COMPARED) + " | change |",
        "|---|---:|---:|" + "---:|" * (len(COMPARED) + 1),
    ]
    for row in table.itertuples(index=False):
        values = row[4 : 4 + len(COMPARED)]
        best = min(v for v in values if v == v)
        cells = [("" if v != v else f"**{v:.4g}**" if v == best else f"{v:.4g}") for v in values]
        change = "" if row.change != row.change else f"{row.change:+.1f}%"
        lines.append(
            f"| {row.dataset} {row.target} | {row.n_labels:,} | {row.subsets} | " + " | ".join(cells) + f" | {change} |"
        )
    lines += [
        "",
        "Test MAE, mean over the label subsets the ensembles ran on (the same subsets in every column); "
        "**bold**: the lowest. Shipped: fine-tuned from the shipped DIM encoder; 1 network: one SiteNetRegressor; "
        "5 networks: the ensemble's networks without the forest; ensemble: SiteNetEnsemble; Magpie head: "
        "networks from the shipped encoder whose head also sees the Magpie descriptors "
        '(`SiteNetRegressor(composition="magpie")`). Change: the ensemble from the shipped encoder against the '
        "better of the forest on Magpie and the single network.",
    ]
    return lines
