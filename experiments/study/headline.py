"""The study's headline: per target and label count, the best model with a DIM encoder against the best without.

An option is one (features, model) pair of the ledger, scored by its mean test MAE
over label subsets or seeds. It uses DIM when its feature or start name says so
("DIM", "DIM shipped", "Magpie + DIM", "auto (DIM shipped or scratch)", ...); a
union with CHGNet's features counts on CHGNet's side, since it shows what CHGNet
gives rather than what DIM adds. The mean predictor is left out.

The generated text also replaces marked blocks of other pages (``refresh_block``),
so the user guide and the README quote the table they come from.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

__all__ = ["headline", "headline_lines", "headline_sentence", "refresh_block", "uses_dim"]

LEVEL = 1.0
"""A cell counts as won (best or level) when the best DIM option's MAE is at most this times the other's."""


def uses_dim(features: str) -> bool:
    """Whether an option's features (or start) come from a DIM encoder; unions with CHGNet count as CHGNet's."""
    return "DIM" in features and "CHGNet" not in features


def headline(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, target, n_labels): the best option with and without DIM, and their ratio.

    Parameters
    ----------
    frame : DataFrame
        The study's ledger (columns dataset, target, n_labels, features, model, mae).

    Returns
    -------
    DataFrame
        Columns dataset, target, n_labels, dim_option, dim_mae, other_option, other_mae, ratio, won.
    """
    options = (
        frame[frame.model != "mean"]
        .groupby(["dataset", "target", "n_labels", "features", "model"], sort=False)
        .mae.mean()
        .reset_index()
    )
    options["option"] = [_option_name(f, m) for f, m in zip(options.features, options.model)]
    options["dim"] = options.features.map(uses_dim)
    rows: list[dict] = []
    for (dataset, target, n), cell in options.groupby(["dataset", "target", "n_labels"], sort=False):
        with_dim, without = cell[cell.dim], cell[~cell.dim]
        if with_dim.empty or without.empty:
            continue
        best_dim, best_other = with_dim.loc[with_dim.mae.idxmin()], without.loc[without.mae.idxmin()]
        ratio = best_dim.mae / best_other.mae
        rows.append(
            {
                "dataset": dataset,
                "target": target,
                "n_labels": int(n),
                "dim_option": best_dim.option,
                "dim_mae": best_dim.mae,
                "other_option": best_other.option,
                "other_mae": best_other.mae,
                "ratio": ratio,
                "won": bool(ratio <= LEVEL),
            }
        )
    columns = ["dataset", "target", "n_labels", "dim_option", "dim_mae", "other_option", "other_mae", "ratio", "won"]
    return pd.DataFrame(rows, columns=columns)


def _option_name(features: str, model: str) -> str:
    if model.startswith("SiteNetEnsemble"):
        start = "scratch" + features.removeprefix("untrained") if features.startswith("untrained") else features
        return model.replace("SiteNetEnsemble", f"SiteNetEnsemble from {start}", 1)
    if model != "fine-tuned":
        return f"{model} on {features}"
    if features.startswith("untrained"):
        return "fine-tuned from scratch" + features.removeprefix("untrained")
    if features.startswith("auto"):
        return 'fine-tuned, init="auto" ' + features.removeprefix("auto ")
    return f"fine-tuned from {features}"


def headline_sentence(table: pd.DataFrame) -> str:
    """One sentence: in how many (target, label count) cells the best DIM option is best or level."""
    return (
        f"The best model that uses a DIM encoder is best or level in {int(table.won.sum())} of {len(table)} "
        f"(target, label count) cells of the study, against the best without DIM (Magpie, CHGNet's features, the "
        "untrained encoder, training from scratch, ...)."
    )


def headline_lines(table: pd.DataFrame) -> list[str]:
    """Markdown: the ratio per target and label count, then each cell's two winning options (none without cells)."""
    if table.empty:
        return []
    counts = sorted(table.n_labels.unique())
    lines = [
        "| target | " + " | ".join(f"{n:,}" for n in counts) + " | best option without DIM |",
        "|---|" + "---|" * (len(counts) + 1),
    ]
    for (dataset, target), group in table.groupby(["dataset", "target"], sort=False):
        by_n = group.set_index("n_labels")
        cells = [_ratio_cell(by_n.loc[n]) if n in by_n.index else "" for n in counts]
        others = ", ".join(dict.fromkeys(group.other_option))
        lines.append(f"| {dataset} {target} | " + " | ".join(cells) + f" | {others} |")
    lines += [
        "",
        f"Ratio = test MAE of the best option that uses a DIM encoder / that of the best option that does not; "
        f"**bold**: at most {LEVEL:g} (DIM best or level). {headline_sentence(table)}",
        "",
        "| target | labels | best with DIM | MAE | best without DIM | MAE |",
        "|---|---|---|---|---|---|",
    ]
    first_seen = {key: k for k, key in enumerate(dict.fromkeys(zip(table.dataset, table.target)))}
    table = table.assign(order=[first_seen[key] for key in zip(table.dataset, table.target)])
    table = table.sort_values(["order", "n_labels"], kind="stable")
    lines += [
        f"| {row.dataset} {row.target} | {row.n_labels:,} | {row.dim_option} | {row.dim_mae:.4g} | "
        f"{row.other_option} | {row.other_mae:.4g} |"
        for row in table.itertuples()
    ]
    return lines


def _ratio_cell(row: pd.Series) -> str:
    text = f"{row.ratio:.3f}"
    return f"**{text}**" if row.won else text


def refresh_block(path: Path, name: str, lines: list[str]) -> bool:
    """Replace the text between ``<!-- generated: name -->`` and ``<!-- end: name -->`` in ``path``.

    Returns whether the file holds that block (a file without it is left alone).
    """
    path = Path(path)
    if not path.is_file():
        return False
    text = path.read_text()
    pattern = re.compile(rf"(<!-- generated: {re.escape(name)} -->\n).*?(<!-- end: {re.escape(name)} -->)", re.S)
    if not pattern.search(text):
        return False
    path.write_text(pattern.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text))
    return True
