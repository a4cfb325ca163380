"""Sets where several people voted on each pair and the texts sit in a second file: LLMFAO and Tulu human eval.

Both are aggregated as PandaLM's three annotators are: one record per pair, `soft_label` = the mean of the
votes' probability vectors (the vote shares), hard `label` = `record.majority_label` of the votes' hard
labels: the most frequent vote when it is the only most frequent one, and a tie when the top is shared
(1-1, 2-2, 1-1-1): people who split on a pair are read as calling it even, which keeps the hard label from
depending on the order of the votes.

LLMFAO (dustalov/llmfao; `crowd-comparisons.csv` + `pairs-crowd.jsonl` + `models.jsonl`):
- each vote names the model shown on the left and on the right (`left` / `right`, model names) and the
  `winner` (left / right / tie); the pair (`id`) holds `model_x` / `model_y` (ids into models.jsonl) and
  their texts `result_x` / `result_y`. A is the model shown on the left in the pair's first vote, with its
  text; a vote that showed the pair the other way round is mirrored. models.jsonl maps the names to x / y;
  without it the left model is taken to be model_x (what every vote of the published files shows) and the
  assumption is counted (`llmfao_sides_assumed`).
- ids are `llmfao/<pair id>`, the source "llmfao"; model names are kept, and meta holds the number of
  votes, the workers, the prompt id, slug and type.

Tulu human eval (allenai/open-instruct human_eval; `eval_annotations_tulu_1.csv` + `eval_instances_tulu_1.jsonl`):
- each row is one evaluator's judgement of one instance shown as model_a / model_b, on a 5-point scale. A
  pair is an instance and its two models, in either order; A is model_a of the pair's first row in the file,
  and rows that showed it the other way round are mirrored (and their `preference` with them, in meta).
- per-vote probability vectors (A wins, B wins, tie):
      a-is-better (1, 0, 0)   a-is-slightly-better (0.75, 0, 0.25)   tie (0, 0, 1)
      b-is-slightly-better (0, 0.75, 0.25)   b-is-better (0, 1, 0)
  and hard votes A, A, tie, B, B. "Slightly better" still names a winner, so the hard vote is that side
  and the soft vector keeps its argmax there (0.5 / 0.5 would make it a coin flip against the evaluator's
  own choice); a quarter of the mass goes to tie because a weak preference is the kind an Arena voter,
  who has no "slightly", often records as a tie. The hard vote makes the file's tie rate the share of
  explicit "tie" votes (32.7%), as its README counts it.
- texts come from the instances file (by instance id and model name): the annotation sheet went through a
  spreadsheet, which turned completions that start with "=" into "#ERROR!" / "#N/A"; the jsonl keeps them.
  Cells replaced that way are counted (`tulu_cells_replaced_from_instances`). Without the instances file
  the sheet's own cells are used.
- ids are `tulu/<instance id>/<model_a>_vs_<model_b>`, the source "tulu"; meta holds the instance id, the
  evaluators and their preferences (as seen from this record's A / B).
"""

from __future__ import annotations

from typing import Any, Sequence

from arenapref.data.arena import is_missing, normalise_id, numbered, repair_surrogates
from arenapref.data.problems import ReadReport
from arenapref.data.record import (
    A_WINS,
    B_WINS,
    SWAP_INDEX,
    TIE,
    PairRecord,
    majority_label,
    mean_soft_label,
)

ONE_HOT = {A_WINS: (1.0, 0.0, 0.0), B_WINS: (0.0, 1.0, 0.0), TIE: (0.0, 0.0, 1.0)}
SLIGHTLY = 0.75  # share of a "slightly better" vote that goes to the side it names; the rest goes to tie

TULU_PREFERENCES: dict[str, tuple[int, tuple[float, float, float]]] = {
    "a-is-better": (A_WINS, (1.0, 0.0, 0.0)),
    "a-is-slightly-better": (A_WINS, (SLIGHTLY, 0.0, 1 - SLIGHTLY)),
    "tie": (TIE, (0.0, 0.0, 1.0)),
    "b-is-slightly-better": (B_WINS, (0.0, SLIGHTLY, 1 - SLIGHTLY)),
    "b-is-better": (B_WINS, (0.0, 1.0, 0.0)),
}
TULU_MIRROR = {"a-is-better": "b-is-better", "a-is-slightly-better": "b-is-slightly-better", "tie": "tie",
               "b-is-slightly-better": "a-is-slightly-better", "b-is-better": "a-is-better"}

# column sets that tell the files apart (io.detect_format)
LLMFAO_VOTES = {"id", "left", "right", "winner", "worker"}
LLMFAO_PAIRS = {"id", "model_x", "model_y", "result_x", "result_y"}
LLMFAO_MODELS = {"id", "api_id", "name"}
LLMFAO_PROMPTS = {"id", "slug", "text", "type"}
TULU_ANNOTATIONS = {"instance_id", "model_a", "model_b", "completion_a", "completion_b", "preference"}
TULU_INSTANCES = {"id", "prompt", "completions"}


def _text(value: Any, report: ReadReport) -> str:
    text = "" if is_missing(value) else str(value)
    text, fixed = repair_surrogates(text)
    report.counts["repaired_surrogates"] += fixed
    return text


def _name(value: Any) -> str:
    return "" if is_missing(value) else str(value).strip()


def _aggregate(votes: list[int], vectors: list[tuple[float, float, float]]):
    return majority_label(votes), mean_soft_label(vectors)


# ------------------------------------------------------------------------------------------------- LLMFAO


def llmfao_records(votes: list[dict], file: str, pairs: list[dict], pairs_file: str, models: list[dict] | None,
                   report: ReadReport, rownums: Sequence[int] | None = None, labels: bool = True) -> list[PairRecord]:
    """LLMFAO crowd votes joined to their pairs (see the module docstring).

    Args:
        votes: rows of crowd-comparisons.csv (id, worker, winner, left, right, ...).
        file: the votes file, for problems.
        pairs: rows of pairs-crowd.jsonl (id, text, model_x, result_x, model_y, result_y, ...).
        pairs_file: the pairs file, for problems.
        models: rows of models.jsonl (id, name, ...), or None when it is not there.
        report: collects problems and counts.
        rownums: the votes' own row numbers, when some rows were left out by the loader.
        labels: False builds the pairs without labels.

    Returns:
        One record per voted pair, in the order of each pair's first vote.
    """
    by_id: dict[str, dict] = {}
    for j, p in numbered(pairs):
        pid = normalise_id(p.get("id")) if isinstance(p, dict) else ""
        if not pid:
            report.add(pairs_file, j, None, "id", "pair without an id")
            continue
        by_id.setdefault(pid, p)
    names = None
    if models is not None:
        names = {normalise_id(m.get("id")): _name(m.get("name")) for m in models if isinstance(m, dict)}
    groups: dict[str, dict] = {}
    for i, row in numbered(votes, rownums):
        pid = normalise_id(row.get("id"))
        pair = by_id.get(pid)
        if pair is None:
            report.add(file, i, pid or None, "id", f"no pair with this id in {pairs_file}")
            continue
        left, right = _name(row.get("left")), _name(row.get("right"))
        if names is not None:
            name_x, name_y = names.get(normalise_id(pair.get("model_x"))), names.get(normalise_id(pair.get("model_y")))
            if (left, right) == (name_x, name_y):
                left_is_x = True
            elif (left, right) == (name_y, name_x):
                left_is_x = False
            else:
                report.add(file, i, pid, "left", f"left {left!r} / right {right!r} are not the pair's models "
                           f"{name_x!r} (model_x) and {name_y!r} (model_y) in models.jsonl")
                continue
        else:
            left_is_x = True
            report.counts["llmfao_sides_assumed"] += 1
        winner = _name(row.get("winner")).lower()
        if labels and winner not in ("left", "right", "tie"):
            report.add(file, i, pid, "winner", f"winner must be left, right or tie, got {row.get('winner')!r}")
            continue
        g = groups.get(pid)
        if g is None:
            g = groups[pid] = {"a_is_x": left_is_x, "model_a": left or None, "model_b": right or None,
                               "votes": [], "workers": []}
        if labels:
            if winner == "tie":
                vote = TIE
            else:
                x_won = (winner == "left") == left_is_x
                vote = A_WINS if x_won == g["a_is_x"] else B_WINS
            g["votes"].append(vote)
        g["workers"].append(normalise_id(row.get("worker")))
    out = []
    for pid, g in groups.items():
        pair = by_id[pid]
        text_x, text_y = _text(pair.get("result_x"), report), _text(pair.get("result_y"), report)
        a, b = (text_x, text_y) if g["a_is_x"] else (text_y, text_x)
        label = soft = None
        if labels:
            label, soft = _aggregate(g["votes"], [ONE_HOT[v] for v in g["votes"]])
        out.append(PairRecord(
            id=f"llmfao/{pid}", prompt=(_text(pair.get("text"), report),), response_a=(a,), response_b=(b,),
            label=label, soft_label=soft, model_a=g["model_a"], model_b=g["model_b"], source="llmfao",
            meta={"votes": len(g["workers"]), "workers": g["workers"], "prompt_id": normalise_id(pair.get("prompt")),
                  "slug": pair.get("slug"), "prompt_type": pair.get("type")},
        ))
    return out


# --------------------------------------------------------------------------------------------------- Tulu


def tulu_records(rows: list[dict], file: str, instances: list[dict] | None, report: ReadReport,
                 rownums: Sequence[int] | None = None, labels: bool = True) -> list[PairRecord]:
    """Tulu human-eval judgements aggregated per instance and model pair (see the module docstring).

    Args:
        rows: rows of eval_annotations_tulu_1.csv.
        file: the annotations file, for problems.
        instances: rows of eval_instances_tulu_1.jsonl ({id, prompt, completions: [{model, completion}]}),
            or None to use the sheet's own cells.
        report: collects problems and counts.
        rownums: the rows' own numbers, when some rows were left out by the loader.
        labels: False builds the pairs without labels.

    Returns:
        One record per (instance, model pair), in the order of each pair's first judgement.
    """
    prompts: dict[str, str] = {}
    completions: dict[tuple[str, str], str] = {}
    for inst in instances or []:
        if not isinstance(inst, dict):
            continue
        iid = normalise_id(inst.get("id"))
        prompts.setdefault(iid, inst.get("prompt"))
        for c in inst.get("completions") or []:
            if isinstance(c, dict):
                completions.setdefault((iid, _name(c.get("model"))), c.get("completion"))
    groups: dict[tuple, dict] = {}
    for i, row in numbered(rows, rownums):
        row_id = normalise_id(row.get("id")) or None
        iid = normalise_id(row.get("instance_id"))
        model_a, model_b = _name(row.get("model_a")), _name(row.get("model_b"))
        if not iid:
            report.add(file, i, row_id, "instance_id", "empty instance id")
            continue
        missing = [c for c, m in (("model_a", model_a), ("model_b", model_b)) if not m]
        if missing:
            report.add(file, i, row_id, missing[0], "empty model name")
            continue
        preference = _name(row.get("preference")).lower()
        if labels and preference not in TULU_PREFERENCES:
            report.add(file, i, row_id, "preference", f"preference must be one of {list(TULU_PREFERENCES)}, got "
                       f"{row.get('preference')!r}")
            continue
        key = (iid, frozenset((model_a, model_b)))
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"iid": iid, "model_a": model_a, "model_b": model_b, "row": row,
                               "votes": [], "vectors": [], "preferences": [], "evaluators": []}
        mirrored = model_a != g["model_a"]
        if labels:
            vote, vector = TULU_PREFERENCES[preference]
            if mirrored:
                vote, vector = int(SWAP_INDEX[vote]), tuple(vector[k] for k in SWAP_INDEX)
                preference = TULU_MIRROR[preference]
            g["votes"].append(vote)
            g["vectors"].append(vector)
            g["preferences"].append(preference)
        g["evaluators"].append(_name(row.get("evaluator")))
    out = []
    for g in groups.values():
        row, iid = g["row"], g["iid"]
        first_a = _name(row.get("model_a")) == g["model_a"]
        cells = {g["model_a"]: row.get("completion_a" if first_a else "completion_b"),
                 g["model_b"]: row.get("completion_b" if first_a else "completion_a")}
        texts = {}
        for model, cell in cells.items():
            text = completions.get((iid, model))
            if text is None:
                text = cell
                report.counts["tulu_texts_from_annotations"] += 1
            elif not is_missing(cell) and str(cell) != text:
                report.counts["tulu_cells_replaced_from_instances"] += 1
            texts[model] = _text(text, report)
        prompt = prompts.get(iid)
        if prompt is None:
            prompt = row.get("prompt")
        label = soft = None
        if labels:
            label, soft = _aggregate(g["votes"], g["vectors"])
        out.append(PairRecord(
            id=f"tulu/{iid}/{g['model_a']}_vs_{g['model_b']}", prompt=(_text(prompt, report),),
            response_a=(texts[g["model_a"]],), response_b=(texts[g["model_b"]],), label=label, soft_label=soft,
            model_a=g["model_a"], model_b=g["model_b"], source="tulu",
            meta={"instance_id": iid, "votes": len(g["evaluators"]), "evaluators": g["evaluators"],
                  "preferences": g["preferences"]},
        ))
    return out
