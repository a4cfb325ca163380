"""Per-model answer files to the same questions, paired into battles by a schedule: what a benchmark like
FastChat's MT-Bench or Arena-Hard-Auto produces before a judge looks at it.

Layouts read (one JSON line per answer, one file per model, in `model_answer/`):
- FastChat MT-Bench (`fastchat/llm_judge/data/mt_bench/`): `question.jsonl` rows `{question_id, category,
  turns: [str, ...]}`; answers `{question_id, answer_id, model_id, choices: [{index, turns: [str, ...]}],
  tstamp}`. Two turns per question: the battle is the whole two-turn conversation.
- Arena-Hard-Auto v0.1 (`data/arena-hard-v0.1/`): the same keys, with turns as `{content: str}` objects
  (answers also carry `token_len`).
- Arena-Hard-Auto v2 (`data/arena-hard-v2.0/`): `question.jsonl` rows `{uid, category, subcategory, prompt}`;
  answers `{uid, ans_id, model, messages: [{role, content}, ...]}` where an assistant's content is text or
  `{answer: str, ...}`. The user turns come from the messages when there is no question file.

The questions file is `question.jsonl` in the given folder or its parent (so both `mt_bench/` and
`mt_bench/model_answer/` work), or the one named. Only the first choice of an answer is used; a model that
answered a question twice keeps its last answer, as FastChat's `load_model_answers` does.

Schedules (`schedule`): "all" pairs every two models on every question both answered (MT-Bench's pairwise-all);
"baseline:MODEL" pairs every other model with MODEL only (Arena-Hard's). Which model is shown as A is decided
by a hash of the battle id, so each model is A in about half its battles. Records carry no labels; ids are
`<benchmark>/<question id>/<model>_vs_<model>` (the pair in name order), the source is the benchmark's folder
name, and meta holds the question id and category.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from arenapref.data.record import PairRecord, text_hash
from arenapref.errors import DataError, InputNotFound, UsageError

ANSWER_KEYS = ({"question_id", "model_id", "choices"}, {"uid", "model", "messages"})
QUESTION_FILE = "question.jsonl"
ANSWER_DIR = "model_answer"


@dataclass
class AnswerSet:
    """What was read: the records and what was left out (said in `notes`)."""

    records: list[PairRecord]
    models: list[str]
    questions: int
    schedule: str
    notes: list[str] = field(default_factory=list)


def _json_lines(path: Path) -> list[tuple[int, dict]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {n}: not valid JSON ({e.msg} at char {e.pos})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {n}: expected a JSON object, got {type(row).__name__}")
            rows.append((n, row))
    return rows


def is_answer_file(path: Path) -> bool:
    """Whether the first row of a .jsonl file is a model answer in one of the layouts above."""
    if not path.is_file() or not path.name.endswith(".jsonl"):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        row = json.loads(first) if first else None
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(row, dict) and any(keys <= set(row) for keys in ANSWER_KEYS)


def answer_files(path: Path) -> list[Path]:
    """The answer files of a folder (its `model_answer/` subfolder if it has one), or [] when it holds none."""
    path = Path(path)
    if not path.is_dir():
        return []
    folder = path / ANSWER_DIR if (path / ANSWER_DIR).is_dir() else path
    return [p for p in sorted(folder.glob("*.jsonl")) if is_answer_file(p)]


def is_answer_folder(path: Path) -> bool:
    return bool(answer_files(path))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("content", "answer", "text"):
            if isinstance(value.get(key), (str, dict)):
                return _text(value[key])
    return "" if value is None else str(value)


def _question_id(row: dict) -> str | None:
    value = row.get("question_id", row.get("uid"))
    return None if value is None else str(value)


def _answer(row: dict, path: Path, n: int) -> tuple[str, str, tuple[str, ...], tuple[str, ...] | None]:
    """(question id, model, assistant turns, user turns if the answer carries them)."""
    qid = _question_id(row)
    model = row.get("model_id", row.get("model"))
    if qid is None or not model:
        raise DataError(f"{path}, line {n}: an answer needs question_id (or uid) and model_id (or model)")
    if "choices" in row:
        choices = row["choices"]
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise DataError(f"{path}, line {n}, question {qid}: choices must be a list of {{index, turns}} objects")
        turns = choices[0].get("turns")
        if not isinstance(turns, list):
            raise DataError(f"{path}, line {n}, question {qid}: choices[0].turns must be a list")
        return qid, str(model), tuple(_text(t) for t in turns), None
    messages = row.get("messages")
    if not isinstance(messages, list):
        raise DataError(f"{path}, line {n}, question {qid}: messages must be a list of {{role, content}} objects")
    user = tuple(_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user")
    assistant = tuple(_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
    return qid, str(model), assistant, user or None


def _questions(path: Path) -> dict[str, dict]:
    out = {}
    for n, row in _json_lines(path):
        qid = _question_id(row)
        if qid is None:
            raise DataError(f"{path}, line {n}: a question needs question_id (or uid)")
        turns = row.get("turns")
        if isinstance(turns, list):
            prompt = tuple(_text(t) for t in turns)
        elif "prompt" in row:
            prompt = (_text(row["prompt"]),)
        else:
            raise DataError(f"{path}, line {n}, question {qid}: expected turns (a list) or prompt (text)")
        out[qid] = {"prompt": prompt, "category": row.get("category")}
    return out


def find_question_file(path: Path) -> Path | None:
    """question.jsonl in the answers' folder or its parent (the benchmark folder above model_answer/)."""
    path = Path(path)
    for folder in (path, path.parent):
        candidate = folder / QUESTION_FILE
        if candidate.is_file():
            return candidate
    return None


def parse_schedule(schedule: str) -> tuple[str, str | None]:
    """"all" -> ("all", None); "baseline:MODEL" -> ("baseline", MODEL)."""
    kind, _, baseline = schedule.partition(":")
    if kind == "all" and not baseline:
        return "all", None
    if kind == "baseline" and baseline.strip():
        return "baseline", baseline.strip()
    raise UsageError(f"--schedule {schedule!r}: use `all` (every two models on every question) or `baseline:MODEL` "
                     "(every model against MODEL)")


def read_answer_folder(path: str | Path, questions: str | Path | None = None, schedule: str = "all",
                       models: Sequence[str] | None = None) -> AnswerSet:
    """Battles between the models whose answers are in `path`, paired by `schedule` (see the module docstring).

    Args:
        path: a benchmark folder (with `model_answer/`) or the answer folder itself.
        questions: the questions file (default: question.jsonl in the folder or its parent).
        schedule: "all" or "baseline:MODEL".
        models: only these models (default: every answer file's).

    Returns:
        AnswerSet: unlabelled records with model names, one per battle, in question order then pair order.

    Raises:
        InputNotFound: no answer files there.
        DataError: a malformed answer or question (file and line named), or answers without any user turn.
        UsageError: a bad schedule, or a baseline or model with no answers.
    """
    path = Path(path)
    files = answer_files(path)
    if not files:
        raise InputNotFound(f"{path}: no model answer files (JSON lines with question_id, model_id, choices, as "
                            "FastChat's model_answer/*.jsonl, or Arena-Hard v2's uid, model, messages)")
    kind, baseline = parse_schedule(schedule)
    notes: list[str] = []
    answers: dict[str, dict[str, tuple[str, ...]]] = {}  # model -> question id -> turns
    user_turns: dict[str, tuple[str, ...]] = {}
    repeated = 0
    for file in files:
        for n, row in _json_lines(file):
            qid, model, turns, user = _answer(row, file, n)
            repeated += qid in answers.setdefault(model, {})
            answers[model][qid] = turns  # the last answer wins, as in FastChat
            if user:
                user_turns.setdefault(qid, user)
    if repeated:
        notes.append(f"{repeated} answer(s) repeated a (model, question) seen before; the last one was kept")
    question_file = Path(questions) if questions else find_question_file(files[0].parent)
    if questions and not question_file.is_file():
        raise InputNotFound(f"{question_file}: no such questions file")
    table = _questions(question_file) if question_file else {}
    if not table and not user_turns:
        raise DataError(f"{path}: the answers do not carry the questions; put {QUESTION_FILE} beside model_answer/ "
                        "or pass --questions FILE")
    names = sorted(answers)
    if models:
        unknown = [m for m in models if m not in answers]
        if unknown:
            raise UsageError(f"no answers for {', '.join(unknown)} in {path}; models there: {', '.join(names)}")
        names = sorted(models)
    if kind == "baseline":
        if baseline not in answers:
            raise UsageError(f"--schedule baseline:{baseline}: no answers by {baseline!r} in {path}; models there: "
                             f"{', '.join(sorted(answers))}")
        names = sorted(set(names) | {baseline})
        pairs = [tuple(sorted((m, baseline))) for m in names if m != baseline]
    else:
        pairs = list(itertools.combinations(names, 2))
    if not pairs:
        raise UsageError(f"{path}: answers by {len(names)} model(s); a battle needs two")
    order = list(table) + sorted(q for q in user_turns if q not in table)
    source = (path.parent.name if path.name == ANSWER_DIR else path.name) or "answers"
    records, missing, no_prompt = [], 0, 0
    for qid in order:
        prompt = table[qid]["prompt"] if qid in table else user_turns[qid]
        for m1, m2 in pairs:
            if qid not in answers[m1] or qid not in answers[m2]:
                missing += (qid in answers[m1]) or (qid in answers[m2])
                continue
            if not prompt:
                no_prompt += 1
                continue
            id_ = f"{source}/{qid}/{m1}_vs_{m2}"
            a, b = (m1, m2) if int(text_hash(id_), 16) % 2 == 0 else (m2, m1)
            records.append(PairRecord(
                id=id_, prompt=tuple(prompt), response_a=answers[a][qid], response_b=answers[b][qid], model_a=a,
                model_b=b, source=source,
                meta={"question_id": qid, "category": table.get(qid, {}).get("category")},
            ))
    if missing:
        notes.append(f"{missing} battle(s) left out: one of the two models did not answer that question")
    if no_prompt:
        notes.append(f"{no_prompt} battle(s) left out: their question has no text")
    answered = {q for m in names for q in answers[m]}
    unasked = answered - set(order)
    if unasked:
        notes.append(f"{len(unasked)} answered question(s) are not in {question_file}; their answers were left out")
    if not records:
        raise DataError(f"{path}: no question was answered by both models of any scheduled pair")
    return AnswerSet(records, names, len({r.meta['question_id'] for r in records}), schedule, notes)
