"""Bradley-Terry ratings from battles: the arena scale, ties as half wins, intervals, style control, the CLI.

Real battles: PandaLM (999 rows, 5 models named by cmp_key, human ties) and the arena-format quirks.csv.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from arenapref.cli import app
from arenapref.data.io import read_pairs
from arenapref.data.record import A_WINS, B_WINS, TIE
from arenapref.rank import SCALE, battles_from_records, rank, response_chars, win_rates


@pytest.fixture(scope="module")
def pandalm(shared_data):
    records, _ = read_pairs(shared_data / "pandalm")
    return records


@pytest.fixture(scope="module")
def pandalm_ranking(pandalm):
    return rank(pandalm, n_bootstrap=40, seed=0)


def relabel(records, label_of):
    return [replace(r, label=label_of(r), soft_label=None) for r in records]


def ratings_by_model(result) -> dict[str, float]:
    return dict(zip(result.models, result.ratings))


def test_pandalm_battles_are_read_from_cmp_key(pandalm):
    battles = battles_from_records(pandalm)
    assert battles.models == ["bloom-7b", "cerebras-gpt-6.7B", "llama-7b", "opt-7b", "pythia-6.9b"]
    assert len(battles) == len(pandalm) == 999 and battles.skipped == 0
    assert battles.groups() == 1
    counts = battles.counts()
    assert counts["battles"].sum() == 2 * len(pandalm)
    assert (counts["wins"] + counts["ties"] + counts["losses"] == counts["battles"]).all()


def test_ratings_average_1000_on_the_arena_scale(pandalm_ranking, shared_data):
    assert pandalm_ranking.ratings.mean() == pytest.approx(1000, abs=1e-9)
    quirks, _ = read_pairs(shared_data / "arena-format" / "quirks.csv")
    assert rank(quirks, n_bootstrap=0).ratings.mean() == pytest.approx(1000, abs=1e-9)


def test_win_rates_follow_the_400_point_scale(pandalm_ranking):
    w = win_rates(np.array([1400.0, 1000.0]))
    assert w[0, 1] == pytest.approx(10 / 11)  # 400 points ahead: odds of 10 to 1
    m = pandalm_ranking.win_rate_matrix()
    assert list(m.index) == list(m.columns) == pandalm_ranking.table()["model"].tolist()
    off = ~np.eye(len(m), dtype=bool)
    np.testing.assert_allclose((m.to_numpy() + m.to_numpy().T)[off], 1.0)
    assert (m.to_numpy()[np.triu_indices(len(m), 1)] >= 0.5).all()  # rank order: row above beats row below


def test_a_model_that_wins_every_battle_is_rated_highest(pandalm):
    champion = "opt-7b"  # fourth of five on the real labels
    fixed = relabel(pandalm, lambda r: A_WINS if r.model_a == champion else B_WINS if r.model_b == champion else r.label)
    result = rank(fixed, n_bootstrap=0)
    table = result.table()
    assert table.loc[0, "model"] == champion
    assert table.loc[0, "losses"] == table.loc[0, "ties"] == 0
    assert np.isfinite(result.ratings).all()  # the weak L2 keeps an unbeaten model finite


def test_ties_count_as_half_a_win_each_way(pandalm):
    all_ties = rank(relabel(pandalm, lambda r: TIE), n_bootstrap=0)
    np.testing.assert_allclose(all_ties.ratings, 1000, atol=1e-6)
    # Each battle twice, once won by each side, is the same evidence as the battle twice tied.
    twice = pandalm + [replace(r, id=r.id + "/again") for r in pandalm]
    split = relabel(twice, lambda r: B_WINS if r.id.endswith("/again") else A_WINS)
    tied = relabel(twice, lambda r: TIE)
    np.testing.assert_allclose(rank(split, n_bootstrap=0).ratings, rank(tied, n_bootstrap=0).ratings, atol=1e-6)
    # A 50/50 set with real ties mixed in rates everyone equal as well.
    half = [r if i % 3 else replace(r, label=TIE) for i, r in enumerate(split)]
    np.testing.assert_allclose(rank(relabel(half, lambda r: r.label), n_bootstrap=0).ratings, 1000, atol=1e-6)


def test_ratings_do_not_depend_on_which_side_is_a(pandalm, pandalm_ranking):
    swapped = rank([r.swapped() for r in pandalm], n_bootstrap=0)
    np.testing.assert_allclose(swapped.ratings, pandalm_ranking.ratings, atol=1e-6)


def test_agrees_with_choix_an_independent_implementation(pandalm, pandalm_ranking):
    choix = pytest.importorskip("choix")
    battles = battles_from_records(pandalm)
    # choix takes (winner, loser) pairs without weights: a win enters twice, a tie once each way.
    data = []
    for a, b, outcome in zip(battles.a, battles.b, battles.outcome):
        data += [(a, b)] * 2 if outcome == 1 else [(b, a)] * 2 if outcome == 0 else [(a, b), (b, a)]
    params = choix.ilsr_pairwise(len(battles.models), data)
    theirs = 1000 + SCALE * (params - params.mean())
    ours = pandalm_ranking.ratings
    assert spearmanr(theirs, ours).statistic == pytest.approx(1.0)
    assert np.abs(theirs - ours).max() < 0.5


def test_bootstrap_intervals_contain_the_point_estimate_and_are_seeded(pandalm, pandalm_ranking):
    r = pandalm_ranking
    assert r.bootstrap_ratings.shape == (40, 5)
    assert (r.ci_low <= r.ratings).all() and (r.ratings <= r.ci_high).all()
    assert (r.ci_high - r.ci_low > 5).all()  # 999 battles: intervals of tens of points, not zero
    again = rank(pandalm, n_bootstrap=40, seed=0)
    np.testing.assert_array_equal(again.ci_low, r.ci_low)
    other = rank(pandalm, n_bootstrap=40, seed=1)
    assert not np.array_equal(other.ci_low, r.ci_low)


def test_style_control_changes_ratings_when_the_longer_answer_always_wins(pandalm):
    def longer_wins(r):
        la, lb = response_chars(r.response_a), response_chars(r.response_b)
        return A_WINS if la > lb else B_WINS if lb > la else TIE

    fixed = relabel(pandalm, longer_wins)
    plain = rank(fixed, n_bootstrap=0)
    styled = rank(fixed, n_bootstrap=10, style_control=True)
    assert plain.style_coef is None
    assert styled.style_coef > 1  # log-odds per unit of log length ratio: length explains the votes
    assert styled.style_points_per_doubling > 100
    assert styled.style_ci[0] <= styled.style_coef <= styled.style_ci[1]
    assert np.abs(styled.ratings - plain.ratings).max() > 5
    assert styled.ratings.std() < plain.ratings.std()  # what length explained is no longer in the ratings
    assert styled.ratings.mean() == pytest.approx(1000)


def test_arena_csv_model_names_and_disconnected_groups(shared_data):
    quirks, _ = read_pairs(shared_data / "arena-format" / "quirks.csv")
    result = rank(quirks, n_bootstrap=5)
    table = result.table()
    assert set(table["model"]) == {m for r in quirks for m in (r.model_a, r.model_b)}
    assert table["battles"].sum() == 2 * len(quirks)
    assert result.groups > 1  # a dozen battles among many models: not all connected


def test_rank_needs_model_names(shared_data):
    llmbar, _ = read_pairs(shared_data / "llmbar" / "LLMBar_Natural")
    with pytest.raises(ValueError, match="at least two named models"):
        rank(llmbar)


def test_cli_rank_writes_ratings_and_win_rates(shared_data, tmp_path):
    out = tmp_path / "ratings.csv"
    result = CliRunner().invoke(app, ["rank", str(shared_data / "pandalm"), "--bootstrap", "10", "--style-control",
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "llama-7b" in result.output and "length coefficient" in result.output
    ratings = pd.read_csv(out)
    assert list(ratings.columns) == ["rank", "model", "rating", "ci_low", "ci_high", "battles", "wins", "ties", "losses"]
    assert ratings["rank"].tolist() == [1, 2, 3, 4, 5]
    assert ratings["rating"].is_monotonic_decreasing
    matrix = pd.read_csv(tmp_path / "ratings-winrate.csv", index_col="model")
    assert list(matrix.index) == ratings["model"].tolist() == list(matrix.columns)


def test_cli_rank_without_model_names_fails_clearly(shared_data):
    result = CliRunner().invoke(app, ["rank", str(shared_data / "llmbar" / "LLMBar_Natural")])
    assert result.exit_code == 2
    assert "named models" in result.output
