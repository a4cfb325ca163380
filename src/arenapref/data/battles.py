"""Battle logs: votes between two named models without the conversation.

Two shapes are read:
- a table (CSV, parquet, JSON lines) with `model_a, model_b, winner` and optionally an id column (`battle`,
  `battle_id`, `question_id` or `id`), like `arena-votes/arena_votes_2023.csv`;
- FastChat's `clean_battle_<date>.json` (fastchat/serve/monitor/clean_battle_data.py): a JSON list of
  {model_a, model_b, winner, judge, turn, anony, language, tstamp, ...}; its "simple" mode drops
  question_id and the conversations. A clean_battle file that keeps `conversation_a` / `conversation_b` is
  an LMArena dump with texts (arena.lmarena_records); rows whose conversations are null become battle-log
  records there too.

`winner` is FastChat's: model_a, model_b, tie or "tie (bothbad)" (both bad counts as a tie, as in FastChat's
elo_analysis.py). Each vote becomes a `battle_log_record`: empty turns and `meta["battle_log"] = True`, so
`rank`, `data stats` and `data validate` use them and training leaves them out (`record.split_textless`).
Ids are `<source>/<battle id>` (`<source>/<row>` without an id column): battle numbers are small integers
that would collide with other sets' ids. A battle id seen twice (FastChat logs one row per vote) is
disambiguated as `<id>#<row>` and counted, as for LMArena dumps.
"""

from __future__ import annotations

from typing import Sequence

from arenapref.data.arena import LMARENA_WINNERS, is_missing, normalise_id, numbered
from arenapref.data.problems import ReadReport
from arenapref.data.record import PairRecord, battle_log_record

BATTLE_ID_COLUMNS = ("battle", "battle_id", "question_id", "id")
BATTLE_META = ("judge", "turn", "anony", "language", "tstamp")


def is_battle_log(columns: Sequence[str]) -> bool:
    cols = set(columns)
    return {"model_a", "model_b", "winner"} <= cols and not cols & {"prompt", "response_a", "response_b",
                                                                    "conversation_a", "conversation_b"}


def battle_records(rows: list[dict], file: str, source: str, report: ReadReport, rownums=None,
                   labels: bool = True) -> list[PairRecord]:
    """Battle-log rows -> textless records (see the module docstring).

    Args:
        rows: one dict per vote (model_a, model_b, winner, and optionally an id column and FastChat's fields).
        file: the file, for problems.
        source: the set's name (read_pairs uses the file stem), also the id prefix.
        report: collects problems and counts.
        rownums: the rows' own numbers, when the loader left some rows out.
        labels: False reads no winner.

    Returns:
        One battle_log_record per valid row, in file order.

    >>> battle_records([{"battle": 1, "model_a": "a", "model_b": "b", "winner": "tie"}], "v.csv", "v", ReadReport())[0].id
    'v/1'
    """
    columns = {k for r in rows[:50] if isinstance(r, dict) for k in r}
    id_col = next((c for c in BATTLE_ID_COLUMNS if c in columns), None)
    out, seen = [], {}
    for i, row in numbered(rows, rownums):
        raw = normalise_id(row.get(id_col)) if id_col else ""
        id_ = f"{source}/{raw or i}"
        if id_ in seen:
            report.counts["repeated_battle_ids"] += 1
            id_ = f"{id_}#{i}"
        seen[id_] = i
        models = []
        for col in ("model_a", "model_b"):
            value = row.get(col)
            models.append(None if is_missing(value) or not str(value).strip() else str(value).strip())
        missing = [c for c, m in zip(("model_a", "model_b"), models) if m is None]
        if missing:
            report.add(file, i, id_, missing[0], "empty model name: a battle needs both models")
            continue
        label = None
        if labels:
            winner = row.get("winner")
            label = None if is_missing(winner) else LMARENA_WINNERS.get(str(winner).strip())
            if label is None:
                report.add(file, i, id_, "winner", f"unknown winner {winner!r}; expected one of "
                           "model_a, model_b, tie, tie (bothbad)")
                continue
        if models[0] == models[1]:
            report.counts["self_battles"] += 1
        meta = {k: row[k] for k in BATTLE_META if k in row and not is_missing(row[k])}
        out.append(battle_log_record(id_, models[0], models[1], label, source, meta))
    return out
