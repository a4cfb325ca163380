"""Specification of the overlap audit (data/overlap.py) on real sets that share rows, and on small made-up ones."""

from __future__ import annotations

from dataclasses import replace

import pytest

from arenapref.data.io import read_pairs
from arenapref.data.overlap import (
    find_overlaps,
    normalise_text,
    pair_key,
    prompt_key,
    sets_by_source,
)
from arenapref.data.record import A_WINS, TIE, PairRecord, battle_log_record


def rec(id_, prompt, a, b, label=A_WINS, source="s") -> PairRecord:
    return PairRecord(id=id_, prompt=tuple(prompt), response_a=tuple(a), response_b=tuple(b), label=label, source=source)


def test_normalised_text_ignores_case_spacing_and_punctuation():
    assert normalise_text("Hello,   WORLD!!\n") == normalise_text("hello world") == "hello world"
    assert normalise_text("Ｃafé — ok?") == "café ok"  # NFKC folds the full-width letter
    assert normalise_text("a_b") == "a b"


def test_a_pair_matches_in_either_order_and_across_formatting():
    x = rec("x/1", ["What is 2+2?"], ["It is 4."], ["Five!"])
    y = rec("y/1", ["what is 2 + 2"], ["five"], ["it is 4"], label=TIE)
    z = rec("z/1", ["What is 2+2?"], ["It is 4."], ["Four."])
    report = find_overlaps({"x": [x], "y": [y], "z": [z]})
    assert pair_key(x) == pair_key(y) != pair_key(z)
    assert list(report.pairs) == [("x", "y")]
    o = report.pairs[("x", "y")]
    assert (o.rows_a, o.rows_b, o.distinct, o.examples) == (1, 1, 1, [("x/1", "y/1")])
    assert set(report.prompts) == {("x", "y"), ("x", "z"), ("y", "z")}  # the same question everywhere
    assert report.table().loc[0, ["set_a", "set_b", "distinct_pairs"]].tolist() == ["x", "y", 1]
    assert "x / y: 1 shared pairs" in report.summary()


def test_first_turn_level_finds_a_first_exchange_inside_a_longer_conversation():
    one = rec("one/1", ["Q1"], ["A1"], ["B1"])
    two = rec("two/1", ["Q1", "Q2"], ["A1", "A2"], ["B1", "B2"])
    assert find_overlaps({"one": [one], "two": [two]}).pairs == {}
    assert find_overlaps({"one": [one], "two": [two]}, level="first_turn").pairs[("one", "two")].distinct == 1


def test_textless_and_empty_records_are_left_out_and_repeats_inside_a_set_are_counted():
    battle = battle_log_record("v/1", "m1", "m2", A_WINS, "votes")
    empty = rec("e/1", [""], [" "], ["..."])
    same = rec("s/1", ["q"], ["a"], ["b"])
    report = find_overlaps({"votes": [battle], "e": [empty, replace(empty, id="e/2")], "s": [same, replace(same, id="s/2").swapped()]})
    assert report.skipped == {"votes": 1, "e": 0, "s": 0} and report.sizes == {"votes": 0, "e": 2, "s": 2}
    assert pair_key(empty) is None and prompt_key(empty) is None
    assert report.repeated_pairs == {"votes": 0, "e": 0, "s": 2}
    assert report.pairs == {} and report.prompts == {}
    assert "no shared pairs or prompts" in report.summary()


@pytest.fixture(scope="module")
def llmeval2(shared_data):
    return read_pairs(shared_data / "llmeval2")[0]


def test_llmbar_processed_llmeval2_is_190_of_its_200_rows_from_llmeval2_with_the_same_winner(shared_data, llmeval2):
    bar = read_pairs(shared_data / "llmbar" / "Processed_LLMEval-2")[0]
    report = find_overlaps({"llmbar": bar, "llmeval2": llmeval2})
    o = report.pairs[("llmbar", "llmeval2")]
    assert (len(bar), o.rows_a, o.rows_b, o.distinct) == (200, 190, 191, 188)
    assert report.prompts[("llmbar", "llmeval2")].distinct == 66  # LLMBar re-templated the other instructions
    # the same judgement: wherever the pair matches, the winning response is the same text
    by_key = {}
    for r in llmeval2:
        by_key.setdefault(pair_key(r), []).append(r)

    def winner(r):
        return normalise_text((r.response_a if r.label == A_WINS else r.response_b)[0])

    matches = [(r, e) for r in bar for e in by_key.get(pair_key(r), [])]
    assert len(matches) == 196 and all(e.label != TIE and winner(r) == winner(e) for r, e in matches)


def test_mt_bench_judgements_are_in_both_llmbar_and_llmeval2(shared_data, llmeval2):
    """LLMBar's Processed_MT-Bench keeps MT-Bench's turn-1 judgements (one turn); LLMEval² holds two-turn
    transcripts of the same MT-Bench human judgements. Whole conversations never match; first turns do."""
    mt_bar = read_pairs(shared_data / "llmbar" / "Processed_MT-Bench")[0]
    mt_eval = [r for r in llmeval2 if r.meta["dataset"] == "mt-bench"]
    assert len(mt_bar) == 200 and len(mt_eval) == 275
    sets = {"llmbar/mt-bench": mt_bar, "llmeval2/mt-bench": mt_eval}
    assert find_overlaps(sets).pairs == {}
    report = find_overlaps(sets, level="first_turn")
    o = report.pairs[("llmbar/mt-bench", "llmeval2/mt-bench")]
    assert (o.rows_a, o.rows_b, o.distinct) == (39, 41, 38)
    q = report.prompts[("llmbar/mt-bench", "llmeval2/mt-bench")]
    assert (q.rows_a, q.distinct) == (156, 61)  # 61 of MT-Bench's 80 questions, asked in 156 of LLMBar's 200 rows


def test_audit_of_all_shared_data_by_source_and_subset(shared_data):
    records, _ = read_pairs(shared_data)
    sets = sets_by_source(records, with_subset=True)
    assert "llmbar/Processed_MT-Bench" in sets and "llmeval2/mt-bench" in sets and "hh-rlhf/helpful-base" in sets
    report = find_overlaps(sets)
    assert report.skipped["arena_votes_2023"] == 23927
    assert report.pairs[("hh-rlhf/helpful-base", "llmeval2/hh-rlhf")].distinct == 2
    assert report.pairs[("llmbar/Processed_LLMEval-2", "llmeval2/shp")].distinct == 23
    assert sum(o.rows_a for (a, b), o in report.pairs.items() if a == "llmbar/Processed_LLMEval-2") == 190
    assert report.prompts[("llmbar/Processed_FairEval", "tulu")].distinct == 66  # both ask the Vicuna questions
    assert report.prompts[("pandalm", "tulu")].distinct == 169
    by_source = find_overlaps(sets_by_source(records))
    assert list(by_source.sizes) == ["quirks", "arena_votes_2023", "hh-rlhf", "hhh", "train_sample", "llmbar",
                                     "llmeval2", "llmfao", "pandalm", "tulu"]
