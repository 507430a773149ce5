"""The study's headline table: best option with DIM against best without, and the pages that quote it."""

from pathlib import Path

import pandas as pd
import pytest

from experiments.study.ensembles import ensemble_lines, ensemble_table, seed_ensemble_lines, seed_ensemble_table
from experiments.study.headline import headline, headline_lines, headline_sentence, refresh_block, uses_dim
from experiments.study.options import option_lines, option_table

REPO = Path(__file__).resolve().parents[1]


def _ledger(rows):
    return pd.DataFrame(
        [dict(dataset="d", target="t", n_labels=n, seed=s, features=f, model=m, mae=v) for n, s, f, m, v in rows]
    )


@pytest.mark.parametrize(
    ("features", "dim"),
    [
        ("DIM", True),
        ("DIM shipped", True),
        ("Magpie + DIM", True),
        ("auto (DIM shipped or scratch)", True),
        ("CHGNet + DIM", False),
        ("Magpie", False),
        ("untrained (radial-basis)", False),
    ],
)
def test_an_option_counts_as_dim_by_its_name_and_a_chgnet_union_on_chgnets_side(features, dim):
    assert uses_dim(features) is dim


def test_the_best_mean_of_each_side_decides_the_cell_and_the_mean_predictor_is_left_out():
    table = headline(
        _ledger(
            [
                (50, 0, "none", "mean", 0.1),  # never a candidate
                (50, 0, "DIM", "RF", 0.50),
                (50, 1, "DIM", "RF", 0.30),  # mean 0.40
                (50, 0, "DIM", "fine-tuned", 0.45),
                (50, 0, "Magpie", "RF", 0.38),
                (50, 1, "Magpie", "RF", 0.42),  # mean 0.40: level
                (100, 0, "DIM", "fine-tuned", 0.2),
                (100, 0, "CHGNet + DIM", "RF", 0.1),  # CHGNet's side
            ]
        )
    )
    first, second = table.itertuples()
    assert (first.dim_option, first.other_option, first.ratio, first.won) == ("RF on DIM", "RF on Magpie", 1.0, True)
    assert second.dim_option == "fine-tuned from DIM" and second.other_option == "RF on CHGNet + DIM"
    assert second.ratio == pytest.approx(2.0) and not second.won
    assert "best or level in 1 of 2" in headline_sentence(table)
    assert "| d t | **1.000** | 2.000 | RF on Magpie, RF on CHGNet + DIM |" in headline_lines(table)


def test_a_marked_block_is_replaced_and_the_rest_of_the_page_kept(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("before\n<!-- generated: headline -->\nold\n<!-- end: headline -->\nafter\n")
    assert refresh_block(page, "headline", ["new 1", "new 2"])
    assert page.read_text() == "before\n<!-- generated: headline -->\nnew 1\nnew 2\n<!-- end: headline -->\nafter\n"
    assert not refresh_block(page, "other", ["x"]) and not refresh_block(tmp_path / "missing.md", "headline", [])


def test_the_pages_quote_the_headline_of_the_published_ledger():
    table = headline(pd.read_csv(REPO / "docs" / "results" / "label_masking.csv"))
    assert len(table) == 29
    for path, lines in [
        (REPO / "docs" / "which-features.md", headline_lines(table)),
        (REPO / "README.md", [headline_sentence(table)]),
        (REPO / "docs" / "results" / "label_masking.md", headline_lines(table)),
    ]:
        assert "\n".join(lines) in path.read_text(), f"{path.name}: run python -m experiments study --report-only"


def test_an_ensemble_from_scratch_counts_without_dim_and_is_named_by_its_start():
    table = headline(
        _ledger(
            [
                (50, 0, "DIM shipped", "SiteNetEnsemble", 0.30),
                (50, 0, "DIM shipped", "SiteNetEnsemble, networks only", 0.35),
                (50, 0, "untrained", "SiteNetEnsemble", 0.32),
                (50, 0, "Magpie", "RF", 0.33),
            ]
        )
    )
    row = table.iloc[0]
    assert row.dim_option == "SiteNetEnsemble from DIM shipped" and row.other_option == "SiteNetEnsemble from scratch"
    assert row.ratio == pytest.approx(0.30 / 0.32)


def test_options_with_a_magpie_head_or_a_longer_budget_keep_their_start_and_side():
    table = headline(
        _ledger(
            [
                (50, 0, "DIM shipped (4x budget)", "fine-tuned", 0.31),
                (50, 0, "untrained (Magpie head)", "SiteNetEnsemble", 0.30),
            ]
        )
    )
    row = table.iloc[0]
    assert row.dim_option == "fine-tuned from DIM shipped (4x budget)"
    assert row.other_option == "SiteNetEnsemble from scratch (Magpie head)" and not row.won


def test_the_ensemble_table_compares_on_the_subsets_the_ensembles_ran_on():
    rows = [(50, seed, "Magpie", "RF", 0.40 + 0.1 * seed) for seed in range(4)]  # seeds 2, 3: forest only
    rows += [(50, seed, "DIM shipped", "fine-tuned", 0.50) for seed in range(2)]
    rows += [(50, seed, "DIM shipped", "SiteNetEnsemble", 0.36) for seed in range(2)]
    rows += [(50, seed, "DIM shipped", "SiteNetEnsemble, networks only", 0.38) for seed in range(2)]
    rows += [(50, 0, "untrained", "SiteNetEnsemble", 0.45)]  # one seed of two: no mean shown
    row = ensemble_table(_ledger(rows)).iloc[0]
    assert row.subsets == 2 and row["RF, Magpie"] == pytest.approx(0.45)  # seeds 0 and 1 only
    assert row["change"] == pytest.approx(100 * (0.36 / 0.45 - 1))
    assert row["ensemble, scratch"] != row["ensemble, scratch"]  # NaN
    lines = ensemble_lines(_ledger(rows))
    assert "| d t | 50 | 2 | 0.45 | 0.5 | 0.38 | **0.36** |  |  |  | -20.0% |" in lines  # no Magpie-head runs
    assert ensemble_lines(_ledger(rows[:4])) == []


def test_the_seed_ensemble_table_sets_seeds_beside_folds_and_one_network_per_start():
    whole, scratch = "DIM shipped (whole cosine schedule)", "untrained (whole cosine schedule)"
    rows = [(250, seed, whole, "fine-tuned", 0.50 + 0.1 * seed) for seed in range(3)]  # seed 2: no ensembles
    rows += [(250, seed, whole, "SiteNetEnsemble, networks only", 0.45) for seed in range(3)]
    rows += [(250, seed, whole, "SiteNetEnsemble, seeds on all labels", 0.40) for seed in range(2)]
    rows += [(250, 0, scratch, "SiteNetEnsemble, seeds on all labels", 0.42)]  # no single network on seed 0
    rows += [(250, 1, scratch, "fine-tuned", 0.30)]
    fast = "DIM shipped (whole cosine schedule from 3e-3)"  # listed before scratch, whatever the ledger's order
    rows += [(250, 0, fast, "SiteNetEnsemble, seeds on all labels", 0.35), (250, 0, fast, "fine-tuned", 0.6)]
    table = seed_ensemble_table(_ledger(rows))
    assert list(table.start) == ["shipped", "shipped, 3e-3", "scratch"] and list(table.subsets) == [2, 1, 1]
    dim = table.iloc[0]
    assert dim["1 net"] == pytest.approx(0.55) and dim["5 on folds"] == pytest.approx(0.45)
    assert table.iloc[2]["1 net"] != table.iloc[2]["1 net"]  # NaN: seed 1 is not a seed of its ensembles
    lines = seed_ensemble_lines(_ledger(rows))
    assert "| d t | 250 | shipped | 0.55 | 0.45 | **0.4** |" in lines
    assert "| d t | 250 | scratch |  |  | **0.42** |" in lines
    assert "| d t | 250 | shipped, 3e-3 | 0.6 |  | **0.35** |" in lines  # no ensembles on folds
    assert any("mean over the 1-2 label subsets per row" in line for line in lines)
    assert seed_ensemble_lines(_ledger(rows[:6])) == []


def test_the_fine_tuning_page_quotes_the_seed_ensemble_table_of_the_published_ledger():
    lines = seed_ensemble_lines(pd.read_csv(REPO / "docs" / "results" / "label_masking.csv"))
    for page in ("fine-tuning.md", "results/label_masking.md"):
        text = (REPO / "docs" / page).read_text()
        assert "\n".join(lines) in text, f"{page}: run python -m experiments study --report-only"


def test_the_pages_quote_the_ensemble_table_of_the_published_ledger():
    lines = ensemble_lines(pd.read_csv(REPO / "docs" / "results" / "label_masking.csv"))
    assert lines
    for page in ("fine-tuning.md", "which-features.md", "results/label_masking.md"):
        text = (REPO / "docs" / page).read_text()
        assert "\n".join(lines) in text, f"{page}: run python -m experiments study --report-only"


def test_the_option_table_pairs_each_option_with_the_defaults_on_its_subsets():
    rows = [(1000, seed, "DIM shipped", "fine-tuned", 0.20 + 0.1 * seed) for seed in range(4)]  # 2, 3: default only
    rows += [(1000, seed, "untrained", "fine-tuned", 0.40) for seed in range(4)]
    rows += [(1000, seed, "DIM shipped (cosine schedule)", "fine-tuned", 0.15) for seed in range(2)]
    rows += [(1000, 0, "untrained (cosine schedule)", "fine-tuned", 0.30)]  # one seed of two: no mean shown
    rows += [(1000, seed, "DIM shipped", "SiteNetEnsemble", 0.10) for seed in range(2)]  # not a single network
    rows += [(250, seed, "DIM shipped", "fine-tuned", 0.3) for seed in range(2)]  # no option ran: no row
    table = option_table(_ledger(rows))
    assert len(table) == 1
    row = table.iloc[0]
    assert row.n_labels == 1000 and row.subsets == 2
    assert row["shipped"] == pytest.approx(0.25) and row["cosine"] == 0.15 and row["scratch"] == 0.40
    assert row["scratch, cosine"] != row["scratch, cosine"] and row["Magpie head"] != row["Magpie head"]
    lines = option_lines(_ledger(rows))
    shipped, scratch = lines.index("**From the shipped encoder**"), lines.index("**From random weights**")
    assert "| d t | 1,000 | 2 | 0.25 |  |  | **0.15** |  |" in lines[shipped:scratch]
    assert "| d t | 1,000 | 2 | 0.4 |  |  |  |  |" in lines[scratch:]
    assert option_lines(_ledger(rows[:8])) == []


def test_the_fine_tuning_guide_quotes_the_option_table_of_the_published_ledger():
    lines = option_lines(pd.read_csv(REPO / "docs" / "results" / "label_masking.csv"))
    assert lines
    for page in ("fine-tuning.md", "results/label_masking.md"):
        text = (REPO / "docs" / page).read_text()
        assert "\n".join(lines) in text, f"{page}: run python -m experiments study --report-only"


def test_a_ledger_with_one_side_only_has_no_headline():
    table = headline(_ledger([(50, 0, "untrained (radial-basis)", "fine-tuned", 0.3)]))
    assert table.empty and headline_lines(table) == []
