"""The ensemble part of the study: SiteNetEnsemble against the single network and the forest, on the same subsets.

Every row of the table compares methods on the label subsets where the
ensembles ran (seeds 0-4), so the comparison is paired: the forest and the
single network are averaged over those subsets only.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .features import (
    SCRATCH_WHOLE_COSINE,
    SCRATCH_WHOLE_L1,
    SHIPPED,
    SHIPPED_MAGPIE_HEAD,
    SHIPPED_WHOLE_COSINE,
    SHIPPED_WHOLE_FAST,
    SHIPPED_WHOLE_L1,
)
from .runner import ENSEMBLE, ENSEMBLE_NETWORKS, ENSEMBLE_SEEDS

__all__ = ["COMPARED", "SEED_STARTS", "ensemble_lines", "ensemble_table", "seed_ensemble_lines", "seed_ensemble_table"]

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


def _runs_on(frame: pd.DataFrame, dataset: str, target: str, n_labels: int, seeds: set) -> pd.DataFrame:
    """The ledger's rows of one (dataset, target, n_labels) cell on the label subsets ``seeds``."""
    return frame[
        (frame.dataset == dataset) & (frame.target == target) & (frame.n_labels == n_labels) & frame.seed.isin(seeds)
    ]


def _mean_if_complete(runs: pd.DataFrame, seeds: set) -> float:
    """Mean MAE of ``runs`` when they cover every subset of ``seeds``, else NaN (the column is left empty)."""
    return runs.mae.mean() if len(runs) == len(seeds) else float("nan")


def _bold_lowest(values: Sequence[float]) -> list[str]:
    """Markdown cells of ``values`` (4 significant digits), the lowest in bold, NaN empty."""
    best = min((v for v in values if v == v), default=None)  # none: nothing of this row's columns ran
    return ["" if v != v else f"**{v:.4g}**" if v == best else f"{v:.4g}" for v in values]


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
        same = _runs_on(frame, dataset, target, n, seeds)
        row: dict = {"dataset": dataset, "target": target, "n_labels": int(n), "subsets": len(seeds)}
        for name, (features, model) in COMPARED.items():
            row[name] = _mean_if_complete(same[(same.features == features) & (same.model == model)], seeds)
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
        cells = _bold_lowest(row[4 : 4 + len(COMPARED)])
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


SEED_STARTS = {
    "shipped": SHIPPED_WHOLE_COSINE,
    "shipped, 3e-3": SHIPPED_WHOLE_FAST,
    "shipped, L1 loss": SHIPPED_WHOLE_L1,
    "scratch": SCRATCH_WHOLE_COSINE,
    "scratch, L1 loss": SCRATCH_WHOLE_L1,
}
"""The starts of the seed-ensemble table (networks trained to the end of a cosine schedule): a name and the
ledger's feature name."""
SEED_COLUMNS = {
    "1 net": "fine-tuned",
    "5 on folds": ENSEMBLE_NETWORKS,
    "5 seeds": ENSEMBLE_SEEDS,
}
"""The columns of the seed-ensemble table: a name and the ledger's model."""


def seed_ensemble_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, target, n_labels) and start of ``SEED_STARTS`` where seed ensembles ran: mean test MAE of one
    network, of five networks on the folds and of five seeds on all the labels, over the subsets of the seed
    ensembles (a column whose runs do not cover them all is NaN)."""
    seeded = frame[(frame.model == ENSEMBLE_SEEDS) & frame.features.isin(SEED_STARTS.values())]
    rows = []
    for (dataset, target, n, features), cell in seeded.groupby(
        ["dataset", "target", "n_labels", "features"], sort=False
    ):
        seeds = set(cell.seed)
        same = _runs_on(frame, dataset, target, n, seeds)
        same = same[same.features == features]
        start = next(name for name, value in SEED_STARTS.items() if value == features)
        row: dict = {"dataset": dataset, "target": target, "n_labels": int(n), "subsets": len(seeds), "start": start}
        for column, model in SEED_COLUMNS.items():
            row[column] = _mean_if_complete(same[same.model == model], seeds)
        rows.append(row)
    table = pd.DataFrame(rows, columns=["dataset", "target", "n_labels", "subsets", "start", *SEED_COLUMNS])
    table = table.sort_values("start", key=lambda start: start.map(list(SEED_STARTS).index), kind="stable")
    return table.sort_values(["dataset", "target", "n_labels"], kind="stable", ignore_index=True)


def seed_ensemble_lines(frame: pd.DataFrame) -> list[str]:
    """Markdown: ``seed_ensemble_table``, the lowest of each row in bold (nothing without seed ensembles)."""
    table = seed_ensemble_table(frame)
    if table.empty:
        return []
    lines = [
        "| target | labels | start | " + " | ".join(SEED_COLUMNS) + " |",
        "|---|---:|---|" + "---:|" * len(SEED_COLUMNS),
    ]
    for row in table.itertuples(index=False):
        cells = _bold_lowest(row[5:])
        lines.append(f"| {row.dataset} {row.target} | {row.n_labels:,} | {row.start} | " + " | ".join(cells) + " |")
    counts = sorted(set(table.subsets))
    subsets = f"{counts[0]} label subsets" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} label subsets per row"
    lines += [
        "",
        f"Test MAE, mean over the {subsets} the seed ensembles ran on (the same subsets in every column); "
        "**bold**: the lowest of the row. Every network trains to the end of a cosine schedule from `lr=1e-3` "
        "(`lr=3e-3` where the start says so; the study's epochs, no early stopping) on the squared error (on the "
        "absolute error where the start says L1 loss: `criterion=torch.nn.L1Loss`), from the shipped DIM encoder "
        "(shipped) or from random weights (scratch). 1 net: one SiteNetRegressor on all the labels; 5 on folds: "
        "the mean of `SiteNetEnsemble`'s five networks, each on four fifths of the labels; 5 seeds: "
        '`SiteNetEnsemble(resampling="none", composition=None)`, five networks on all the labels with their own '
        "seeds.",
    ]
    return lines
