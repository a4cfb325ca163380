"""Importers for public preference sets: hh-rlhf, PandaLM, LLMBar, BIG-bench HHH, LLMEval², and mapped JSONL.

Sets that come as chosen/rejected have no positions; each pair is put in A/B order by a hash of its id, so
about half the pairs have the chosen answer as B. Otherwise every label would be "A wins" and a model would
learn the position, not the preference.

Every importer takes `rownums` (the rows' own 1-based numbers, when the loader left unreadable rows out) and
`labels` (False: build the records without labels and without reading the label fields, for prediction).

LLMEval² (`llmeval2/LLMEval2_benchmark.json`, JSON lines in a .json file): `human` is model1 (A wins),
model2 (B wins) or TIE; `dataset` names which of the 15 remixed sets the row comes from and is kept as
`meta["dataset"]` (and `meta["subset"]`, the key other importers use); the source stays "llmeval2". Two of
its sets store a conversation as one text, which is split into turns so that the record is the conversation
it shows (counted as `llmeval2_transcripts_split`):
- mt-bench: the query is empty and each response is the whole two-turn transcript ("user: ...\n\nassistant:
  ..."). When both transcripts parse and ask the same user turns, the user turns become the prompt and each
  side's assistant turns its response; the rest (truncated transcripts) are kept as they are.
- hh-rlhf: the query is the dialogue up to the final "\n\nAssistant:"; its Human turns become the prompt,
  the earlier Assistant turns are shared by both sides and each response is the last turn (as hh_rlhf_records
  does for the hh-rlhf files).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Mapping

from arenapref.data.arena import (
    is_missing,
    normalise_id,
    numbered,
    parse_turns,
    repair_surrogates,
)
from arenapref.data.problems import ReadReport
from arenapref.data.record import (
    A_WINS,
    B_WINS,
    TIE,
    PairRecord,
    majority_label,
    text_hash,
)

HH_SPEAKER = re.compile(r"\n\n(Human|Assistant): ")
HHH_PARTS = re.compile(
    r"###The instruction to evaluate:\n(?P<query>.*?)\n\n###Response to evaluate:\n(?P<response>.*?)\n\n###Score Rubrics",
    re.S,
)


def _clean(text: str, report: ReadReport) -> str:
    text, fixed = repair_surrogates(text)
    report.counts["repaired_surrogates"] += fixed
    return text


def chosen_rejected_record(id_: str, prompt, chosen, rejected, source: str, meta=None, labels: bool = True,
                           **kw) -> PairRecord:
    """A pair from a chosen/rejected set, with the chosen side placed by a hash of the id."""
    chosen_is_a = int(text_hash(id_)[-1], 16) % 2 == 0
    a, b = (chosen, rejected) if chosen_is_a else (rejected, chosen)
    label = (A_WINS if chosen_is_a else B_WINS) if labels else None
    return PairRecord(
        id=id_, prompt=tuple(prompt), response_a=tuple(a), response_b=tuple(b),
        label=label, source=source, meta=meta or {}, **kw,
    )


def split_hh_transcript(text: str) -> list[tuple[str, str]]:
    """'\\n\\nHuman: ...\\n\\nAssistant: ...' -> [(role, text), ...], consecutive same-role parts merged."""
    parts = HH_SPEAKER.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    messages: list[tuple[str, str]] = []
    for role, body in zip(parts[1::2], parts[2::2]):
        if messages and messages[-1][0] == role:
            messages[-1] = (role, messages[-1][1] + "\n\n" + body)
        else:
            messages.append((role, body))
    return messages


def _turns(messages: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Pair each Human turn with the Assistant turn after it ('' where there is none)."""
    users, assistants = [], []
    for role, body in messages:
        if role == "Human":
            users.append(body)
            assistants.append("")
        elif users:
            assistants[-1] = body
        else:  # transcript opens with the assistant: keep it as the answer to an empty user turn
            users.append("")
            assistants.append(body)
    return users, assistants


def _answered(messages: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop a trailing Human turn: it has no response, so it belongs to neither side of the pair (a few
    hh-rlhf transcripts run on into the user's next question; kept, it would leave a response with one
    more turn than the prompt)."""
    return messages[:-1] if len(messages) > 1 and messages[-1][0] == "Human" else messages


def hh_rlhf_records(rows: list[dict], file: str, subset: str, report: ReadReport, rownums=None,
                    labels: bool = True) -> list[PairRecord]:
    out = []
    for i, row in numbered(rows, rownums):
        id_ = f"hh-rlhf/{subset}/{i}"
        if not isinstance(row.get("chosen"), str) or not isinstance(row.get("rejected"), str):
            field = "chosen" if not isinstance(row.get("chosen"), str) else "rejected"
            report.add(file, i, id_, field, "expected a transcript string")
            continue
        users, chosen = _turns(_answered(split_hh_transcript(_clean(row["chosen"], report))))
        users_r, rejected = _turns(_answered(split_hh_transcript(_clean(row["rejected"], report))))
        if not users:
            report.add(file, i, id_, "chosen", "no '\\n\\nHuman: ' turn found in the transcript")
            continue
        if users_r != users:
            report.counts["hh_prompt_mismatch"] += 1
        if chosen == rejected:
            report.counts["identical_responses"] += 1
        out.append(chosen_rejected_record(id_, users, chosen, rejected, "hh-rlhf", {"subset": subset}, labels))
    return out


def pandalm_records(rows: list[dict], file: str, report: ReadReport, rownums=None, labels: bool = True) -> list[PairRecord]:
    """Three annotators vote 0 = tie, 1 = response1, 2 = response2: soft label = vote shares, hard = majority
    (`majority_label`: three different votes are no majority, so a tie)."""
    vote_to_label = {1: A_WINS, 2: B_WINS, 0: TIE}
    out = []
    for i, row in numbered(rows, rownums):
        raw_idx = row.get("idx")
        id_ = f"pandalm/{normalise_id(raw_idx) if not is_missing(raw_idx) else i - 1}"
        votes = [row.get(f"annotator{k}") for k in (1, 2, 3)]
        bad = [k for k, v in zip((1, 2, 3), votes) if v not in vote_to_label]
        if bad and labels:
            report.add(file, i, id_, f"annotator{bad[0]}", f"vote must be 0, 1 or 2, got {votes[bad[0] - 1]!r}")
            continue
        soft = majority = None
        if labels:
            counts = Counter(vote_to_label[v] for v in votes)
            soft = tuple(counts.get(k, 0) / 3 for k in (A_WINS, B_WINS, TIE))
            majority = majority_label([vote_to_label[v] for v in votes])
        instruction = _clean(str(row.get("instruction") or ""), report)
        extra = _clean(str(row.get("input") or ""), report)
        prompt = instruction + ("\n\n" + extra if extra.strip() else "")
        model_a, _, model_b = str(row.get("cmp_key", "")).partition("_")
        out.append(
            PairRecord(
                id=id_, prompt=(prompt,), response_a=(_clean(str(row.get("response1") or ""), report),),
                response_b=(_clean(str(row.get("response2") or ""), report),), label=majority, soft_label=soft,
                model_a=model_a or None, model_b=model_b or None, source="pandalm",
                meta={"votes": votes, "app": row.get("motivation_app")},
            )
        )
    return out


def llmbar_records(rows: list[dict], file: str, subset: str, report: ReadReport, rownums=None,
                   labels: bool = True) -> list[PairRecord]:
    out = []
    for i, row in numbered(rows, rownums):
        id_ = f"llmbar/{subset}/{i}"
        if labels and row.get("label") not in (1, 2):
            report.add(file, i, id_, "label", f"label must be 1 or 2, got {row.get('label')!r}")
            continue
        out.append(
            PairRecord(
                id=id_, prompt=(_clean(str(row.get("input") or ""), report),),
                response_a=(_clean(str(row.get("output_1") or ""), report),),
                response_b=(_clean(str(row.get("output_2") or ""), report),),
                label=(A_WINS if row["label"] == 1 else B_WINS) if labels else None, source="llmbar",
                meta={"subset": subset},
            )
        )
    return out


def hhh_records(rows: list[dict], file: str, report: ReadReport, rownums=None, labels: bool = True) -> list[PairRecord]:
    """BIG-bench HHH as wrapped by prometheus-eval: query and response sit inside a grading prompt."""
    out = []
    for i, row in numbered(rows, rownums):
        id_ = f"hhh/{i}"
        parsed = {}
        for side in ("chosen_instruction", "rejected_instruction"):
            m = HHH_PARTS.search(str(row.get(side) or ""))
            if not m:
                report.add(file, i, id_, side, "could not find '###The instruction to evaluate:' and '###Response to evaluate:' sections")
                break
            parsed[side] = (_clean(m["query"], report), _clean(m["response"], report))
        if len(parsed) < 2:
            continue
        query = parsed["chosen_instruction"][0]
        out.append(
            chosen_rejected_record(
                id_, [query], [parsed["chosen_instruction"][1]], [parsed["rejected_instruction"][1]], "hhh",
                {"subset": row.get("source")}, labels,
            )
        )
    return out


def mapped_records(rows: list[dict], file: str, source: str, mapping: Mapping[str, str], report: ReadReport,
                   rownums=None, labels: bool = True) -> list[PairRecord]:
    """Generic JSONL: `mapping` names our fields -> their keys (prompt, response_a, response_b, id, label,
    model_a, model_b, or chosen/rejected instead of response_a/response_b/label).

    A field may hold a string (one turn) or a list of strings. `label` may be 0/1/2, 'a'/'b'/'tie',
    'model_a'/'model_b'/'tie', or a winner column name.
    """
    label_words = {"0": A_WINS, "1": B_WINS, "2": TIE, "a": A_WINS, "b": B_WINS, "tie": TIE, "model_a": A_WINS,
                   "model_b": B_WINS, "winner_model_a": A_WINS, "winner_model_b": B_WINS, "winner_tie": TIE}
    pairwise = "chosen" in mapping
    needed = ("prompt", "chosen", "rejected") if pairwise else ("prompt", "response_a", "response_b")
    missing = [k for k in needed if k not in mapping]
    if missing:
        report.add(file, None, None, None, f"field mapping lacks {missing}; give e.g. --map prompt=question --map response_a=answer1")
        return []
    out = []
    for i, row in numbered(rows, rownums):
        id_key = mapping.get("id", "id")
        id_ = (normalise_id(row.get(id_key)) if id_key in row else "") or f"{source}/{i}"
        fields = {}
        for ours in needed:
            theirs = mapping[ours]
            if theirs not in row:
                report.add(file, i, id_, theirs, f"key {theirs!r} (mapped to {ours}) is missing")
                break
            value = row[theirs]
            fields[ours] = parse_turns([value] if isinstance(value, str) else value, report, file, i, id_, theirs)
            if fields[ours] is None:
                break
        else:
            if pairwise:
                out.append(chosen_rejected_record(id_, fields["prompt"], fields["chosen"], fields["rejected"], source,
                                                  labels=labels))
                continue
            label = None
            if labels and "label" in mapping and not is_missing(row.get(mapping["label"])):
                label = label_words.get(str(row[mapping["label"]]).strip().lower())
                if label is None:
                    report.add(file, i, id_, mapping["label"], f"unknown label {row[mapping['label']]!r}; use 0/1/2 or a/b/tie")
                    continue
            out.append(
                PairRecord(
                    id=id_, prompt=fields["prompt"], response_a=fields["response_a"], response_b=fields["response_b"],
                    label=label, source=source, model_a=_get(row, mapping.get("model_a")), model_b=_get(row, mapping.get("model_b")),
                )
            )
    return out


def _get(row: dict, key: str | None) -> Any:
    return None if key is None or is_missing(row.get(key)) else str(row[key])


LLMEVAL2_HUMAN = {"model1": A_WINS, "model2": B_WINS, "tie": TIE}
MT_BENCH_SPEAKER = re.compile(r"(?:^|\n\n)(user|assistant): ")


def split_role_transcript(text: str) -> list[tuple[str, str]] | None:
    """'user: ...\\n\\nassistant: ...' (MT-Bench as LLMEval² stores it) -> [(role, text), ...], or None when the
    text does not start with a user turn or the roles do not alternate user / assistant."""
    parts = MT_BENCH_SPEAKER.split(text)
    if parts[0] != "" or len(parts) < 5:
        return None
    messages = list(zip(parts[1::2], parts[2::2]))
    if [role for role, _ in messages] != ["user", "assistant"] * (len(messages) // 2) or len(messages) % 2:
        return None
    return messages


def _llmeval2_turns(row: dict, report: ReadReport) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    query, r1, r2 = (_clean(str(row.get(k) or ""), report) for k in ("query", "response1", "response2"))
    dataset = str(row.get("dataset") or "")
    if dataset == "mt-bench" and not query.strip():
        m1, m2 = split_role_transcript(r1), split_role_transcript(r2)
        if m1 and m2 and [t for _, t in m1[::2]] == [t for _, t in m2[::2]]:
            report.counts["llmeval2_transcripts_split"] += 1
            return tuple(t for _, t in m1[::2]), tuple(t for _, t in m1[1::2]), tuple(t for _, t in m2[1::2])
    if dataset == "hh-rlhf" and query.startswith("\n\nHuman: ") and query.rstrip().endswith("\n\nAssistant:"):
        messages = split_hh_transcript(query.rstrip()[: -len("\n\nAssistant:")])
        users, assistants = _turns(messages)
        if users and assistants[-1] == "":
            report.counts["llmeval2_transcripts_split"] += 1
            earlier = tuple(assistants[:-1])
            # the query ended at "Assistant:", so each answer opens with the space that followed it
            return tuple(users), earlier + (r1.removeprefix(" "),), earlier + (r2.removeprefix(" "),)
    return (query,), (r1,), (r2,)


def llmeval2_records(rows: list[dict], file: str, report: ReadReport, rownums=None, labels: bool = True) -> list[PairRecord]:
    """LLMEval² JSON lines {query, response1, response2, human, dataset} (see the module docstring).

    Args:
        rows: one dict per line of LLMEval2_benchmark.json.
        file: the file, for problems.
        report: collects problems and counts (`llmeval2_transcripts_split`).
        rownums: the rows' own numbers, when the loader left some rows out.
        labels: False reads no `human` field.

    Returns:
        One record per valid row, ids `llmeval2/<row>`, source "llmeval2", meta["dataset"].

    >>> row = {"query": "Hi?", "response1": "Hello", "response2": "Go", "human": "model1", "dataset": "shp"}
    >>> llmeval2_records([row], "x.json", ReadReport())[0].label
    0
    """
    out = []
    for i, row in numbered(rows, rownums):
        id_ = f"llmeval2/{i}"
        label = None
        if labels:
            label = LLMEVAL2_HUMAN.get(str(row.get("human", "")).strip().lower())
            if label is None:
                report.add(file, i, id_, "human", f"human must be model1, model2 or TIE, got {row.get('human')!r}")
                continue
        for key in ("response1", "response2"):
            if not isinstance(row.get(key), str):
                report.add(file, i, id_, key, f"expected a response string, got {type(row.get(key)).__name__}")
                break
        else:
            prompt, a, b = _llmeval2_turns(row, report)
            dataset = _opt(row.get("dataset"))
            out.append(PairRecord(id=id_, prompt=prompt, response_a=a, response_b=b, label=label, source="llmeval2",
                                  meta={"dataset": dataset, "subset": dataset}))
    return out


def _opt(value: Any) -> str | None:
    return None if is_missing(value) or not str(value).strip() else str(value).strip()
