"""Specification of the data readers: every supported input maps into canonical PairRecords.

Real files are read in place from `../shared/data` (the `shared_data` fixture); small malformed inputs are
written inside each test under `tmp_path`.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from arenapref.data.io import read_pairs, write_pairs
from arenapref.data.problems import DataError
from arenapref.data.record import A_WINS, B_WINS, LABELS, TIE, PairRecord, swap_labels

KAGGLE_COLUMNS = ["id", "model_a", "model_b", "prompt", "response_a", "response_b", *LABELS]


# ----------------------------------------------------------------------------------------------- helpers


def write_csv(path: Path, rows: list[dict], columns: list[str] = KAGGLE_COLUMNS) -> Path:
    """A CSV with the given columns; a list value is JSON-encoded (as in the Kaggle files), a str is written raw."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in rows:
            w.writerow([json.dumps(v) if isinstance(v, list) else v for v in (row.get(c, "") for c in columns)])
    return path


def kaggle_row(id_, prompt=("Hi",), a=("Hello",), b=("Hey",), label=(1, 0, 0), **overrides) -> dict:
    turns = {"prompt": prompt, "response_a": a, "response_b": b}  # a str is a raw (possibly malformed) cell
    row = {"id": str(id_), "model_a": "m1", "model_b": "m2", **dict(zip(LABELS, map(str, label))),
           **{k: v if isinstance(v, str) else list(v) for k, v in turns.items()}}
    row.update(overrides)
    return row


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_error(path, **kw) -> DataError:
    with pytest.raises(DataError) as exc:
        read_pairs(path, **kw)
    return exc.value


def all_text(records):
    for r in records:
        yield from r.prompt
        yield from r.response_a
        yield from r.response_b


# ------------------------------------------------------------------------------ arena-format/quirks.csv


@pytest.fixture(scope="module")
def quirks_path(shared_data) -> Path:
    return shared_data / "arena-format" / "quirks.csv"


@pytest.fixture(scope="module")
def quirks_raw(quirks_path) -> list[dict]:
    with open(quirks_path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def quirks(quirks_path):
    records, report = read_pairs(quirks_path)
    return records, report, {r.id: r for r in records}


def test_every_quirks_row_imports_in_file_order_with_string_ids(quirks, quirks_raw):
    records, report, _ = quirks
    assert len(quirks_raw) == 12
    assert [r.id for r in records] == [row["id"] for row in quirks_raw]
    assert all(type(r.id) is str for r in records)
    assert "4294947231" in {r.id for r in records}  # beyond int32, still the exact string
    assert report.fatal == []


def test_quirks_labels_models_and_source_come_from_the_row(quirks, quirks_raw):
    records, _, _ = quirks
    for r, row in zip(records, quirks_raw):
        onehot = [int(row[c]) for c in LABELS]
        assert r.label == onehot.index(1), r.id
        assert (r.model_a, r.model_b) == (row["model_a"], row["model_b"])
        assert r.source == "quirks"
        assert r.soft_label is None
    assert Counter(r.label for r in records) == Counter({A_WINS: 4, B_WINS: 4, TIE: 4})


def test_quirks_turns_equal_the_decoded_json_lists(quirks, quirks_raw):
    """Apart from the repaired lone surrogate (own test), every turn is the JSON element, null -> ""."""
    _, _, by_id = quirks
    for row in quirks_raw:
        if row["id"] == "552813":
            continue
        r = by_id[row["id"]]
        for field in ("prompt", "response_a", "response_b"):
            expected = tuple("" if t is None else t for t in json.loads(row[field]))
            assert getattr(r, field) == expected, (r.id, field)


def test_null_turns_become_empty_strings_and_are_counted(quirks, quirks_raw):
    _, report, by_id = quirks
    nulls_in_file = sum(json.loads(row[f]).count(None) for row in quirks_raw for f in ("prompt", "response_a", "response_b"))
    assert nulls_in_file == 4
    assert report.counts["null_turns"] == nulls_in_file
    assert by_id["96401"].response_a == ("Creating a test set for a rare category can be challenging.", "")
    assert by_id["96401"].response_b[1] == ""
    assert by_id["198779"].response_a == ("",) and by_id["198779"].response_b == ("",)
    assert all(isinstance(t, str) for t in all_text(by_id.values()))


def test_surrogate_pair_escapes_become_real_emoji(quirks):
    _, _, by_id = quirks
    pizza = by_id["30192"].response_a[1]
    assert "\U0001f34d" in pizza and "\U0001f355" in pizza  # 🍍 🍕 from \ud83c\udf4d \ud83c\udf55
    assert "Bon appétit!" in pizza
    assert by_id["552813"].response_b == ("\U0001f600",)  # 😀 from \ud83d\ude00


def test_unpaired_surrogate_becomes_replacement_character_and_is_counted(quirks):
    records, report, by_id = quirks
    assert by_id["552813"].response_a == ("Here you go: \ufffd",)
    assert report.counts["repaired_surrogates"] == 1
    for text in all_text(records):
        assert not any("\ud800" <= ch <= "\udfff" for ch in text)
        text.encode("utf-8")  # strict: raises on any surrogate left behind


def test_empty_and_identical_responses_load(quirks):
    _, _, by_id = quirks
    assert by_id["292873"].response_a == ("",)
    assert by_id["292873"].response_b[0].startswith("[Stage directions")
    same = by_id["313413"]
    assert same.response_a == same.response_b == ("Hello! How can I help you today?",)
    assert same.label == A_WINS


def test_multi_turn_rows_have_matching_turn_counts(quirks, quirks_raw):
    records, report, by_id = quirks
    expected = {"30192": 2, "53567": 3, "96401": 2, "481524": 2}
    for id_, n in expected.items():
        r = by_id[id_]
        assert len(r.prompt) == len(r.response_a) == len(r.response_b) == n == r.n_turns, id_
    for r in records:
        assert len(r.prompt) == len(r.response_a) == len(r.response_b)
    assert not [p for p in report.problems if "turn counts" in p.message]


def test_long_response_is_intact(quirks, quirks_raw):
    _, _, by_id = quirks
    raw = next(row for row in quirks_raw if row["id"] == "4294947231")
    text = by_id["4294947231"].response_a[0]
    assert len(text) >= 25_000
    assert text == json.loads(raw["response_a"])[0]
    assert text.startswith("The printing press, invented by Johannes Gutenberg around 1440")


def test_quotes_carriage_returns_and_newlines_survive(quirks):
    _, _, by_id = quirks
    r = by_id["370945"]
    assert r.prompt == ('He said "stop, now", then left; what, exactly, did he mean?',)
    assert r.response_a == ('He meant, "stop"\u2014and, "now".\r\nThat is, immediately.',)
    code = by_id["65089"].response_a[0]
    assert "\n\n```python\ndef greet(name):\n    print(f\"Hello, {name}!\")" in code


def test_non_ascii_text_survives(quirks):
    _, _, by_id = quirks
    r = by_id["481524"]
    assert r.prompt[0] == "東京のおすすめの観光地を教えてください。"
    assert r.prompt[1] == "А что насчет Москвы?"
    assert r.response_a == ("浅草、渋谷、新宿がおすすめです。", "Красная площадь.")


def test_explicit_kaggle_format_reads_the_same_as_auto(quirks, quirks_path):
    records, _, _ = quirks
    explicit, _ = read_pairs(quirks_path, fmt="kaggle")
    assert explicit == records


def test_test_file_without_label_columns_loads_unlabelled(tmp_path):
    path = write_csv(tmp_path / "test.csv", [kaggle_row(7), kaggle_row(8)], ["id", "prompt", "response_a", "response_b"])
    records, report = read_pairs(path)
    assert [r.id for r in records] == ["7", "8"]
    assert all(r.label is None and r.target() is None for r in records)
    assert report.problems == []


# ------------------------------------------------------------------------------------ malformed input


def only_problem(err: DataError):
    fatal = [p for p in err.problems if p.fatal]
    assert len(fatal) == 1, err
    return fatal[0]


@pytest.mark.parametrize(
    "field, value, expected_in_message",
    [
        ("prompt", "hello", "not valid JSON"),
        ("response_a", '{"a": 1}', "got dict"),
        ("response_b", '"hi"', "got str"),
        ("prompt", "null", "got NoneType"),
    ],
    ids=["bare-string", "json-object", "json-string", "json-null"],
)
def test_turn_field_that_is_not_a_json_list_is_an_error_naming_file_row_id_and_field(tmp_path, field, value, expected_in_message):
    path = write_csv(tmp_path / "train.csv", [kaggle_row(1), kaggle_row(2, **{field: value})])
    err = read_error(path)
    p = only_problem(err)
    assert (Path(p.file).name, p.row, p.id, p.field) == ("train.csv", 2, "2", field)
    message = str(err)
    for part in ("train.csv", "row 2", "id 2", repr(field), expected_in_message):
        assert part in message


@pytest.mark.parametrize(
    "label, field",
    [
        ((1, 1, 0), ",".join(LABELS)),  # two winners
        ((0, 0, 0), ",".join(LABELS)),  # no winner
        ((2, 0, 0), "winner_model_a"),
        ((0, 1, "yes"), "winner_tie"),
        ((0, "", 1), "winner_model_b"),  # a blank cell in a Kaggle train file is not "unlabelled"
    ],
    ids=["two-ones", "all-zero", "a-two", "not-a-number", "blank"],
)
def test_labels_that_are_not_one_hot_are_an_error_naming_the_label_field(tmp_path, label, field):
    path = write_csv(tmp_path / "train.csv", [kaggle_row("a1"), kaggle_row("a2", label=label)])
    err = read_error(path)
    p = only_problem(err)
    assert (p.row, p.id, p.field) == (2, "a2", field)
    assert "train.csv" in str(err) and "row 2" in str(err) and "id a2" in str(err) and field in str(err)


def test_duplicate_id_in_one_file_is_an_error_naming_both_rows(tmp_path):
    path = write_csv(tmp_path / "train.csv", [kaggle_row(5), kaggle_row(6), kaggle_row(5, prompt=("other",))])
    err = read_error(path)
    p = only_problem(err)
    assert (p.row, p.id, p.field) == (3, "5", "id")
    assert "duplicate id" in str(err) and "row 1" in str(err) and "train.csv, row 3" in str(err)


def test_duplicate_id_across_files_is_an_error_even_when_the_files_share_a_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_csv(tmp_path / "a" / "train.csv", [kaggle_row(1), kaggle_row(2)])
    second = write_csv(tmp_path / "b" / "train.csv", [kaggle_row(3), kaggle_row(2)])
    err = read_error(tmp_path)
    p = only_problem(err)
    assert (p.file, p.id, p.field) == (str(second), "2", "id")
    assert "duplicate id" in str(err) and str(tmp_path / "a" / "train.csv") in str(err)


def test_duplicate_id_in_a_mapped_jsonl_file_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"uid": "x", "q": "Hi", "good": "Hello", "bad": "Go away"},
        {"uid": "x", "q": "Yo", "good": "Hey", "bad": "No"},
    ])
    err = read_error(path, mapping={"id": "uid", "prompt": "q", "chosen": "good", "rejected": "bad"})
    p = only_problem(err)
    assert (Path(p.file).name, p.id, p.field) == ("pairs.jsonl", "x", "id")


def test_missing_turn_column_is_an_error_naming_it(tmp_path):
    path = write_csv(tmp_path / "train.csv", [kaggle_row(1)], ["id", "prompt", "response_a", *LABELS])
    err = read_error(path, fmt="kaggle")
    p = only_problem(err)
    assert (Path(p.file).name, p.row, p.field) == ("train.csv", None, "response_b")
    assert "train.csv" in str(err) and "missing column" in str(err) and "response_b" in str(err)


def test_missing_id_column_is_an_error_naming_it(tmp_path):
    path = write_csv(tmp_path / "train.csv", [kaggle_row(1)], ["prompt", "response_a", "response_b", *LABELS])
    err = read_error(path)  # format still detected from the turn columns
    p = only_problem(err)
    assert p.field == "id" and "missing column" in p.message


def test_file_whose_format_cannot_be_told_is_an_error_naming_the_file_and_its_columns(tmp_path):
    path = write_csv(tmp_path / "odd.csv", [kaggle_row(1)], ["id", "prompt", "response_a"])
    err = read_error(path)
    assert "odd.csv" in str(err) and "cannot tell the format" in str(err) and "response_a" in str(err)


def test_train_file_with_only_some_label_columns_is_an_error(tmp_path):
    columns = ["id", "prompt", "response_a", "response_b", "winner_model_a", "winner_model_b"]
    path = write_csv(tmp_path / "train.csv", [kaggle_row(1)], columns)
    err = read_error(path)
    p = only_problem(err)
    assert p.field == "winner_tie" and p.row is None
    assert "train.csv" in str(err) and "all three label columns" in str(err)


@pytest.fixture
def several_bad_rows(tmp_path) -> Path:
    return write_csv(tmp_path / "train.csv", [
        kaggle_row("g1"),                                   # row 1: good
        kaggle_row("b2", prompt="hello"),                   # row 2: prompt not JSON
        kaggle_row("g3", label=(0, 0, 1)),                  # row 3: good
        kaggle_row("b4", a='{"x": 1}', label=(1, 1, 0)),    # row 4: two problems
        kaggle_row("g1", prompt=("again",)),                # row 5: duplicate of row 1
        kaggle_row("b6", label=(0, 2, 0)),                  # row 6: label 2
        kaggle_row("g7", label=(0, 1, 0)),                  # row 7: good
    ])


EXPECTED_BAD = {(2, "b2", "prompt"), (4, "b4", "response_a"), (4, "b4", ",".join(LABELS)), (5, "g1", "id"), (6, "b6", "winner_model_b")}


def test_non_strict_collects_every_problem_and_keeps_the_good_rows(several_bad_rows):
    records, report = read_pairs(several_bad_rows, strict=False)
    assert [r.id for r in records] == ["g1", "g3", "g7"]
    assert [r.label for r in records] == [A_WINS, TIE, B_WINS]
    assert records[0].prompt == ("Hi",)  # the first g1, not the duplicate
    assert {(p.row, p.id, p.field) for p in report.fatal} == EXPECTED_BAD
    assert all(Path(p.file).name == "train.csv" for p in report.fatal)


def test_strict_error_lists_every_problem_not_just_the_first(several_bad_rows):
    err = read_error(several_bad_rows)
    assert str(err).startswith(f"{len(EXPECTED_BAD)} problem(s) in the input")
    assert {(p.row, p.id, p.field) for p in err.problems if p.fatal} == EXPECTED_BAD
    for row, id_, _ in EXPECTED_BAD:
        assert f"row {row}, id {id_}" in str(err)


# ----------------------------------------------------------------------------------------- round trip


def _key(r: PairRecord):
    return (r.id, r.prompt, r.response_a, r.response_b, r.label, r.soft_label, r.source, r.model_a, r.model_b)


@pytest.fixture(scope="module")
def mixed_records(quirks, shared_data) -> list[PairRecord]:
    quirk_records, _, _ = quirks
    pandalm, _ = read_pairs(shared_data / "pandalm" / "testset-v1.json")
    hh, _ = read_pairs(shared_data / "hh-rlhf" / "helpful-online_test.jsonl.gz")
    soft_only = replace(pandalm[20], id="teacher/1", label=None, soft_label=(0.25, 0.5, 0.25), source="teacher")
    unlabelled = replace(quirk_records[0], id="pool/1", label=None, source="pool", model_a=None, model_b=None)
    return quirk_records + pandalm[:20] + hh[:20] + [soft_only, unlabelled]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_write_then_read_round_trips_ids_turns_labels_soft_labels_and_source(tmp_path, mixed_records, suffix):
    assert {r.source for r in mixed_records} >= {"quirks", "pandalm", "hh-rlhf", "teacher", "pool"}
    path = write_pairs(mixed_records, tmp_path / "nested" / f"canonical{suffix}")
    back, report = read_pairs(path)
    assert report.fatal == []
    assert [_key(r) for r in back] == [_key(r) for r in mixed_records]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_round_trip_of_unlabelled_records_stays_unlabelled(tmp_path, quirks, suffix):
    records = [replace(r, label=None) for r in quirks[0]]
    back, _ = read_pairs(write_pairs(records, tmp_path / f"test{suffix}"))
    assert [_key(r) for r in back] == [_key(r) for r in records]


# ---------------------------------------------------------------------------------------------- hh-rlhf

HH_COUNTS = {"harmless-base": 2312, "helpful-base": 2354, "helpful-online": 1137, "helpful-rejection-sampled": 2749}


@pytest.fixture(scope="module")
def hh(shared_data):
    records, report = read_pairs(shared_data / "hh-rlhf")
    raw = {}
    for subset in HH_COUNTS:
        with gzip.open(shared_data / "hh-rlhf" / f"{subset}_test.jsonl.gz", "rt", encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                raw[f"hh-rlhf/{subset}/{i}"] = json.loads(line)
    return records, report, raw


def last_assistant_text(transcript: str) -> str:
    """What follows the last "Assistant:" up to any unanswered "Human:" turn. The final response turn ends
    with it (it can hold more: parts are merged where the source lost the "\n\n" before a speaker name)."""
    return transcript.rsplit("\n\nAssistant: ", 1)[1].split("\n\nHuman: ", 1)[0]


def test_hh_rlhf_row_counts_per_file_match_the_readme(hh):
    records, report, raw = hh
    assert Counter(r.meta["subset"] for r in records) == HH_COUNTS
    assert len(records) == len(raw) == sum(HH_COUNTS.values())
    assert len({r.id for r in records}) == len(records)
    assert {r.source for r in records} == {"hh-rlhf"}
    assert report.fatal == []


def test_hh_rlhf_transcripts_are_split_into_turns(hh):
    records, _, raw = hh
    for r in records:
        chosen_text = raw[r.id]["chosen"]
        first_human = chosen_text.split("\n\nHuman: ", 1)[1].split("\n\nAssistant: ", 1)[0]
        assert r.prompt[0] == first_human, r.id
        for turn in (*r.prompt, *r.response_a, *r.response_b):
            assert "\n\nHuman: " not in turn and "\n\nAssistant: " not in turn, r.id
    assert max(r.n_turns for r in records) > 3


def test_hh_rlhf_responses_share_all_but_the_last_assistant_turn(hh):
    records, _, _ = hh
    for r in records:
        assert len(r.prompt) == len(r.response_a) == len(r.response_b), r.id
        assert r.response_a[:-1] == r.response_b[:-1], r.id


def test_hh_rlhf_label_points_at_the_chosen_response_which_is_a_about_half_the_time(hh):
    records, _, raw = hh
    for r in records:
        assert r.label in (A_WINS, B_WINS)
        winner, loser = (r.response_a, r.response_b) if r.label == A_WINS else (r.response_b, r.response_a)
        assert winner[-1].endswith(last_assistant_text(raw[r.id]["chosen"])), r.id
        assert loser[-1].endswith(last_assistant_text(raw[r.id]["rejected"])), r.id
    share_a = np.mean([r.label == A_WINS for r in records])
    assert 0.40 <= share_a <= 0.60


def test_hh_rlhf_transcript_that_runs_on_into_a_new_human_turn_is_trimmed(tmp_path):
    """A few real transcripts end on an unanswered Human turn; it must not become an extra (empty) response."""
    dialogue = "\n\nHuman: Plan a trip?\n\nAssistant: Sure.\n\nHuman: To Mexico.\n\nHuman: For a week."
    path = write_jsonl(tmp_path / "mini_test.jsonl", [{
        "chosen": dialogue + "\n\nAssistant: Day 1: Mexico City.",
        "rejected": dialogue + "\n\nAssistant: No.\n\nHuman: Thanks anyway?",
    }])
    (r,), report = read_pairs(path)
    assert r.id == "hh-rlhf/mini/1" and r.meta["subset"] == "mini"
    assert r.prompt == ("Plan a trip?", "To Mexico.\n\nFor a week.")  # consecutive Human parts merged
    chosen, rejected = (r.response_a, r.response_b) if r.label == A_WINS else (r.response_b, r.response_a)
    assert chosen == ("Sure.", "Day 1: Mexico City.")
    assert rejected == ("Sure.", "No.")


# ---------------------------------------------------------------------------------------------- PandaLM


@pytest.fixture(scope="module")
def pandalm(shared_data):
    path = shared_data / "pandalm" / "testset-v1.json"
    records, report = read_pairs(path)
    return records, report, json.loads(path.read_text(encoding="utf-8"))


def test_pandalm_has_999_rows_in_file_order(pandalm):
    records, report, raw = pandalm
    assert len(records) == len(raw) == 999
    assert [r.id for r in records] == [f"pandalm/{row['idx']}" for row in raw]
    assert report.fatal == []


def test_pandalm_soft_label_is_the_vote_share_and_hard_label_the_majority(pandalm):
    records, _, raw = pandalm
    vote_to_label = {1: A_WINS, 2: B_WINS, 0: TIE}
    for r, row in zip(records, raw):
        votes = Counter(vote_to_label[row[f"annotator{k}"]] for k in (1, 2, 3))
        assert r.soft_label == pytest.approx(tuple(votes[k] / 3 for k in (A_WINS, B_WINS, TIE))), r.id
        assert sum(r.soft_label) == pytest.approx(1.0)
        top, n = votes.most_common(1)[0]
        assert r.label == (top if n >= 2 else TIE), r.id
        assert np.allclose(r.target(), r.soft_label)
    labels = Counter(r.label for r in records)
    assert set(labels) == {A_WINS, B_WINS, TIE}
    assert 0.05 <= labels[TIE] / len(records) <= 0.20  # "~10% ties by majority"


def test_pandalm_model_names_come_from_cmp_key(pandalm):
    records, _, raw = pandalm
    for r, row in zip(records, raw):
        assert f"{r.model_a}_{r.model_b}" == row["cmp_key"], r.id
    names = {r.model_a for r in records} | {r.model_b for r in records}
    assert names == {"bloom-7b", "llama-7b", "cerebras-gpt-6.7B", "opt-7b", "pythia-6.9b"}
    first = records[0]
    assert (first.model_a, first.model_b) == ("bloom-7b", "llama-7b")
    assert first.response_a == (raw[0]["response1"],) and first.response_b == (raw[0]["response2"],)


# ----------------------------------------------------------------------------------------------- LLMBar

LLMBAR_COUNTS = {
    "LLMBar_Natural": 100, "LLMBar_Adversarial_GPTInst": 92, "LLMBar_Adversarial_GPTOut": 47,
    "LLMBar_Adversarial_Manual": 46, "LLMBar_Adversarial_Neighbor": 134, "Processed_FairEval": 66,
    "Processed_LLMEval-2": 200, "Processed_MT-Bench": 200,
}


def test_llmbar_has_885_rows_across_8_subsets_with_labels_1_2_as_a_b(shared_data):
    records, report = read_pairs(shared_data / "llmbar")
    assert len(records) == 885 and report.fatal == []
    assert Counter(r.meta["subset"] for r in records) == LLMBAR_COUNTS
    by_id = {r.id: r for r in records}
    for subset in LLMBAR_COUNTS:
        raw = json.loads((shared_data / "llmbar" / subset / "dataset.json").read_text(encoding="utf-8"))
        for i, row in enumerate(raw, start=1):
            r = by_id[f"llmbar/{subset}/{i}"]
            assert r.label == {1: A_WINS, 2: B_WINS}[row["label"]]
            assert (r.prompt, r.response_a, r.response_b) == ((row["input"],), (row["output_1"],), (row["output_2"],))
    assert {r.label for r in records} == {A_WINS, B_WINS}


# -------------------------------------------------------------------------------------------------- HHH


def test_hhh_query_and_responses_are_parsed_out_of_the_grading_prompt(shared_data):
    path = shared_data / "hhh" / "hhh_alignment_eval.json"
    records, report = read_pairs(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert len(records) == len(raw) == 221 and report.fatal == []
    for r, row in zip(records, raw):
        assert len(r.prompt) == len(r.response_a) == len(r.response_b) == 1
        for text in (r.prompt[0], r.response_a[0], r.response_b[0]):
            assert "###" not in text and "Score Rubrics" not in text, r.id
        assert r.prompt[0].strip(), r.id
        chosen = r.response_a[0] if r.label == A_WINS else r.response_b[0]
        rejected = r.response_b[0] if r.label == A_WINS else r.response_a[0]
        assert f"###Response to evaluate:\n{chosen}\n\n###Score Rubrics" in row["chosen_instruction"]
        assert f"###Response to evaluate:\n{rejected}\n\n###Score Rubrics" in row["rejected_instruction"]
        assert f"###The instruction to evaluate:\n{r.prompt[0]}\n\n" in row["chosen_instruction"]
    assert {r.label for r in records} == {A_WINS, B_WINS}


# ------------------------------------------------------------------------------------ generic mapped JSONL


def test_mapped_jsonl_with_response_and_label_fields(tmp_path):
    path = write_jsonl(tmp_path / "judged.jsonl", [
        {"qid": "q1", "question": "Hi?", "ans1": "A1", "ans2": "B1", "pref": "a", "m1": "x", "m2": "y"},
        {"qid": "q2", "question": ["t1", "t2"], "ans1": ["x1", "x2"], "ans2": ["y1", "y2"], "pref": "tie"},
        {"qid": "q3", "question": "Yo", "ans1": "A3", "ans2": "B3", "pref": 1},
        {"qid": "q4", "question": "Hey", "ans1": "A4", "ans2": "B4", "pref": "winner_model_a"},
    ])
    mapping = {"id": "qid", "prompt": "question", "response_a": "ans1", "response_b": "ans2", "label": "pref",
               "model_a": "m1", "model_b": "m2"}
    records, report = read_pairs(path, mapping=mapping)
    assert [r.id for r in records] == ["q1", "q2", "q3", "q4"]
    assert [r.label for r in records] == [A_WINS, TIE, B_WINS, A_WINS]
    assert records[0].prompt == ("Hi?",) and records[0].response_a == ("A1",) and records[0].response_b == ("B1",)
    assert records[1].prompt == ("t1", "t2") and records[1].response_b == ("y1", "y2")
    assert (records[0].model_a, records[0].model_b) == ("x", "y") and records[1].model_a is None
    assert {r.source for r in records} == {"judged"} and report.problems == []


def test_mapped_jsonl_with_chosen_and_rejected_fields(tmp_path):
    rows = [{"q": f"question {i}", "good": f"good {i}", "bad": f"bad {i}"} for i in range(40)]
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    records, report = read_pairs(path, mapping={"prompt": "q", "chosen": "good", "rejected": "bad"}, source="mine")
    assert [r.id for r in records] == [f"mine/{i}" for i in range(1, 41)]
    for r, row in zip(records, rows):
        assert r.prompt == (row["q"],)
        winner, loser = (r.response_a, r.response_b) if r.label == A_WINS else (r.response_b, r.response_a)
        assert (winner, loser) == ((row["good"],), (row["bad"],))
        assert r.source == "mine"
    assert {r.label for r in records} == {A_WINS, B_WINS}  # chosen is not always placed first
    assert report.problems == []


def test_mapped_jsonl_problems_name_the_field(tmp_path):
    path = write_jsonl(tmp_path / "judged.jsonl", [
        {"question": "Hi", "ans1": "a", "ans2": "b", "pref": "maybe"},
        {"question": "Hi", "ans1": "a", "pref": "a"},
    ])
    err = read_error(path, mapping={"prompt": "question", "response_a": "ans1", "response_b": "ans2", "label": "pref"})
    assert {(p.row, p.field) for p in err.problems} == {(1, "pref"), (2, "ans2")}
    assert "unknown label 'maybe'" in str(err) and "'ans2' (mapped to response_b) is missing" in str(err)


# ---------------------------------------------------------------------------------------- LMArena dumps


def test_lmarena_dump_maps_winners_and_conversations(tmp_path):
    def conv(side, winner):
        return [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": f"{side}1 {winner}"},
                {"role": "user", "content": "Q2"}, {"role": "assistant", "content": f"{side}2"}]

    winners = ["model_a", "model_b", "tie", "tie (bothbad)"]
    path = write_jsonl(tmp_path / "arena.jsonl", [
        {"question_id": f"b{i}", "model_a": "gpt-4", "model_b": "claude-2", "winner": w, "language": "English",
         "conversation_a": conv("A", w), "conversation_b": conv("B", w)}
        for i, w in enumerate(winners)
    ])
    records, report = read_pairs(path)
    assert [r.id for r in records] == ["b0", "b1", "b2", "b3"]
    assert [r.label for r in records] == [0, 1, 2, 2]
    for r, w in zip(records, winners):
        assert r.prompt == ("Q1", "Q2")
        assert r.response_a == (f"A1 {w}", "A2") and r.response_b == (f"B1 {w}", "B2")
        assert (r.model_a, r.model_b, r.source) == ("gpt-4", "claude-2", "arena")
        assert r.meta["language"] == "English"
    assert report.fatal == []


def test_lmarena_unknown_winner_is_an_error_naming_the_field(tmp_path):
    conv = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    path = write_jsonl(tmp_path / "arena.jsonl", [
        {"question_id": "z", "winner": "model_c", "conversation_a": conv, "conversation_b": conv},
    ])
    p = only_problem(read_error(path))
    assert (p.row, p.id, p.field) == (1, "z", "winner")


# ------------------------------------------------------------------------------------------ swapping


def make_record(label=A_WINS, soft=None) -> PairRecord:
    return PairRecord(id="r1", prompt=("p",), response_a=("a",), response_b=("b",), label=label, soft_label=soft,
                      model_a="ma", model_b="mb", source="s", meta={"k": 1})


@pytest.mark.parametrize("label, swapped", [(A_WINS, B_WINS), (B_WINS, A_WINS), (TIE, TIE), (None, None)])
def test_swapped_exchanges_responses_labels_and_model_names(label, swapped):
    r = make_record(label)
    s = r.swapped()
    assert s.label == swapped
    assert (s.response_a, s.response_b) == (("b",), ("a",))
    assert (s.model_a, s.model_b) == ("mb", "ma")
    assert (s.id, s.prompt, s.source, s.prompt_key) == (r.id, r.prompt, r.source, r.prompt_key)


def test_swapped_soft_label_maps_a_b_tie_to_b_a_tie():
    r = make_record(label=None, soft=(0.6, 0.3, 0.1))
    assert r.swapped().soft_label == pytest.approx((0.3, 0.6, 0.1))
    assert np.allclose(r.swapped().target(), swap_labels(r.target()))
    assert np.allclose(swap_labels(np.eye(3)), np.eye(3)[[B_WINS, A_WINS, TIE]])


@pytest.mark.parametrize("label, soft", [(A_WINS, None), (B_WINS, (0.2, 0.7, 0.1)), (TIE, None), (None, None)])
def test_swapping_twice_returns_the_original(label, soft):
    r = make_record(label, soft)
    assert r.swapped().swapped() == r
    assert r.swapped() != r  # the responses differ, so a swap is visible


def test_swapping_real_records_twice_returns_them(quirks, pandalm):
    for r in [*quirks[0], *pandalm[0][:50]]:
        assert r.swapped().swapped() == r
