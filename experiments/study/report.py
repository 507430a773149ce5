"""The study's page: tables, plots and settings generated from the CSV ledger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dim_sklearn.nn import CHANCE

from ..protocol import TARGETS, slugify
from .ensembles import ensemble_lines, seed_ensemble_lines
from .features import AUTO, FOUNDATION, HAND_CRAFTED, RAW_UNTRAINED, RBF_SCRATCH, SHIPPED, UNIONS, VARIANTS
from .headline import headline, headline_lines
from .options import option_lines

__all__ = ["summarise", "write_report"]

MODELS = ("RF", "MLP", "Linear", "fine-tuned")
BASE_FEATURES = ("DIM", SHIPPED, AUTO, "untrained", RBF_SCRATCH, RAW_UNTRAINED, *HAND_CRAFTED, *FOUNDATION)
UNION_FEATURES = ("Magpie", *UNIONS)
VARIANT_FEATURES = tuple(v.name for v in VARIANTS)
FEATURE_ORDER = (*BASE_FEATURES, *UNIONS, *VARIANT_FEATURES)
STYLE = {
    "DIM": ("tab:red", "o"),
    SHIPPED: ("tab:cyan", "*"),
    AUTO: ("darkcyan", "d"),
    RBF_SCRATCH: ("silver", "s"),
    "Magpie + DIM shipped": ("tab:cyan", "*"),
    "CHGNet": ("gold", "h"),
    "untrained": ("tab:gray", "s"),
    RAW_UNTRAINED: ("black", "x"),
    "Magpie": ("tab:blue", "^"),
    "SineCoulombMatrix": ("tab:green", "v"),
    "XRDPowderPattern": ("tab:purple", "D"),
    "OrbitalFieldMatrix": ("tab:brown", "P"),
    "Magpie + DIM": ("tab:red", "o"),
    "Magpie + untrained": ("tab:gray", "s"),
    "Magpie + SineCoulombMatrix": ("tab:green", "v"),
    "DIM, 2.5x epochs": ("tab:orange", "o"),
    "DIM, no domain negatives": ("tab:pink", "o"),
    "DIM, all data sets": ("tab:olive", "o"),
}
EXAMPLE = "../examples/magpie_plus_dim.py"
"""The FeatureUnion example, relative to the results folder (docs/results -> docs/examples)."""
DISCUSSION = "label_masking_discussion.md"


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count of the test MAE per target, model, features and label count."""
    return (
        frame.groupby(["dataset", "target", "model", "features", "n_labels"])["mae"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )


def _paired(frame: pd.DataFrame, model: str, a: str, b: str) -> pd.DataFrame:
    """Per label count: mean MAE of features a and b under one model, change of a vs b, a's paired wins."""
    rows = frame[frame.model == model]
    pivot = rows.pivot_table(index=["n_labels", "seed"], columns="features", values="mae")
    if a not in pivot or b not in pivot:
        return pd.DataFrame()
    pairs = pivot[[a, b]].dropna()
    out = pairs.groupby(level="n_labels").agg(["mean", "std"])
    out.columns = [f"{f} {s}" for f, s in out.columns]
    out["change %"] = 100 * (out[f"{a} mean"] / out[f"{b} mean"] - 1)
    out["wins"] = (pairs[a] < pairs[b]).groupby(level="n_labels").sum().astype(int)
    out["runs"] = pairs.groupby(level="n_labels").size()
    return out


def _best_hand_crafted(frame: pd.DataFrame, model: str = "RF") -> pd.Series:
    """Per label count, the hand-crafted feature set with the lowest mean test MAE under ``model``."""
    rows = frame[(frame.model == model) & frame.features.isin(list(HAND_CRAFTED))]
    if rows.empty:
        return pd.Series(dtype=object)
    means = rows.groupby(["n_labels", "features"]).mae.mean().unstack()
    return means.idxmin(axis=1)


def _fmt(mean: float, std: float) -> str:
    return "" if np.isnan(mean) else f"{mean:.4g} ± {0 if np.isnan(std) else std:.2g}"


def _headline(frame: pd.DataFrame) -> list[str]:
    vs_untrained = _paired(frame, "RF", "DIM", "untrained")
    best = _best_hand_crafted(frame)
    if vs_untrained.empty:
        return []
    lines = [
        "| labels | DIM | untrained encoder | best hand-crafted | DIM vs untrained | DIM wins | "
        "DIM vs best hand-crafted |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, row in vs_untrained.iterrows():
        hand = best.get(n)
        cell, change = "", ""
        if hand is not None:
            other = _paired(frame, "RF", "DIM", hand).loc[n]
            cell = f"{_fmt(other[f'{hand} mean'], other[f'{hand} std'])} ({hand})"
            change = f"{other['change %']:+.1f}%"
        lines.append(
            f"| {n} | {_fmt(row['DIM mean'], row['DIM std'])} | "
            f"{_fmt(row['untrained mean'], row['untrained std'])} | {cell} | {row['change %']:+.1f}% | "
            f"{row['wins']:.0f}/{row['runs']:.0f} | {change} |"
        )
    return lines


PAPER_FINETUNE_CHANGE = {
    50: 0.470 / 0.513,
    100: 0.379 / 0.431,
    250: 0.312 / 0.316,
    1000: 0.208 / 0.192,
    10000: 0.087 / 0.080,
}
"""Formation energy, fine-tuned from DIM / from scratch, in the paper's reference runs (docs/method.md, section 5)."""


def _finetune(frame: pd.DataFrame, with_paper: bool = False) -> list[str]:
    paired = _paired(frame, "fine-tuned", "DIM", "untrained")
    if paired.empty:
        return []
    tuned = frame[frame.model == "fine-tuned"]
    epochs = pd.to_numeric(tuned.epochs, errors="coerce")
    mean_epochs = epochs.groupby([tuned.n_labels, tuned.features]).mean().unstack()
    paper = " paper's change (MP e_form) |" if with_paper else ""
    lines = [
        "| labels | from scratch | from DIM | change | DIM wins | mean epochs (scratch / DIM) |" + paper,
        "|---|---|---|---|---|---|" + ("---|" if with_paper else ""),
    ]
    for n, row in paired.iterrows():
        ratio = PAPER_FINETUNE_CHANGE.get(int(n))
        lines.append(
            f"| {n} | {_fmt(row['untrained mean'], row['untrained std'])} | "
            f"{_fmt(row['DIM mean'], row['DIM std'])} | {row['change %']:+.1f}% | "
            f"{row['wins']:.0f}/{row['runs']:.0f} | {mean_epochs.loc[n, 'untrained']:.0f} / "
            f"{mean_epochs.loc[n, 'DIM']:.0f} |"
            + ((f" {100 * (ratio - 1):+.1f}% |" if ratio else " |") if with_paper else "")
        )
    return lines


def _full_table(summary: pd.DataFrame, mean_predictor: pd.Series) -> list[str]:
    counts = sorted(summary.n_labels.unique())
    lines = [
        "| model | features | " + " | ".join(f"{n} labels" for n in counts) + " |",
        "|---|---|" + "---|" * len(counts),
    ]
    lines.append(
        "| mean of the labels | | " + " | ".join(_fmt(mean_predictor.get(n, np.nan), 0) for n in counts) + " |"
    )
    for model in MODELS:
        for features in FEATURE_ORDER:
            rows = summary[(summary.model == model) & (summary.features == features)].set_index("n_labels")
            if rows.empty:
                continue
            cells = [
                f"{_fmt(rows.loc[n, 'mean'], rows.loc[n, 'std'])} ({int(rows.loc[n, 'count'])})"
                if n in rows.index
                else ""
                for n in counts
            ]
            lines.append(f"| {model} | {features} | " + " | ".join(cells) + " |")
    return lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panel(ax, summary: pd.DataFrame, model: str, features: tuple[str, ...], mean_predictor: pd.Series) -> None:
    """Test MAE against labels (log x) with std error bars, one line per feature set."""
    for name in features:
        rows = summary[(summary.model == model) & (summary.features == name)].sort_values("n_labels")
        if rows.empty:
            continue
        color, marker = STYLE[name]
        label = {
            "untrained": "untrained encoder" if model != "fine-tuned" else "from scratch",
            "DIM": "DIM" if model != "fine-tuned" else "from DIM",
            SHIPPED: SHIPPED if model != "fine-tuned" else "from DIM shipped",
            RBF_SCRATCH: "from scratch, radial-basis",
            AUTO: 'init="auto"',
        }.get(name, name)
        ax.errorbar(
            rows.n_labels,
            rows["mean"],
            yerr=rows["std"].fillna(0),
            color=color,
            marker=marker,
            capsize=3,
            label=label,
            lw=1.5 if name in ("DIM", "untrained", "Magpie + DIM") else 1,
        )
    if len(mean_predictor):
        ax.plot(mean_predictor.index, mean_predictor.values, "k--", lw=1, label="mean of the labels")
        ax.set_ylim(0, 1.3 * mean_predictor.max())
    counts = sorted(summary.n_labels.unique())
    ax.set_xscale("log")
    ax.set_xticks(counts)
    ax.set_xticklabels([str(n) for n in counts])
    ax.minorticks_off()


def _plot(summary: pd.DataFrame, mean_predictor: pd.Series, title: str, unit: str, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharey=True)
    for k, (ax, model) in enumerate(zip(axes.flat, MODELS)):
        _panel(ax, summary, model, BASE_FEATURES, mean_predictor)
        ax.set_title(model if model != "fine-tuned" else "SiteNetRegressor fine-tuned")
        if k >= 2:
            ax.set_xlabel("labelled training structures")
        if k % 2 == 0:
            ax.set_ylabel(f"test MAE ({unit})")
        if k in (0, len(MODELS) - 1) and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _subset_change(frame: pd.DataFrame, model: str, a: str, b: str) -> pd.DataFrame:
    """Per label count: mean and std over label subsets of the relative change of a vs b (%), a's wins, runs."""
    pivot = frame[frame.model == model].pivot_table(index=["n_labels", "seed"], columns="features", values="mae")
    if a not in pivot or b not in pivot:
        return pd.DataFrame(columns=["mean", "std", "wins", "runs"])
    pairs = pivot[[a, b]].dropna()
    change = (100 * (pairs[a] / pairs[b] - 1)).groupby(level="n_labels")
    return pd.DataFrame(
        {
            "mean": change.mean(),
            "std": change.std(),
            "runs": change.size(),
            "wins": (pairs[a] < pairs[b]).groupby(level="n_labels").sum(),
        }
    )


def _change_cell(changes: pd.DataFrame, n: int) -> str:
    if n not in changes.index:
        return ""
    row = changes.loc[n]
    return f"{row['mean']:+.1f}% ± {row['std']:.1f} ({row['wins']:.0f}/{row['runs']:.0f})"


def _scratch(group: pd.DataFrame) -> str:
    """The from-scratch start in the shipped encoder's architecture: ``RBF_SCRATCH`` where it was run (targets
    whose "untrained" fine-tuning predates the radial-basis default), else "untrained"."""
    return RBF_SCRATCH if RBF_SCRATCH in set(group[group.model == "fine-tuned"].features) else "untrained"


def _auto_section(frame: pd.DataFrame, meta: dict) -> list[str]:
    """``init="auto"`` beside its two starts: is it ever worse than the better of them beyond the seed spread?"""
    tuned = frame[frame.model == "fine-tuned"]
    kept = {tuple(key.split("|")): record["kept"] for key, record in meta.get(AUTO, {}).items()}
    lines, verdicts = [], []
    for (dataset, target), group in tuned.groupby(["dataset", "target"], sort=False):
        if AUTO not in set(group.features):
            continue
        scratch = _scratch(group)
        stats = group.groupby(["n_labels", "features"]).mae.agg(["mean", "std"])
        for n in sorted(group[group.features == AUTO].n_labels.unique()):
            if not all((n, name) in stats.index for name in (scratch, SHIPPED)):
                continue
            better = min((scratch, SHIPPED), key=lambda name: stats.loc[(n, name), "mean"])
            auto, best = stats.loc[(n, AUTO)], stats.loc[(n, better)]
            excess = auto["mean"] - best["mean"]
            within = excess <= best["std"]
            verdicts.append(within)
            seeds = group[(group.features == AUTO) & (group.n_labels == n)].seed
            choices = [kept.get((dataset, target, str(n), str(seed), AUTO, "fine-tuned")) for seed in seeds]
            lines.append(
                f"| {dataset} {target} | {n} | {_fmt(*stats.loc[(n, scratch)])} | {_fmt(*stats.loc[(n, SHIPPED)])} "
                f"| {_fmt(auto['mean'], auto['std'])} | {100 * excess / best['mean']:+.1f}% "
                f"| {sum(c == 'encoder' for c in choices)}/{sum(c is not None for c in choices)} "
                f"| {'yes' if within else 'no'} |"
            )
    if not lines:
        return []
    return [
        '## Never worse than from scratch: `init="auto"`',
        "",
        '`SiteNetRegressor(encoder="pretrained", init="auto")` fine-tunes from the shipped encoder and from random '
        "weights on the same validation split and keeps the start with the lower validation loss. Test MAE, mean ± "
        'std over seeds; "vs better": auto against the start with the lower mean test MAE; "kept shipped": '
        "seeds where auto kept the shipped encoder; \"within spread\": auto's mean exceeds the better start's by at "
        "most that start's seed std.",
        "",
        "| target | labels | from scratch | from shipped | auto | auto vs better | kept shipped | within spread |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
        "",
        f"Target (auto never worse than the better start beyond the seed spread): met in {sum(verdicts)} of "
        f"{len(verdicts)} cells.",
        "",
    ]


def _union_rows(group: pd.DataFrame, model: str) -> list[str]:
    """Per label count: Magpie and its unions under one model, and the per-subset change from adding DIM."""
    stats = group[group.model == model].groupby(["n_labels", "features"]).mae.agg(["mean", "std"])
    changes = _subset_change(group, model, "Magpie + DIM", "Magpie")
    lines = []
    for n in changes.index:
        cells = " | ".join(_fmt(*stats.loc[(n, name)]) if (n, name) in stats.index else "" for name in UNION_FEATURES)
        lines.append(f"| {model} | {n} | {cells} | {_change_cell(changes, n)} |")
    return lines


def _summary_table(frame: pd.DataFrame) -> list[str]:
    """One row per target and label count: what DIM changes, against each comparison."""
    lines = [
        "| target | labels | RF: DIM vs untrained (wins) | RF: DIM vs best hand-crafted | "
        "fine-tuning: DIM vs scratch (wins) | RF: Magpie + DIM vs Magpie, per subset (wins) |",
        "|---|---|---|---|---|---|",
    ]
    for (dataset, target), group in frame.groupby(["dataset", "target"], sort=False):
        rf, tuned = _paired(group, "RF", "DIM", "untrained"), _paired(group, "fine-tuned", "DIM", "untrained")
        best, union = _best_hand_crafted(group), _subset_change(group, "RF", "Magpie + DIM", "Magpie")
        for n in sorted(group.n_labels.unique()):
            cells = []
            for paired in (rf, tuned):
                cells.append(
                    f"{paired.loc[n, 'change %']:+.1f}% ({paired.loc[n, 'wins']:.0f}/{paired.loc[n, 'runs']:.0f})"
                    if n in paired.index
                    else "not run yet"
                )
            hand = best.get(n)
            vs_hand = (
                f"{_paired(group, 'RF', 'DIM', hand).loc[n, 'change %']:+.1f}% ({hand})" if hand is not None else ""
            )
            lines.append(
                f"| {dataset} {target} | {n} | {cells[0]} | {vs_hand} | {cells[1]} | {_change_cell(union, n)} |"
            )
    return [*lines, ""]


def _union_section(frame: pd.DataFrame, summary: pd.DataFrame, results_dir: Path) -> list[str]:
    """Magpie alone vs Magpie beside DIM, the untrained encoder and SineCoulombMatrix, for every target."""
    groups = [
        (key, group)
        for key, group in frame.groupby(["dataset", "target"], sort=False)
        if {"Magpie", "Magpie + DIM"} <= set(group.features)
    ]
    if not groups:
        return []
    header = [
        "| model | labels | " + " | ".join(UNION_FEATURES) + " | adding DIM to Magpie, per subset (DIM helps) |",
        "|---|---|" + "---|" * (len(UNION_FEATURES) + 1),
    ]
    lines = [
        "## Composition features beside DIM vectors",
        "",
        "A matminer user keeps the composition features and adds a structure representation beside them "
        "(`FeatureUnion`). Test MAE of Magpie alone and of Magpie beside DIM, the untrained encoder and "
        "SineCoulombMatrix; the change from adding DIM is the mean ± std over label subsets of the "
        "per-subset relative change (negative = DIM vectors help), with in brackets the subsets where "
        "Magpie + DIM beats Magpie.",
        "",
        "![Magpie vs Magpie + DIM](label_masking_magpie_unions.png)",
        "",
    ]
    plt = _pyplot()
    columns = min(3, len(groups))
    rows = -(-len(groups) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.9 * rows), squeeze=False)
    for ax, ((dataset, target), group) in zip(axes.flat, groups):
        part = summary[(summary.dataset == dataset) & (summary.target == target)]
        _panel(ax, part, "RF", UNION_FEATURES, group[group.model == "mean"].groupby("n_labels").mae.mean())
        ax.set_title(f"{dataset}: {target}", fontsize=9)
        ax.set_ylabel(f"RF test MAE ({_unit(dataset, target)})", fontsize=8)
        lines += [
            f"### {dataset}: {target}",
            "",
            *header,
            *(row for model in MODELS[:3] for row in _union_rows(group, model)),
            "",
        ]
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(results_dir / "label_masking_magpie_unions.png", dpi=100)
    plt.close(fig)
    example = results_dir / EXAMPLE
    if example.is_file():
        lines += [
            "### The pipeline to copy",
            "",
            "Pretrain on all the unlabelled structures once, freeze the featurizer, and put it beside "
            "matminer's composition features (`docs/examples/magpie_plus_dim.py`, run by the test suite; "
            "the study builds the same columns from its cached feature tables):",
            "",
            "```python",
            example.read_text().strip(),
            "```",
            "",
        ]
    return lines


SHIPPED_GOALS = {"RF": ((50, 100, 250), -10.0), "union": ((250, 1000), 0.0), "fine-tuned": ((50, 100, 250), -10.0)}
"""The shipped encoder's targets: (label counts, change in % it must beat at every one of them)."""


def _shipped_section(frame: pd.DataFrame, meta: dict) -> list[str]:
    """The shipped encoder on every target: RF vs untrained and vs the target's own DIM, union, fine-tuning."""
    groups = [
        (key, group)
        for key, group in frame.groupby(["dataset", "target"], sort=False)
        if SHIPPED in set(group.features)
    ]
    if not groups:
        return []
    info = meta.get("pretraining", {}).get(SHIPPED, {})
    lines = [
        "| target | labels | RF: shipped vs untrained (raw distances) | RF: shipped vs the target's DIM | "
        "RF: shipped vs CHGNet | RF: Magpie + shipped vs Magpie | fine-tuning: from shipped vs scratch |",
        "|---|---|---|---|---|---|---|",
    ]
    met, measured = dict.fromkeys(SHIPPED_GOALS, 0), dict.fromkeys(SHIPPED_GOALS, 0)
    for (dataset, target), group in groups:
        # The paper's raw-distance encoder at random weights: "untrained" on the targets measured before the
        # radial-basis default, RAW_UNTRAINED beside the radial-basis "untrained" since.
        untrained = RAW_UNTRAINED if RAW_UNTRAINED in set(group.features) else "untrained"
        comparisons = {
            "RF": ("RF", SHIPPED, untrained),
            "RF vs DIM": ("RF", SHIPPED, "DIM"),
            "RF vs CHGNet": ("RF", SHIPPED, "CHGNet"),
            "union": ("RF", "Magpie + DIM shipped", "Magpie"),
            "fine-tuned": ("fine-tuned", SHIPPED, _scratch(group)),
        }
        changes = {name: _subset_change(group, *spec) for name, spec in comparisons.items()}
        for n in sorted(group.n_labels.unique()):
            cells = " | ".join(_change_cell(changes[name], n) for name in comparisons)
            lines.append(f"| {dataset} {target} | {n} | {cells} |")
        for goal, (counts, limit) in SHIPPED_GOALS.items():
            change = changes[goal]
            if all(n in change.index for n in counts):
                measured[goal] += 1
                met[goal] += all(change.loc[n, "mean"] < limit for n in counts)
    goals = "; ".join(
        f"{label} at {'/'.join(map(str, SHIPPED_GOALS[goal][0]))} labels: "
        + (f"{met[goal]} of the {measured[goal]} targets measured" if measured[goal] else "not run yet")
        for goal, label in (
            ("RF", "RF on the shipped vectors at least 10% below the untrained encoder"),
            ("union", "Magpie + shipped below Magpie alone"),
            ("fine-tuned", "fine-tuning from shipped at least 10% below scratch"),
        )
    )
    corpus = f" on {info['n_train']:,} structures" if "n_train" in info else ""
    return [
        "## The shipped encoder",
        "",
        f"`DeepInfoMaxFeaturizer.from_pretrained()`: pretrained once{corpus} (the training structures of "
        "every data set, deduplicated; every target's test split, Matbench phonons fold 0 and their matches "
        "removed: `scripts/pretraining_corpus.py`), the same for every target, with no training by the user. "
        "Changes in test MAE are the mean ± std over label subsets (seeds for fine-tuning) of the per-subset "
        "relative change; in brackets, the subsets where the first is lower. Negative = the shipped encoder "
        "helps. The untrained baseline is the paper's raw-distance encoder at random weights (the stronger "
        "random encoder; on mp_crysxpp the radial-basis one is in the tables too). Fine-tuning from scratch is "
        'with the shipped encoder\'s architecture (radial-basis distances): on the six targets whose "untrained" '
        'runs predate that default, the rows "untrained (radial-basis)". CHGNet\'s `crystal_fea` '
        "(64-d, CHGNet 0.3.0 weights) was trained on Materials Project energies, forces, stresses and magnetic "
        "moments: on MP-derived targets it has seen related labels.",
        "",
        *lines,
        "",
        f"Targets: {goals}.",
        "",
    ]


def _investigation(frame: pd.DataFrame) -> list[str]:
    """The pretraining variants beside the study's DIM and the untrained encoder, with the change vs untrained."""
    compared = ("untrained", "DIM", *VARIANT_FEATURES)
    lines = []
    for (dataset, target), group in frame.groupby(["dataset", "target"], sort=False):
        if not set(VARIANT_FEATURES) & set(group.features):
            continue
        stats = group.groupby(["model", "n_labels", "features"]).mae.agg(["mean", "std"])
        lines += [
            f"### {dataset}: {target}",
            "",
            "| model | labels | " + " | ".join(compared) + " |",
            "|---|---|" + "---|" * len(compared),
        ]
        for model in MODELS[:3]:
            for n in sorted(group.n_labels.unique()):
                if (model, n, "untrained") not in stats.index:
                    continue
                base = stats.loc[(model, n, "untrained"), "mean"]
                cells = []
                for name in compared:
                    if (model, n, name) not in stats.index:
                        cells.append("")
                        continue
                    mean, std = stats.loc[(model, n, name)]
                    change = "" if name == "untrained" else f" ({100 * (mean / base - 1):+.1f}%)"
                    cells.append(_fmt(mean, std) + change)
                lines.append(f"| {model} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    if not lines:
        return []
    return [
        "## Investigation: other ways to pretrain",
        "",
        "Where DIM features lose, three changes to the pretraining were tried on the same splits, label subsets "
        "and models (change vs the untrained encoder in brackets; the encoders are in the settings below):",
        "",
        *(f"- **{v.name}**: {v.description}." for v in VARIANTS),
        "",
        *lines,
    ]


def _settings_text(settings: dict | None) -> str:
    """The pretraining settings of one encoder, briefly."""
    if not settings:
        return "paper"
    parts = [
        f"lr {settings['lr']:g}",
        f"{settings['batch_sites']} sites/batch",
        f"RBF {settings['n_rbf']}" if settings.get("n_rbf") else "raw distances",
    ]
    parts += [
        label
        for key, label in (("local_scrambled", "scrambled local negative"), ("batch_negatives", "batch negatives"))
        if settings.get(key)
    ]
    if settings.get("kl_weight", 0.1) != 0.1:
        parts.append(f"KL weight {settings['kl_weight']:g}")
    return ", ".join(parts)


def _settings(meta: dict, frame: pd.DataFrame) -> list[str]:
    budget, hardware = meta.get("budget", {}), meta.get("hardware", {})
    lines = [
        "## How this was run",
        "",
        f"Hardware: {hardware.get('cpus')} CPU cores ({hardware.get('processor')}), "
        f"GPU: {hardware.get('gpu') or 'none'}; torch {hardware.get('torch')}, Python {hardware.get('python')}. "
        "Commands below without a thread count used torch's default, one thread per core.",
        "",
        "Commands (each resumes from the CSV; wall time of that invocation; two invocations whose times overlap "
        "shared the cores):",
        "",
    ]
    lines += [
        f"- `{run['command']}` started {run['started']}, {run['wall_s'] / 60:.1f} min"
        + (f", {run['torch_threads']} torch thread(s)" if "torch_threads" in run else "")
        for run in meta.get("runs", [])
    ]
    part = np.where(frame.model == "fine-tuned", "fine-tuning", "scikit-learn models")
    seconds = pd.to_numeric(frame.seconds, errors="coerce").groupby(part).sum()
    budget = {k: v for k, v in budget.items() if k != "label_counts"}  # each command sets its own sizes
    lines += [
        "",
        "Compute inside the recorded fits: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()) + ".",
        "",
        f"Budget (the label counts are in the commands): `{budget}`.",
        "",
        "Pretraining (Deep InfoMax on the training structures of the split, no labels; compact encoder, "
        "AdamW, 5% held out for the DIM loss, early stopping on it, the best held-out epoch kept, "
        "`random_state=0`; encoders without recorded settings used the paper's: lr 1e-4, batches of 1,200 "
        "unique sites, raw distances, the paper's negatives):",
        "",
        "| encoder | settings | structures | epochs run (max) | best epoch | held-out DIM loss first → best "
        f"| held-out local / global DIM term first → best (chance {CHANCE:.3f}) "
        "| minutes in training epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    corpora = []
    for name, info in meta.get("pretraining", {}).items():
        terms = (
            f"{info['first_local_dim']:.3f} / {info['first_global_dim']:.3f} → "
            f"{info['best_local_dim']:.3f} / {info['best_global_dim']:.3f}"
            if "best_global_dim" in info
            else ""
        )
        lines.append(
            f"| {name} | {_settings_text(info.get('settings'))} | {info['n_train']} "
            f"| {info['epochs']} ({info['max_epochs']}) | {info['best_epoch']} "
            f"| {info['first_loss']:.4f} → {info['best_loss']:.4f} | {terms} | {info['seconds'] / 60:.1f} |"
        )
        if len(info.get("corpus", {})) > 1:
            corpora.append(f"- {name}: " + ", ".join(f"{k} {v}" for k, v in info["corpus"].items()))
    if corpora:
        lines += ["", "Pretraining corpora beyond the training split (structures kept per data set):", "", *corpora]
    lines += [
        "",
        "Features (every structure of the split, cached; failures become NaN rows, imputed by the training mean):",
        "",
        "| data set / features | columns | failed | seconds |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {key} | {info['width']} | {info['failed']} | {info['seconds']:.0f} |"
        for key, info in meta.get("featurisation", {}).items()
    ]
    return lines


def write_report(csv_path: Path, meta: dict, results_dir: Path) -> Path | None:
    """Write ``label_masking.md`` and one PNG per target into ``results_dir``; returns the page's path."""
    results_dir = Path(results_dir)
    if not Path(csv_path).is_file():
        return None
    frame = pd.read_csv(csv_path)
    summary = summarise(frame)
    lines = [
        "# Label-masking study: does Deep InfoMax pretraining pay?",
        "",
        "*Generated by `python matbench_submission/label_masking.py` from "
        "[label_masking.csv](label_masking.csv) (one row per fit); do not edit by hand.*",
        "",
    ]
    table = headline(frame)
    lines += (
        []
        if table.empty
        else [
            "## The best model with DIM against the best without",
            "",
            "Per target and label count, the option (features and model, or fine-tuning start) with the lowest mean "
            "test MAE among those that use a DIM encoder, against the same among those that do not.",
            "",
            *headline_lines(table),
            "",
        ]
    )
    lines += [
        "## Protocol",
        "",
        "For each target, Deep InfoMax pretrains the compact Site-Net encoder on the training "
        "structures of the split (labels unused). Then, for each number of labels, random labelled subsets "
        "of the training split (the same subsets for every method) train RandomForest (100 trees), "
        "MLPRegressor (one hidden layer of 64, standardised target, at most 200 iterations: the defaults) and "
        "LinearRegression on features "
        "standardised by their mean and std over all training structures (no labels needed; failed rows "
        "take the mean): DIM, the "
        "untrained encoder (same architecture, random weights), and matminer's Magpie ElementProperty of the "
        "composition, SineCoulombMatrix, XRDPowderPattern and OrbitalFieldMatrix (phonons only: "
        "0.2-0.9 s per structure). SiteNetRegressor is fine-tuned from random weights and from the DIM "
        "encoder on the first subsets. Every model is scored on the whole test split. ± is the standard "
        "deviation over label subsets; wins count subsets where DIM is lower (paired). Splits: 80/20 "
        '`train_test_split(arange(n), random_state=0)`; Matbench fold 0 for phonons. "Best hand-crafted" '
        "is picked per size on the test MAE, which flatters the baseline.",
        "",
    ]
    discussion = results_dir / DISCUSSION
    if discussion.is_file():
        lines += ["## Discussion", "", discussion.read_text().strip(), ""]
    lines += [
        "## Summary: change in test MAE from DIM pretraining",
        "",
        "RF on DIM features vs the untrained encoder and vs the best hand-crafted features; fine-tuning "
        "from DIM vs from scratch. Negative = DIM better.",
        "",
    ]
    lines += _summary_table(frame)

    for (dataset, target), group in frame.groupby(["dataset", "target"], sort=False):
        slug = slugify(f"{dataset}_{target}")
        unit = _unit(dataset, target)
        part = summary[(summary.dataset == dataset) & (summary.target == target)]
        mean_predictor = group[group.model == "mean"].groupby("n_labels").mae.mean()
        _plot(part, mean_predictor, f"{dataset}: {target}", unit, results_dir / f"label_masking_{slug}.png")
        lines += [
            f"## {dataset}: {target} ({unit})",
            "",
            f"![{dataset} {target}](label_masking_{slug}.png)",
            "",
            "RandomForest on DIM features vs the untrained encoder and the best hand-crafted features:",
            "",
            *_headline(group),
            "",
        ]
        tuned = _finetune(group, with_paper=target == "formation_energy_per_atom")
        if tuned:
            lines += ["SiteNetRegressor fine-tuned from scratch vs from the DIM encoder:", "", *tuned, ""]
        lines += ["All methods, test MAE mean ± std (runs):", "", *_full_table(part, mean_predictor), ""]
    lines += _shipped_section(frame, meta)
    lines += _auto_section(frame, meta)
    ensembles = ensemble_lines(frame)
    if ensembles:
        lines += [
            "## SiteNetEnsemble: networks on the folds of the labels, blended with a composition forest",
            "",
            *ensembles,
            "",
        ]
    options = option_lines(frame)
    if options:
        lines += ["## Fine-tuning options, one network against the defaults", "", *options, ""]
    seeded = seed_ensemble_lines(frame)
    if seeded:
        lines += ["## Seed ensembles: five networks on all the labels", "", *seeded, ""]
    lines += _union_section(frame, summary, results_dir)
    lines += _investigation(frame)
    lines += _settings(meta, frame)
    page = results_dir / "label_masking.md"
    page.write_text("\n".join(lines) + "\n")
    return page


def _unit(dataset: str, target: str) -> str:
    return next((t.unit for t in TARGETS if (t.dataset, t.column) == (dataset, target)), "")
