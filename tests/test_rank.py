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


# --- fractional outcomes and tie models ---------------------------------------------------------------------------
from arenapref.rank import Battles, fit_tie_model, outcome_probabilities


def battles_of(pairs, shares, copies=1):
    """Battles between named models: pairs [(a, b)], shares [(p_a, p_b, p_tie)], each repeated `copies` times."""
    models = sorted({m for p in pairs for m in p})
    a = np.repeat([models.index(p[0]) for p in pairs], copies)
    b = np.repeat([models.index(p[1]) for p in pairs], copies)
    probs = np.repeat(np.asarray(shares, dtype=float), copies, axis=0)
    return Battles(models=models, a=a, b=b, outcome=probs[:, 0] + probs[:, 2] / 2,
                   log_length_ratio=np.zeros(len(a)), probs=probs)


def test_fractional_outcomes_against_a_hand_computed_chain():
    # On a chain x - y - z each link's rating gap is its own logit of A's score, p_a + p_tie / 2:
    # x vs y scores 0.7 + 0.2 / 2 = 0.8 -> 400 * log10(0.8 / 0.2) = 240.82 points; y vs z 0.6 -> 70.44 points.
    battles = battles_of([("x", "y"), ("y", "z")], [(0.7, 0.1, 0.2), (0.5, 0.3, 0.2)], copies=500)
    r = ratings_by_model(rank(battles, n_bootstrap=0))
    assert r["x"] - r["y"] == pytest.approx(400 * np.log10(4), abs=0.05)
    assert r["y"] - r["z"] == pytest.approx(400 * np.log10(1.5), abs=0.05)
    assert np.mean(list(r.values())) == pytest.approx(1000)


def test_a_fractional_battle_is_its_shares_of_votes():
    # ten battles judged (0.7, 0.1, 0.2) carry the same evidence as 7 wins, 1 loss and 2 ties
    judged = battles_of([("x", "y"), ("y", "z"), ("x", "z")], [(0.7, 0.1, 0.2), (0.4, 0.4, 0.2), (0.5, 0.2, 0.3)],
                        copies=10)
    votes = []
    for pair, counts in [(("x", "y"), (7, 1, 2)), (("y", "z"), (4, 4, 2)), (("x", "z"), (5, 2, 3))]:
        for label, n in enumerate(counts):
            votes += [(pair, np.eye(3)[label])] * n
    voted = battles_of([p for p, _ in votes], [s for _, s in votes])
    for tie_model in ("half", "davidson", "rao-kupper"):
        np.testing.assert_allclose(rank(judged, n_bootstrap=0, tie_model=tie_model).ratings,
                                   rank(voted, n_bootstrap=0, tie_model=tie_model).ratings, atol=1e-4)


def test_votes_as_one_hot_probabilities_give_the_same_ranking(pandalm, pandalm_ranking):
    from arenapref.data.record import hard_labels

    as_probs = battles_from_records(pandalm, probs=np.eye(3)[hard_labels(pandalm)])
    np.testing.assert_allclose(rank(as_probs, n_bootstrap=40, seed=0).ratings, pandalm_ranking.ratings, atol=1e-9)
    np.testing.assert_allclose(rank(as_probs, n_bootstrap=40, seed=0).ci_low, pandalm_ranking.ci_low, atol=1e-9)


def test_davidson_and_rao_kupper_against_their_closed_forms():
    # Two models, 60 wins, 25 losses, 15 ties (x100): both tie models are saturated, so the fit reproduces the
    # shares exactly. Davidson: d = log(60 / 25), nu = 15 / sqrt(60 * 25). Rao-Kupper: sigmoid(d - eta) = 0.60,
    # sigmoid(-d - eta) = 0.25.
    battles = battles_of([("x", "y")] * 3, np.eye(3), copies=1)
    weights = np.array([6000.0, 2500.0, 1500.0])
    beta, _, log_nu = fit_tie_model(battles, weights, tie_model="davidson")
    assert beta[0] - beta[1] == pytest.approx(np.log(60 / 25), abs=1e-4)
    assert np.exp(log_nu) == pytest.approx(15 / np.sqrt(60 * 25), abs=1e-4)
    beta, _, eta = fit_tie_model(battles, weights, tie_model="rao-kupper")
    logit = lambda p: np.log(p / (1 - p))
    assert beta[0] - beta[1] == pytest.approx((logit(0.60) - logit(0.25)) / 2, abs=1e-4)
    assert eta == pytest.approx(-(logit(0.60) + logit(0.25)) / 2, abs=1e-4)
    for tie_model, param in (("davidson", log_nu), ("rao-kupper", eta)):
        d = beta[0] - beta[1] if tie_model == "rao-kupper" else np.log(60 / 25)
        np.testing.assert_allclose(outcome_probabilities(np.array(d), tie_model, param), [0.60, 0.25, 0.15], atol=1e-4)


def test_tie_models_on_real_votes(pandalm, pandalm_ranking):
    tie_rate = np.mean([r.label == TIE for r in pandalm])
    for tie_model in ("davidson", "rao-kupper"):
        result = rank(pandalm, n_bootstrap=40, tie_model=tie_model)
        assert result.tie_param is not None and 0 < result.tie_rate_between_equals < 1
        # PandaLM's models are close: the tie share between equals is near the data's tie rate
        assert result.tie_rate_between_equals == pytest.approx(tie_rate, abs=0.05)
        assert spearmanr(result.ratings, pandalm_ranking.ratings).statistic == pytest.approx(1.0)
        m = result.win_rate_matrix().to_numpy()
        off = ~np.eye(len(m), dtype=bool)
        np.testing.assert_allclose((m + m.T)[off], 1.0)
        assert (result.ci_low <= result.ratings).all() and (result.ratings <= result.ci_high).all()
    with pytest.raises(ValueError, match="tie model"):
        rank(pandalm, tie_model="bradley")


def test_bootstrap_by_prompt_resamples_whole_prompts(pandalm):
    battles = battles_from_records(pandalm)
    assert len(set(battles.prompt_groups)) == len({r.prompt_key for r in pandalm}) < len(pandalm)
    by_prompt = rank(battles, n_bootstrap=30, bootstrap_by="prompt")
    by_battle = rank(battles, n_bootstrap=30, bootstrap_by="battle")
    np.testing.assert_allclose(by_prompt.ratings, by_battle.ratings)
    assert by_prompt.paired_with(rank(battles, n_bootstrap=30, bootstrap_by="prompt"))
    assert not by_prompt.paired_with(by_battle)
    assert not by_prompt.paired_with(rank(battles, n_bootstrap=30, bootstrap_by="prompt", seed=1))


def test_style_control_refuses_battle_logs_without_texts(shared_data):
    votes, _ = read_pairs(shared_data / "arena-votes")
    with pytest.raises(ValueError, match="style-control needs the answers' lengths.*battle log"):
        rank(votes, n_bootstrap=0, style_control=True)
    result = CliRunner().invoke(app, ["rank", str(shared_data / "arena-votes"), "--style-control", "-b", "0"])
    assert result.exit_code == 2 and "battle log without texts" in " ".join(result.output.split())


def test_cli_rank_with_a_tie_model_and_vote_shares(shared_data):
    result = CliRunner().invoke(app, ["rank", str(shared_data / "pandalm"), "-b", "5", "--tie-model", "davidson",
                                      "--vote-shares"])
    assert result.exit_code == 0, result.output
    assert "davidson tie model: P(tie) between two equally rated models" in " ".join(result.output.split())
