"""Judge-made leaderboards: battles scored by a judge (cross-fitted so that no judge scores a prompt it was trained
on), ratings from its probabilities, agreement with the human ranking, answer folders as FastChat and
Arena-Hard-Auto write them, and the `rank --judge / --cross-fit` command.

Real data: PandaLM (999 battles between 5 models on 170 prompts, three annotators) and its answers rewritten in
FastChat's MT-Bench layout (question.jsonl + model_answer/<model>.jsonl), which is what a user's benchmark
folder looks like.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import arenapref.leaderboard as leaderboard
from arenapref.cli import app
from arenapref.config import FeaturesConfig
from arenapref.data.answers import is_answer_folder, read_answer_folder
from arenapref.errors import ArenaprefError
from arenapref.leaderboard import agreement, cross_fit_judge, pairwise_agreement
from arenapref.models import build_model
from arenapref.rank import Ranking, battles_from_records, rank

SMALL = dict(n_estimators=30, tfidf_max_features=2000, svd_components=8, n_jobs=1)
SMALL_SET = [x for k, v in SMALL.items() for x in ("--set", f"model.{k}={v}")]


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def pandalm(shared_data):
    from arenapref.data.io import read_pairs

    return read_pairs(shared_data / "pandalm")[0]


@pytest.fixture(scope="module")
def small_judge(pandalm, tmp_path_factory):
    """A small features judge trained on all of PandaLM, saved."""
    path = tmp_path_factory.mktemp("judge") / "features"
    build_model(FeaturesConfig(**SMALL)).fit(pandalm).save(path)
    return path


# --- cross-fitting ------------------------------------------------------------------------------------------------
def test_cross_fitted_judges_never_score_a_prompt_they_were_trained_on(pandalm, monkeypatch):
    seen: list[tuple[set, set]] = []  # (prompts a judge was fitted on, prompts it then scored), per judge
    real_build = leaderboard.build_model

    def spying_build(config):
        model = real_build(config)
        fit, predict = model.fit, model.predict_proba
        entry = (set(), set())

        def spy_fit(records, **kw):
            entry[0].update(r.prompt_key for r in records)
            return fit(records, **kw)

        def spy_predict(records, **kw):
            entry[1].update(r.prompt_key for r in records)
            return predict(records, **kw)

        model.fit, model.predict_proba = spy_fit, spy_predict
        seen.append(entry)
        return model

    monkeypatch.setattr(leaderboard, "build_model", spying_build)
    extra = [replace(r, id=f"extra/{r.id}") for r in pandalm[:60]]  # pairs from "elsewhere" sharing prompts
    scores = cross_fit_judge(pandalm, FeaturesConfig(**SMALL), k=3, extra_train=extra)
    assert len(seen) == 3 and scores.cross_fitted
    for fitted_on, scored in seen:
        assert scored and fitted_on and not fitted_on & scored
    # the bookkeeping the scores carry says the same, row by row
    for r, fold in zip(pandalm, scores.fold_ids):
        assert r.prompt_key not in scores.trained_prompts[fold]
    assert set(scores.fold_ids) == {0, 1, 2}
    np.testing.assert_allclose(scores.probs.sum(axis=1), 1)
    assert scores.frame(pandalm).columns.tolist() == ["id", "model_a", "model_b", "fold", "p_a", "p_b", "p_tie"]


def test_cross_fit_needs_labels_and_enough_prompts(pandalm):
    unlabelled = [replace(r, label=None, soft_label=None) for r in pandalm[:50]]
    with pytest.raises(ArenaprefError, match="has none"):
        cross_fit_judge(unlabelled, FeaturesConfig(**SMALL), k=3)
    with pytest.raises(ArenaprefError, match="at least 2 folds"):
        cross_fit_judge(pandalm, FeaturesConfig(**SMALL), k=1)


def test_judge_ranking_from_cross_fitted_probabilities_agrees_with_people(pandalm):
    scores = cross_fit_judge(pandalm, FeaturesConfig(**SMALL), k=3)
    judge = rank(battles_from_records(pandalm, probs=scores.probs), n_bootstrap=30, bootstrap_by="prompt")
    human = rank(battles_from_records(pandalm), n_bootstrap=30, bootstrap_by="prompt")
    assert human.paired_with(judge)
    result = agreement(human, judge)
    assert result.spearman > 0.5  # measured 1.0 with the default features settings (BENCHMARKS.md)
    lo, hi = result.intervals["pairwise"]
    assert 0 <= lo <= result.pairwise <= hi <= 1
    # a judge whose probabilities hug 0.5 orders models on a compressed scale
    assert result.spread_ratio < 1


# --- agreement metrics --------------------------------------------------------------------------------------------
def ranking_of(ratings: dict[str, float]) -> Ranking:
    models = list(ratings)
    counts = pd.DataFrame({"model": models, "battles": 1, "wins": 0, "ties": 0, "losses": 0})
    r = np.array(list(ratings.values()), dtype=float)
    return Ranking(models, r, r, r, counts)


def test_agreement_metrics_on_a_hand_computed_case():
    # people: a > b > c > d; the judge swaps b and c and compresses the scale.
    human = ranking_of({"a": 1150, "b": 1050, "c": 950, "d": 850})
    judge = ranking_of({"d": 940, "c": 1020, "b": 1000, "a": 1040})
    result = agreement(human, judge)
    assert result.spearman == pytest.approx(0.8)   # 1 - 6 * (1 + 1) / (4 * 15)
    assert result.kendall == pytest.approx(4 / 6)  # 5 concordant pairs, 1 discordant: (5 - 1) / 6
    assert result.pairwise == pytest.approx(5 / 6)
    assert result.max_abs_diff == pytest.approx(110)  # a: 1040 - 1150
    assert result.mean_abs_diff == pytest.approx((110 + 50 + 70 + 90) / 4)
    assert result.spread_ratio == pytest.approx(np.std([1040, 1000, 1020, 940]) / np.std([1150, 1050, 950, 850]))
    table = result.table()
    assert table["model"].tolist() == ["a", "b", "c", "d"]
    assert table["judge rank"].tolist() == [1, 3, 2, 4] and table["moved"].tolist() == [0, 1, -1, 0]
    assert result.moved()["model"].tolist() == ["b", "c"]
    assert result.intervals is None  # no resamples
    summary = result.summary()
    assert summary["metric"].tolist()[:3] == ["Spearman correlation", "Kendall tau", "pairs in the same order"]
    assert json.dumps(result.to_dict())  # plain data, for the report and the demo


def test_pairwise_agreement_counts_a_tie_on_one_side_as_a_disagreement():
    assert pairwise_agreement(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 1
    assert pairwise_agreement(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 3.0])) == pytest.approx(2 / 3)


def test_agreement_compares_the_models_both_rate_and_says_so():
    result = agreement(ranking_of({"a": 1100, "b": 1000, "c": 900}), ranking_of({"a": 1050, "b": 950, "z": 1000}))
    assert result.models == ["a", "b"] and result.spearman == pytest.approx(1)
    assert any("2 models both rankings rate" in n for n in result.notes)
    with pytest.raises(ArenaprefError, match="share 1 model"):
        agreement(ranking_of({"a": 1, "b": 2}), ranking_of({"a": 1, "z": 2}))


def test_unpaired_rankings_get_no_agreement_intervals(pandalm):
    human = rank(pandalm, n_bootstrap=10, bootstrap_by="prompt", seed=0)
    other = rank(pandalm, n_bootstrap=10, bootstrap_by="prompt", seed=1)
    result = agreement(human, other)
    assert result.intervals is None and any("same resamples" in n for n in result.notes)


# --- answer folders -------------------------------------------------------------------------------------------------
def write_mt_bench_folder(records, root, layout="mt_bench"):
    """The PandaLM answers as a benchmark folder: question.jsonl + model_answer/<model>.jsonl.

    layout "mt_bench" (FastChat: turns are strings), "arena_hard" (Arena-Hard-Auto v0.1: turns are {content}),
    "arena_hard_v2" (uid / model / messages, no question file)."""
    questions, answers = {}, {}
    for r in records:
        qid = r.prompt_key[:12]
        questions.setdefault(qid, r.prompt)
        for model, text in ((r.model_a, r.response_a), (r.model_b, r.response_b)):
            answers.setdefault(model, {}).setdefault(qid, text)
    folder = root / "model_answer"
    folder.mkdir(parents=True)
    wrap = (lambda t: {"content": t, "token_len": len(t.split())}) if layout == "arena_hard" else (lambda t: t)
    if layout != "arena_hard_v2":
        with open(root / "question.jsonl", "w", encoding="utf-8") as f:
            for qid, prompt in questions.items():
                f.write(json.dumps({"question_id": qid, "category": "writing", "turns": [wrap(t) for t in prompt]}) + "\n")
    for model, by_q in answers.items():
        with open(folder / f"{model}.jsonl", "w", encoding="utf-8") as f:
            for qid, turns in by_q.items():
                if layout == "arena_hard_v2":
                    messages = [{"role": "user", "content": questions[qid][0]},
                                {"role": "assistant", "content": {"answer": turns[0]}}]
                    row = {"uid": qid, "ans_id": f"{model}-{qid}", "model": model, "messages": messages, "tstamp": 1.0}
                else:
                    row = {"question_id": qid, "answer_id": f"{model}-{qid}", "model_id": model,
                           "choices": [{"index": 0, "turns": [wrap(t) for t in turns]}], "tstamp": 1.0}
                f.write(json.dumps(row) + "\n")
    return root, questions, answers


@pytest.mark.parametrize("layout", ["mt_bench", "arena_hard", "arena_hard_v2"])
def test_answer_folder_pairs_every_two_models_on_every_question(pandalm, tmp_path, layout):
    root, questions, answers = write_mt_bench_folder(pandalm, tmp_path / "bench", layout)
    assert is_answer_folder(root) and is_answer_folder(root / "model_answer") and not is_answer_folder(tmp_path)
    got = read_answer_folder(root)
    expected = sum(len(list(itertools.combinations([m for m in answers if q in answers[m]], 2)))
                   for q in questions)
    assert len(got.records) == expected > len(pandalm)  # more pairs than people voted on
    assert got.models == sorted(answers) and got.questions == len(questions)
    r = got.records[0]
    qid = r.meta["question_id"]
    assert r.prompt == questions[qid] and r.response_a == answers[r.model_a][qid] and r.response_b == answers[r.model_b][qid]
    assert r.label is None and r.source == "bench" and r.id.startswith(f"bench/{qid}/")
    # A is chosen by a hash of the battle id: every model is shown first in a fair share of its battles
    first = pd.Series([x.model_a for x in got.records]).value_counts()
    both = pd.Series([m for x in got.records for m in (x.model_a, x.model_b)]).value_counts()
    assert ((first / both).between(0.35, 0.65)).all()
    assert len({x.id for x in got.records}) == len(got.records)
    # pointing at model_answer/ itself finds question.jsonl one folder up
    assert len(read_answer_folder(root / "model_answer").records) == len(got.records)


def test_answer_folder_against_a_baseline(pandalm, tmp_path):
    root, questions, answers = write_mt_bench_folder(pandalm, tmp_path / "bench")
    got = read_answer_folder(root, schedule="baseline:llama-7b")
    assert all("llama-7b" in (r.model_a, r.model_b) for r in got.records)
    assert len(got.records) == sum(sum(1 for m in answers if m != "llama-7b" and q in answers[m] and q in answers["llama-7b"])
                                   for q in questions)
    with pytest.raises(ArenaprefError, match="no answers by 'gpt-5'"):
        read_answer_folder(root, schedule="baseline:gpt-5")
    with pytest.raises(ArenaprefError, match="baseline:MODEL"):
        read_answer_folder(root, schedule="round-robin")


def test_answer_folder_keeps_the_last_of_repeated_answers_and_needs_questions(tmp_path):
    root = tmp_path / "bench"
    (root / "model_answer").mkdir(parents=True)
    rows = {"m1": ["first", "second"], "m2": ["other"]}
    for model, texts in rows.items():
        with open(root / "model_answer" / f"{model}.jsonl", "w") as f:
            for text in texts:
                f.write(json.dumps({"question_id": 81, "answer_id": "x", "model_id": model,
                                    "choices": [{"index": 0, "turns": [text]}]}) + "\n")
    with pytest.raises(ArenaprefError, match="question.jsonl"):
        read_answer_folder(root)
    (root / "question.jsonl").write_text(json.dumps({"question_id": 81, "category": "writing", "turns": ["Hi?"]}) + "\n")
    got = read_answer_folder(root)
    assert len(got.records) == 1 and any("last one was kept" in n for n in got.notes)
    r = got.records[0]
    assert {r.response_a, r.response_b} == {("second",), ("other",)}
    with open(root / "model_answer" / "m2.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(ArenaprefError, match=r"m2.jsonl, line 2: not valid JSON"):
        read_answer_folder(root)


# --- the command ----------------------------------------------------------------------------------------------------
def test_cli_rank_with_a_trained_judge_prints_both_rankings_and_their_agreement(shared_data, small_judge, tmp_path):
    out = tmp_path / "ratings.csv"
    result = CliRunner().invoke(app, ["rank", str(shared_data / "pandalm"), "--judge", str(small_judge), "-b", "10",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "judge ratings (features" in text and "Spearman correlation" in text and "pairs in the same order" in text
    assert "may have been trained on these battles" in text  # not cross-fitted: said
    assert pd.read_csv(out)["model"].nunique() == 5
    judgements = pd.read_csv(tmp_path / "ratings-judgements.csv")
    assert len(judgements) == 999 and np.allclose(judgements[["p_a", "p_b", "p_tie"]].sum(axis=1), 1)
    assert pd.read_csv(tmp_path / "ratings-agreement.csv").columns[:3].tolist() == ["model", "human rank", "judge rank"]
    assert len(pd.read_csv(tmp_path / "ratings-human.csv")) == 5


def test_cli_rank_cross_fit_trains_judges_from_a_recipe(shared_data):
    result = CliRunner().invoke(app, ["rank", str(shared_data / "pandalm"), "--cross-fit", "3", "--model", "features",
                                      *SMALL_SET, "-b", "5", "--tie-model", "davidson"])
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "3-fold cross-fitted" in text and "davidson tie model" in text and "Kendall tau" in text
    assert "may have been trained" not in text


def test_cli_rank_judges_an_answer_folder(pandalm, small_judge, tmp_path):
    root, _, _ = write_mt_bench_folder(pandalm[:200], tmp_path / "mt_bench")
    result = CliRunner().invoke(app, ["rank", str(root), "--judge", str(small_judge), "-b", "5",
                                      "--schedule", "baseline:llama-7b"])
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "(schedule baseline:llama-7b)" in text and "judge ratings" in text
    assert "Spearman" not in text  # answers carry no votes: nothing to compare with


@pytest.mark.parametrize("args, message", [
    (["{answers}"], "carry no votes: add --judge"),
    (["{pandalm}", "--schedule", "baseline:x"], "apply to folders of model answers"),
    (["{pandalm}", "--model", "features"], "use them with --cross-fit"),
    (["{pandalm}", "--judge", "{judge}", "--model", "embed"], "a trained --judge is used as it is"),
    (["{pandalm}", "--judge", "{judge}", "--cross-fit", "3", "--model", "embed"], "retrains --judge's own recipe"),
    (["{votes}", "--cross-fit", "3"], "no battles to judge"),
    (["{pandalm}", "--tie-model", "bradley"], "tie model 'bradley'"),
])
def test_cli_rank_refuses_contradictory_flags_in_one_line(shared_data, small_judge, pandalm, tmp_path, args, message):
    root, _, _ = write_mt_bench_folder(pandalm[:30], tmp_path / "answers")
    paths = {"answers": root, "pandalm": shared_data / "pandalm", "judge": small_judge,
             "votes": shared_data / "arena-votes"}
    result = CliRunner().invoke(app, ["rank", *[a.format(**paths) for a in args], "-b", "0"])
    assert result.exit_code == 2, result.output
    assert message in flat(result.output) and "Traceback" not in result.output
