"""Input formatting for cross-encoders: budgets split per turn, oldest turns dropped first, a report of what was
cut, and sequences that never exceed max_length, on hand-made and on real multi-turn data."""

from __future__ import annotations

import pytest

from arenapref.data.record import PairRecord
from arenapref.text.format import (
    Cut,
    InputFormat,
    PairFormatter,
    allocate_turns,
    split_budget,
    summarize_cuts,
)

pytest.importorskip("tokenizers")
pytest.importorskip("transformers")

from tiny_models import decoder_tokenizer, encoder_tokenizer  # noqa: E402


def record(prompts, a, b, label=0) -> PairRecord:
    return PairRecord(id="r", prompt=tuple(prompts), response_a=tuple(a), response_b=tuple(b), label=label)


# --- the budget arithmetic ------------------------------------------------------------------------------
def test_split_budget_keeps_everything_that_fits():
    assert split_budget([10, 20, 30], 100, [1, 1, 1]) == [10, 20, 30]


def test_split_budget_gives_what_short_texts_leave_to_the_long_ones():
    # the prompt (5) fits its share; A and B split the remaining 95 evenly
    assert split_budget([5, 500, 400], 100, [1, 1, 1]) == [5, 48, 47]


def test_split_budget_uses_the_whole_budget_and_respects_weights():
    alloc = split_budget([1000, 1000, 1000], 101, [0.5, 1, 1])
    assert sum(alloc) == 101
    assert alloc[0] == pytest.approx(20, abs=1) and alloc[1] == pytest.approx(40, abs=1)


def test_split_budget_never_gives_more_than_a_text_has_or_a_negative_budget():
    assert split_budget([0, 3, 0], 50, [1, 1, 1]) == [0, 3, 0]
    assert split_budget([10, 10, 10], -5, [1, 1, 1]) == [0, 0, 0]


def test_the_newest_turn_is_kept_and_the_oldest_dropped_first():
    fmt = InputFormat(max_prompt_tokens=None, min_turn_tokens=10)
    lengths = [(50, 50, 50), (20, 20, 20), (10, 10, 10)]
    alloc = allocate_turns(lengths, 100, fmt, turn_overhead=5)
    assert alloc[2] == (10, 10, 10)  # newest: whole
    assert alloc[1] == (20, 20, 20)  # fits whole after the newest
    assert alloc[0] is None  # 100 - 35 - 65 = 0 left: the oldest turn is dropped


def test_an_older_turn_is_cut_rather_than_dropped_when_enough_room_is_left():
    fmt = InputFormat(max_prompt_tokens=None, min_turn_tokens=10)
    alloc = allocate_turns([(50, 50, 50), (10, 10, 10)], 100, fmt, turn_overhead=5)
    assert alloc[1] == (10, 10, 10)
    assert alloc[0] is not None and sum(alloc[0]) == 100 - 35 - 5


def test_caps_limit_each_prompt_and_response_turn():
    fmt = InputFormat(max_prompt_tokens=8, max_response_tokens=30)
    assert allocate_turns([(100, 100, 5)], 1000, fmt, turn_overhead=0) == [(8, 30, 5)]


def test_input_format_round_trips_and_rejects_unknown_templates():
    fmt = InputFormat(template="chat", max_length=300, max_prompt_tokens=None)
    assert InputFormat.from_dict(fmt.to_dict() | {"unknown_future_field": 1}) == fmt
    with pytest.raises(ValueError, match="template"):
        InputFormat(template="fancy")
    with pytest.raises(ValueError, match="max_length"):
        InputFormat(max_length=4)


# --- formatting with real tokenizers --------------------------------------------------------------------
def test_plain_template_wraps_the_body_in_the_tokenizers_special_tokens():
    tok = encoder_tokenizer()
    pair = PairFormatter(tok, InputFormat(max_length=64)).format([record(["hi there"], ["hello"], ["goodbye"])])[0]
    assert pair.input_ids[0] == tok.cls_token_id and pair.input_ids[-1] == tok.sep_token_id
    text = tok.decode(pair.input_ids)
    assert text.index("hi there") < text.index("hello") < text.index("goodbye")
    assert not pair.cut.truncated and pair.cut.turns_kept == 1


def test_turns_are_rendered_in_order_prompt_a_b_and_latest_turns_survive_truncation():
    tok = decoder_tokenizer()
    long = "the sea is blue and deep " * 40
    rec = record(["first question " + long, "second question"], ["first answer A " + long, "second answer A"],
                 ["first answer B " + long, "second answer B"])
    full = PairFormatter(tok, InputFormat(max_length=2048, max_prompt_tokens=None)).format([rec])[0]
    text = tok.decode(full.input_ids)
    assert text.index("first question") < text.index("first answer A") < text.index("first answer B") \
        < text.index("second question") < text.index("second answer A") < text.index("second answer B")
    short = PairFormatter(tok, InputFormat(max_length=72, max_prompt_tokens=None, min_turn_tokens=30)).format([rec])[0]
    text = tok.decode(short.input_ids)
    assert "second question" in text and "second answer B" in text and "first" not in text
    assert short.cut.turns == 2 and short.cut.turns_kept == 1 and short.cut.truncated
    assert len(short.input_ids) <= 72


def test_a_swapped_pair_is_cut_the_same_way():
    tok = decoder_tokenizer()
    rec = record(["write a poem about the sea"], ["the sea is blue " * 30], ["waves never sleep " * 5])
    fmt = InputFormat(max_length=60)
    f = PairFormatter(tok, fmt)
    one, two = f.format([rec, rec.swapped()])
    assert one.cut == two.cut and len(one.input_ids) == len(two.input_ids)


def test_null_turns_and_uneven_turn_counts_format_as_empty_text():
    tok = encoder_tokenizer()
    rec = PairRecord(id="q", prompt=("a", "b"), response_a=("x",), response_b=("", ""), label=2)
    pair = PairFormatter(tok, InputFormat(max_length=64)).format([rec])[0]
    assert pair.cut.turns == 2 and pair.cut.turns_kept == 2 and len(pair.input_ids) <= 64


def test_chat_template_wraps_the_pair_in_one_user_message_with_a_generation_prompt():
    tok = decoder_tokenizer(chat=True)
    fmt = InputFormat(template="chat", max_length=200)
    long = record(["which is better " * 20], ["hello world " * 50], ["the steps in detail " * 50])
    pairs = PairFormatter(tok, fmt).format([record(["hi"], ["hello"], ["bye"]), long])
    text = tok.decode(pairs[0].input_ids)
    assert text.startswith("<s><|user|>") and text.endswith("<|assistant|>\n") and fmt.instruction.strip() in text
    assert len(pairs[1].input_ids) <= 200 and pairs[1].cut.truncated
    assert tok.decode(pairs[1].input_ids).endswith("<|assistant|>\n")  # the head reads the end: never cut it


def test_chat_template_needs_a_tokenizer_that_has_one():
    with pytest.raises(ValueError, match="chat template"):
        PairFormatter(encoder_tokenizer(), InputFormat(template="chat"))


def test_summary_counts_rows_turns_and_tokens_cut():
    cuts = [Cut(3, 1, 100, 40), Cut(1, 1, 10, 10)]
    s = summarize_cuts(cuts)
    assert s["rows_truncated"] == 1 and s["turns_dropped"] == 2 and s["text_tokens_cut"] == 60
    assert s["share_tokens_cut"] == pytest.approx(60 / 110)


@pytest.mark.parametrize("template", ["plain", "chat"])
def test_real_pairs_never_exceed_the_budget(shared_data, template):
    from arenapref.data.io import read_pairs

    records, _ = read_pairs([shared_data / "hh-rlhf" / "helpful-base_test.jsonl.gz"])
    records = records[:150] + [r for r in read_pairs([shared_data / "arena-format" / "quirks.csv"])[0]]
    assert any(r.n_turns > 2 for r in records)  # multi-turn transcripts
    tok = decoder_tokenizer(chat=True)
    fmt = InputFormat(template=template, max_length=200, max_prompt_tokens=48)
    pairs = PairFormatter(tok, fmt).format(records)
    assert len(pairs) == len(records)
    assert max(len(p.input_ids) for p in pairs) <= 200
    summary = summarize_cuts([p.cut for p in pairs])
    assert 0 < summary["rows_truncated"] <= len(records) and summary["turns_dropped"] > 0
