"""The fine-tuning options of the study, one network each, against the default on the same label subsets.

Each option (a head that also sees Magpie, four times the epochs, a cosine
schedule from a ten times larger learning rate, and that schedule trained to its
end on all the labels, without early stopping) runs from the shipped encoder
and from random weights; the table sets each beside the default fine-tuning from
the same start, on the subsets where the option ran, so every comparison is paired.
"""

from __future__ import annotations

import pandas as pd

from .features import (
    SCRATCH_COSINE,
    SCRATCH_LONG,
    SCRATCH_MAGPIE_HEAD,
    SCRATCH_WHOLE_COSINE,
    SHIPPED,
    SHIPPED_COSINE,
    SHIPPED_LONG,
    SHIPPED_MAGPIE_HEAD,
    SHIPPED_WHOLE_COSINE,
)

__all__ = ["OPTIONS", "option_lines", "option_table"]

OPTIONS = {
    "shipped": SHIPPED,
    "Magpie head": SHIPPED_MAGPIE_HEAD,
    "4x budget": SHIPPED_LONG,
    "cosine": SHIPPED_COSINE,
    "whole cosine": SHIPPED_WHOLE_COSINE,
    "scratch": "untrained",
    "scratch, Magpie head": SCRATCH_MAGPIE_HEAD,
    "scratch, 4x budget": SCRATCH_LONG,
    "scratch, cosine": SCRATCH_COSINE,
    "scratch, whole cosine": SCRATCH_WHOLE_COSINE,
}
"""The columns: a name and the ledger's feature name of a ``fine-tuned`` row. The first five start from the
shipped encoder, the last five from random weights."""
_DEFAULTS = ("shipped", "scratch")


def option_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean test MAE of each of ``OPTIONS`` per (dataset, target, n_labels) where an option ran.

    Each cell averages the subsets where the options of that cell ran (the
    seeds of its shipped-encoder options); a column whose runs do not cover
    them all is left empty (NaN).

    Returns
    -------
    DataFrame
        Columns dataset, target, n_labels, subsets and one per ``OPTIONS`` name.
    """
    tuned = frame[frame.model == "fine-tuned"]
    optional = {name for key, name in OPTIONS.items() if key not in _DEFAULTS}
    rows = []
    for (dataset, target, n), cell in tuned.groupby(["dataset", "target", "n_labels"], sort=False):
        ran = cell[cell.features.isin(optional)]
        if ran.empty:
            continue
        seeds = set(ran.seed)
        row: dict = {"dataset": dataset, "target": target, "n_labels": int(n), "subsets": len(seeds)}
        for column, features in OPTIONS.items():
            runs = cell[(cell.features == features) & cell.seed.isin(seeds)]
            row[column] = runs.mae.mean() if len(runs) == len(seeds) else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows, columns=["dataset", "target", "n_labels", "subsets", *OPTIONS])
    return table.sort_values(["dataset", "target", "n_labels"], kind="stable", ignore_index=True)


def option_lines(frame: pd.DataFrame) -> list[str]:
    """Markdown: ``option_table`` as two tables, from the shipped encoder and from random weights, the lowest
    of each row in bold (nothing without option rows)."""
    table = option_table(frame)
    if table.empty:
        return []
    half = len(OPTIONS) // 2
    lines: list[str] = []
    for title, columns in (
        ("From the shipped encoder", list(OPTIONS)[:half]),
        ("From random weights", list(OPTIONS)[half:]),
    ):
        lines += [
            f"**{title}**",
            "",
            "| target | labels | subsets | " + " | ".join(columns) + " |",
            "|---|---:|---:|" + "---:|" * len(columns),
        ]
        for _, row in table.iterrows():
            values = [row[column] for column in columns]
            known = [v for v in values if v == v]
            best = min(known) if len(known) > 1 else None
            cells = [("" if v != v else f"**{v:.4g}**" if v == best else f"{v:.4g}") for v in values]
            lines.append(
                f"| {row.dataset} {row.target} | {row.n_labels:,} | {row.subsets} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    lines.append(
        "Test MAE of one SiteNetRegressor, mean over the label subsets where the options ran (the same subsets in "
        "every column of both tables); **bold**: the lowest of the row. Shipped: fine-tuned from the shipped DIM "
        'encoder with the defaults; Magpie head: `composition="magpie"`; 4x budget: four times the study\'s epochs; '
        'cosine: `lr=1e-3, lr_schedule="cosine"` over the study\'s epochs; whole cosine: the same schedule trained '
        "to its end on all the labels (`patience=None, train_split=None`); scratch: the same from random weights."
    )
    return lines
