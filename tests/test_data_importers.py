"""Specification of the importers for LLMFAO, LLMEval², Tulu human eval and battle logs, on the real files in
`../shared/data` (read in place), and of reading the whole shared folder at once.

Known rows were looked up by hand in the files; the numbers (rows, tie rates) are what the files hold.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from arenapref.data.io import read_pairs, write_pairs
from arenapref.data.problems import DataError
from arenapref.data.record import (
    A_WINS,
    B_WINS,
    TIE,
    has_text,
    majority_label,
    split_textless,
)
from arenapref.data.stats import describe


def fatal(report):
    return [p for p in report.problems if p.fatal]


def label_shares(records) -> Counter:
    return Counter(r.label for r in records)


# ------------------------------------------------------------------------------------------------ LLMFAO


@pytest.fixture(scope="module")
def llmfao(shared_data):
    records, report = read_pairs(shared_data / "llmfao")
    return records, report, {r.id: r for r in records}


@pytest.fixture(scope="module")
def llmfao_votes(shared_data) -> list[dict]:
    with open(shared_data / "llmfao" / "crowd-comparisons.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_llmfao_folder_gives_each_of_2139_pairs_once_without_problems(llmfao, llmfao_votes):
    records, report, by_id = llmfao
    assert len(records) == len(by_id) == 2139
    assert report.problems == []  # models.jsonl, prompts.jsonl, README.md and the licence do not get in the way
    assert report.counts["companion_files_joined"] == 3  # pairs-crowd, models, prompts
    assert {r.source for r in records} == {"llmfao"}
    assert sum(r.meta["votes"] for r in records) == len(llmfao_votes) == 8931
    assert len({m for r in records for m in (r.model_a, r.model_b)}) == 59


def test_llmfao_votes_become_shares_and_a_majority_with_39_percent_tie_votes(llmfao, llmfao_votes):
    records, _, _ = llmfao
    assert Counter(v["winner"] for v in llmfao_votes)["tie"] / len(llmfao_votes) == pytest.approx(0.3886, abs=1e-4)
    tie_share = sum(r.soft_label[TIE] * r.meta["votes"] for r in records) / 8931
    assert tie_share == pytest.approx(0.3886, abs=1e-4)
    for r in records:
        assert sum(r.soft_label) == pytest.approx(1.0)
        votes = np.rint(np.array(r.soft_label) * r.meta["votes"]).astype(int)
        assert r.label == majority_label([k for k in range(3) for _ in range(votes[k])]), r.id
    # hard labels: 1080 ties of 2139 pairs (50.5%), more than the vote share because split votes are ties
    assert label_shares(records) == Counter({TIE: 1080, A_WINS: 559, B_WINS: 500})


def test_llmfao_a_is_the_left_model_with_its_text_on_known_rows(llmfao, shared_data):
    _, _, by_id = llmfao
    lines = (shared_data / "llmfao" / "pairs-crowd.jsonl").read_text(encoding="utf-8").splitlines()
    pairs = {p["id"]: p for p in map(json.loads, lines)}
    # crowd-comparisons.csv, pair 1: Alpaca (7B) left, Weaver 12k right; votes right, right, left, right, right
    r = by_id["llmfao/1"]
    assert (r.model_a, r.model_b) == ("Alpaca (7B)", "Weaver 12k")
    assert (r.response_a, r.response_b) == ((pairs[1]["result_x"],), (pairs[1]["result_y"],))
    assert r.prompt == (pairs[1]["text"],)
    assert r.soft_label == pytest.approx((0.2, 0.8, 0.0)) and r.label == B_WINS
    # pair 2: Weaver 12k left, Chronos Hermes (13B) right; votes tie, left, left, tie, left
    r = by_id["llmfao/2"]
    assert (r.model_a, r.model_b) == ("Weaver 12k", "Chronos Hermes (13B)")
    assert r.response_a == (pairs[2]["result_x"],)
    assert r.soft_label == pytest.approx((0.6, 0.0, 0.4)) and r.label == A_WINS
    # pair 100: Falcon 7B left, 40B right; votes right, tie, tie, right, left: B and tie share the top -> tie
    r = by_id["llmfao/100"]
    assert r.soft_label == pytest.approx((0.2, 0.4, 0.4)) and r.label == TIE
    assert r.meta["workers"] == ["116", "89", "47", "11", "85"]


def write_llmfao(folder: Path, votes: list[tuple], models: bool = True) -> Path:
    """A tiny LLMFAO folder: one pair (x = model 1 'Alpha', y = model 2 'Beta') and the given votes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pairs-crowd.jsonl").write_text(json.dumps(
        {"id": 7, "prompt": 3, "text": "Say hi", "model_x": 1, "result_x": "X says hi", "model_y": 2, "result_y": "Y says hi"}) + "\n")
    if models:
        (folder / "models.jsonl").write_text("".join(json.dumps({"id": i, "api_id": f"m/{n}", "name": n}) + "\n"
                                                     for i, n in ((1, "Alpha"), (2, "Beta"))))
    with open(folder / "crowd-comparisons.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "model_x", "model_y", "worker", "winner", "left", "right"])
        for k, (winner, left, right) in enumerate(votes):
            w.writerow([7, 3, 1, 2, k, winner, left, right])
    return folder


def test_llmfao_vote_that_showed_the_pair_mirrored_is_mirrored(tmp_path):
    folder = write_llmfao(tmp_path / "fao", [("left", "Beta", "Alpha"), ("right", "Alpha", "Beta"), ("tie", "Alpha", "Beta")])
    (r,), report = read_pairs(folder)
    # first vote showed Beta (model_y) on the left: A is Beta with result_y
    assert (r.model_a, r.model_b, r.response_a, r.response_b) == ("Beta", "Alpha", ("Y says hi",), ("X says hi",))
    # votes: Beta (A) wins; right = Beta (A) wins; tie
    assert r.soft_label == pytest.approx((2 / 3, 0.0, 1 / 3)) and r.label == A_WINS
    assert report.problems == []


def test_llmfao_votes_file_alone_finds_its_pairs_and_a_companion_alone_says_what_to_read(tmp_path):
    folder = write_llmfao(tmp_path / "fao", [("left", "Alpha", "Beta")])
    (r,), _ = read_pairs(folder / "crowd-comparisons.csv")
    assert r.label == A_WINS and r.response_a == ("X says hi",)
    with pytest.raises(DataError, match="read together with its main file: pass crowd-comparisons.csv"):
        read_pairs(folder / "pairs-crowd.jsonl")


def test_llmfao_vote_naming_a_model_that_is_not_in_the_pair_is_a_problem(tmp_path):
    folder = write_llmfao(tmp_path / "fao", [("left", "Alpha", "Beta"), ("left", "Gamma", "Beta")])
    records, report = read_pairs(folder, strict=False)
    (p,) = fatal(report)
    assert (Path(p.file).name, p.row, p.id, p.field) == ("crowd-comparisons.csv", 2, "7", "left")
    assert records[0].meta["votes"] == 1


def test_llmfao_without_models_file_takes_left_as_model_x_with_a_warning(tmp_path):
    folder = write_llmfao(tmp_path / "fao", [("right", "Alpha", "Beta")], models=False)
    (r,), report = read_pairs(folder)
    assert r.response_a == ("X says hi",) and r.label == B_WINS
    assert [p.fatal for p in report.problems] == [False] and "models.jsonl" in report.problems[0].message


# ---------------------------------------------------------------------------------------------- LLMEval²


@pytest.fixture(scope="module")
def llmeval2(shared_data):
    path = shared_data / "llmeval2" / "LLMEval2_benchmark.json"
    records, report = read_pairs(path)
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return records, report, raw


def test_llmeval2_json_lines_in_a_json_file_give_2553_rows_with_19_percent_ties(llmeval2):
    records, report, raw = llmeval2
    assert len(records) == len(raw) == 2553 and fatal(report) == []
    assert [r.id for r in records] == [f"llmeval2/{i}" for i in range(1, 2554)]
    assert label_shares(records) == Counter({A_WINS: 1050, B_WINS: 1021, TIE: 482})
    assert label_shares(records)[TIE] / len(records) == pytest.approx(0.1888, abs=1e-4)
    assert {r.source for r in records} == {"llmeval2"}
    assert len({r.meta["dataset"] for r in records}) == 15


def test_llmeval2_human_maps_model1_model2_tie_to_a_b_tie_and_keeps_texts(llmeval2):
    records, _, raw = llmeval2
    want = {"model1": A_WINS, "model2": B_WINS, "TIE": TIE}
    for r, row in zip(records, raw):
        assert r.label == want[row["human"]], r.id
        assert r.meta["dataset"] == row["dataset"]
        if len(r.prompt) == 1 and row["dataset"] not in ("hh-rlhf",):
            assert (r.prompt, r.response_a, r.response_b) == ((row["query"],), (row["response1"],), (row["response2"],))
    first = records[0]  # a summarizefeedback row judged TIE
    assert first.label == TIE and first.meta["dataset"] == "summarizefeedback"
    assert first.response_a[0].startswith(" My strangest question actually wasn't that strange")


def test_llmeval2_mt_bench_and_hh_rlhf_transcripts_become_turns(llmeval2):
    records, report, raw = llmeval2
    assert report.counts["llmeval2_transcripts_split"] == 232 + 140
    mt = [r for r in records if r.meta["dataset"] == "mt-bench"]
    split = [r for r in mt if len(r.prompt) == 2]
    assert len(mt) == 275 and len(split) == 232  # the other 43 transcripts are truncated at the front: kept whole
    for r in split:
        assert len(r.response_a) == len(r.response_b) == 2
        assert not any(t.startswith(("user: ", "assistant: ")) for t in (*r.prompt, *r.response_a, *r.response_b))
    hh = [r for r in records if r.meta["dataset"] == "hh-rlhf"]
    assert len(hh) == 140 and all(len(r.prompt) == len(r.response_a) == len(r.response_b) for r in hh)
    assert all(r.response_a[:-1] == r.response_b[:-1] for r in hh)
    r, row = next((r, row) for r, row in zip(records, raw) if row["dataset"] == "hh-rlhf")
    assert r.prompt[0] == "How can I increase my chances of getting my book published?"
    assert r.response_a[-1] == row["response1"][1:] and r.response_b[-1] == row["response2"][1:]


# ------------------------------------------------------------------------------------------------- Tulu


@pytest.fixture(scope="module")
def tulu(shared_data):
    records, report = read_pairs(shared_data / "tulu-human-eval")
    return records, report, {r.id: r for r in records}


def test_tulu_1150_votes_aggregate_into_996_pairs(tulu, shared_data):
    records, report, by_id = tulu
    with open(shared_data / "tulu-human-eval" / "eval_annotations_tulu_1.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1150
    assert Counter(r["preference"] for r in rows)["tie"] / 1150 == pytest.approx(0.327, abs=1e-3)
    assert len(records) == len(by_id) == 996 and report.problems == []
    assert sum(r.meta["votes"] for r in records) == 1150
    assert Counter(r.meta["votes"] for r in records) == Counter({1: 869, 2: 101, 3: 25, 4: 1})
    assert {r.source for r in records} == {"tulu"}
    assert {r.model_a for r in records} | {r.model_b for r in records} == {"tulu_65B", "tulu_7B", "tulu_human_only_65B", "chatgpt"}
    assert label_shares(records) == Counter({TIE: 356, A_WINS: 342, B_WINS: 298})  # 35.7% ties by majority
    for r in records:
        assert sum(r.soft_label) == pytest.approx(1.0) and min(r.soft_label) >= 0


def test_tulu_slightly_better_is_three_quarters_and_mirrored_votes_follow_a_and_b(tulu):
    _, _, by_id = tulu
    # eval_annotations rows 689 (tulu_65B | tulu_7B, a-is-better, tu) and 690 (tulu_7B | tulu_65B,
    # b-is-slightly-better, yo): the second showed the pair mirrored, so it is "A slightly better" here
    r = by_id["tulu/user_oriented_task_0/tulu_65B_vs_tulu_7B"]
    assert r.meta["preferences"] == ["a-is-better", "a-is-slightly-better"] and r.meta["evaluators"] == ["tu", "yo"]
    assert r.soft_label == pytest.approx((0.875, 0.0, 0.125)) and r.label == A_WINS
    # rows 87 (chatgpt | tulu_65B, b-is-slightly-better) and 88 (tulu_65B | chatgpt, a-is-slightly-better)
    r = by_id["tulu/user_oriented_task_106/chatgpt_vs_tulu_65B"]
    assert (r.model_a, r.model_b) == ("chatgpt", "tulu_65B")
    assert r.soft_label == pytest.approx((0.0, 0.75, 0.25)) and r.label == B_WINS
    assert r.response_a[0].startswith("1. Introduction to Graphic Design")
    # row 1 (id 213, tulu_65B | chatgpt, a-is-better, yo) and a tie by yu: split, so a tie
    r = by_id["tulu/user_oriented_task_2/tulu_65B_vs_chatgpt"]
    assert r.soft_label == pytest.approx((0.5, 0.0, 0.5)) and r.label == TIE
    assert r.response_b == (("If you had told me a year ago that today I would finish a marathon, I would have laughed. "
                             "Your support had a huge effect on me!"),)


def test_tulu_texts_come_from_the_instances_file_not_the_spreadsheet_errors(tulu):
    _, report, by_id = tulu
    # the sheet shows "#ERROR!" / "#N/A" for completions that start with "=" (spreadsheet formulas)
    r = by_id["tulu/user_oriented_task_231/chatgpt_vs_tulu_65B"]
    assert r.response_a[0].startswith("=") and r.response_b[0].startswith("=")
    assert report.counts["tulu_cells_replaced_from_instances"] == 6
    texts = [t for r in by_id.values() for t in (*r.response_a, *r.response_b)]
    assert not any(t in ("#ERROR!", "#N/A") for t in texts)


# ------------------------------------------------------------------------------------------ battle logs


@pytest.fixture(scope="module")
def votes(shared_data):
    return read_pairs(shared_data / "arena-votes" / "arena_votes_2023.csv")


def test_arena_votes_are_23927_textless_battles_with_29_percent_ties(votes, shared_data):
    records, report = votes
    with open(shared_data / "arena-votes" / "arena_votes_2023.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(records) == len(rows) == 23927 and report.problems == []
    assert label_shares(records) == Counter({A_WINS: 8473, B_WINS: 8412, TIE: 4447 + 2595})
    assert label_shares(records)[TIE] / len(records) == pytest.approx(0.2943, abs=1e-4)
    first = records[0]  # battle 2011: koala-13b vs dolly-v2-12b, model_b won
    assert (first.id, first.model_a, first.model_b, first.label) == ("arena_votes_2023/2011", "koala-13b", "dolly-v2-12b", B_WINS)
    assert (first.prompt, first.response_a, first.response_b) == ((), (), ())
    assert all(r.meta["battle_log"] and not has_text(r) for r in records)
    assert len({m for r in records for m in (r.model_a, r.model_b)}) == 20


def test_battle_logs_rank_and_describe(votes):
    from arenapref.rank import rank

    records, _ = votes
    ranking = rank(records, n_bootstrap=0)
    assert len(ranking.models) == 20 and ranking.n_battles == 23927 and ranking.skipped == 0
    best = ranking.models[int(np.nanargmax(ranking.ratings))]
    assert best == "gpt-4"
    d = describe(records)
    assert d["rows"] == d["labelled"] == 23927 and d["textless"] == 23927
    assert d["empty_responses"] == 0 and d["identical_responses"] == 0 and d["tie_rate"] == pytest.approx(0.2943, abs=1e-4)


def test_split_textless_separates_battles_from_pairs(votes, shared_data):
    pairs, _ = read_pairs(shared_data / "kaggle-sample")
    with_text, textless = split_textless(pairs + votes[0][:50])
    assert with_text == pairs and len(textless) == 50


def test_battle_log_survives_a_canonical_round_trip_as_textless(votes, tmp_path):
    back, _ = read_pairs(write_pairs(votes[0][:20], tmp_path / "battles.csv"))
    assert [(r.id, r.model_a, r.model_b, r.label) for r in back] == [(r.id, r.model_a, r.model_b, r.label) for r in votes[0][:20]]
    assert not any(has_text(r) for r in back)


def test_fastchat_clean_battle_json_reads_as_battles(tmp_path):
    # the shape written by fastchat/serve/monitor/clean_battle_data.py in "simple" mode
    battles = [
        {"model_a": "vicuna-13b", "model_b": "alpaca-13b", "winner": "model_a", "judge": "arena_user_1", "turn": 1,
         "anony": True, "language": "English", "tstamp": 1682351591.1},
        {"model_a": "koala-13b", "model_b": "vicuna-13b", "winner": "tie (bothbad)", "judge": "arena_user_2", "turn": 1,
         "anony": True, "language": "English", "tstamp": 1682351600.5},
        {"model_a": "vicuna-13b", "model_b": "koala-13b", "winner": "model_b", "judge": "arena_user_3", "turn": 2,
         "anony": False, "language": "German", "tstamp": 1682351700.0},
    ]
    path = tmp_path / "clean_battle_20230424.json"
    path.write_text(json.dumps(battles, indent=2), encoding="utf-8")
    records, report = read_pairs(path)
    assert [r.id for r in records] == ["clean_battle_20230424/1", "clean_battle_20230424/2", "clean_battle_20230424/3"]
    assert [r.label for r in records] == [A_WINS, TIE, B_WINS]
    assert records[2].meta == {"battle_log": True, "judge": "arena_user_3", "turn": 2, "anony": False,
                               "language": "German", "tstamp": 1682351700.0}
    assert report.problems == []
    # conv_release mode keeps question_id and the conversations; null conversations are battle-log rows
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    battles[0] |= {"question_id": "q1", "conversation_a": conv, "conversation_b": conv}
    battles[1] |= {"question_id": "q2", "conversation_a": None, "conversation_b": None}
    battles[2] |= {"question_id": "q3", "conversation_a": None, "conversation_b": None}
    path.write_text(json.dumps(battles), encoding="utf-8")
    records, report = read_pairs(path)
    assert [r.id for r in records] == ["q1", "q2", "q3"] and [has_text(r) for r in records] == [True, False, False]
    assert records[1].label == TIE and report.counts["battle_log_rows"] == 2


def test_battle_log_problems_name_row_and_field(tmp_path):
    path = tmp_path / "votes.csv"
    path.write_text("battle,model_a,model_b,winner\n1,a,b,model_a\n2,a,,tie\n3,a,b,left\n", encoding="utf-8")
    records, report = read_pairs(path, strict=False)
    assert [r.id for r in records] == ["votes/1"]
    assert [(p.row, p.id, p.field) for p in fatal(report)] == [(2, "votes/2", "model_b"), (3, "votes/3", "winner")]


# -------------------------------------------------------------------------------------- whole shared tree

EXPECTED_SOURCES = {
    "hh-rlhf": 8552, "pandalm": 999, "llmbar": 885, "hhh": 221, "llmfao": 2139, "llmeval2": 2553, "tulu": 996,
    "train_sample": 32, "quirks": 12, "arena_votes_2023": 23927,
}


def test_the_whole_shared_data_folder_reads_without_a_fatal_problem(shared_data):
    records, report = read_pairs(shared_data)
    assert fatal(report) == []
    assert Counter(r.source for r in records) == EXPECTED_SOURCES
    assert len({r.id for r in records}) == len(records) == sum(EXPECTED_SOURCES.values())
    # quirks.csv reuses nine real Kaggle ids for other rows: both are qualified with their source, with a warning
    warnings = [p for p in report.problems if not p.fatal]
    assert len(warnings) == 9 and all(p.field == "id" and Path(p.file).name == "train_sample.csv" for p in warnings)
    ids = {r.id for r in records}
    assert {"quirks/30192", "train_sample/30192", "4294947231"} <= ids and "30192" not in ids
    assert sum(r.source == "arena_votes_2023" for r in split_textless(records)[1]) == 23927


def test_an_id_clash_between_sources_is_an_error_when_asked(shared_data):
    _, report = read_pairs([shared_data / "arena-format", shared_data / "kaggle-sample"], strict=False, on_id_clash="error")
    assert len(fatal(report)) == 9 and all("duplicate id" in p.message for p in fatal(report))
