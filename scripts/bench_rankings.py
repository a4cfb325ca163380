#!/usr/bin/env python
"""Rankings: judge-made leaderboards against people's, the spring-2023 Arena leaderboard beside FastChat's
algorithm, and one teacher -> student distillation; writes the `rankings` block of BENCHMARKS.md.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_rankings.py [--data ../shared/data] [--output BENCHMARKS.md]
        [--sections judge,arena,distill] [--judges features,embed] [--bootstrap 200] [--json out.json]

1. Judge rankings (PandaLM, LLMFAO, Tulu): each set's battles are scored by judges cross-fitted on 5 folds grouped
   by prompt (`leaderboard.cross_fit_judge`: no judge scores a prompt it was trained on), ratings are fitted from
   the judge's probabilities, and compared with the human ranking of the same battles (`leaderboard.agreement`,
   resamples by prompt, paired).
2. Arena 2023: `rank` on arena-votes/arena_votes_2023.csv beside FastChat's `compute_mle_elo`
   (lm-sys/FastChat, fastchat/serve/monitor/elo_analysis.py), restated below and run on the same votes.
3. Distillation: an `embed` teacher's out-of-fold probabilities (`run_cv(save_oof_soft=...)`) as the soft labels
   of a `features` student, every model scored on held-out prompts none of them saw.
Only the block between the markers is replaced; LightGBM runs on one thread (the 2-core machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before lightgbm / torch load libgomp (see benchmark.py)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arenapref.config import EmbedConfig, FeaturesConfig, RunConfig  # noqa: E402
from arenapref.cv import score_targets  # noqa: E402
from arenapref.data.folds import GroupedFolds  # noqa: E402
from arenapref.data.io import read_pairs  # noqa: E402
from arenapref.data.record import TIE  # noqa: E402
from arenapref.leaderboard import agreement, cross_fit_judge  # noqa: E402
from arenapref.metrics import accuracy, log_loss, prior  # noqa: E402
from arenapref.models import build_model  # noqa: E402
from arenapref.rank import battles_from_records, rank  # noqa: E402
from benchblock import LoadSampler, machine_summary, replace_block  # noqa: E402

SETS = {"pandalm": "pandalm", "llmfao": "llmfao", "tulu": "tulu-human-eval"}


def judge_config(family: str, cache: Path):
    if family == "features":
        return FeaturesConfig(n_jobs=1)
    if family == "embed":
        return EmbedConfig(n_jobs=1, cache_dir=str(cache))
    raise SystemExit(f"--judges: unknown family {family!r} (features, embed)")


def fmt_ci(value: float, interval) -> str:
    if interval is None:
        return f"{value:.3f}"
    return f"{value:.3f} ({interval[0]:.2f}-{interval[1]:.2f})"


def markdown(df: pd.DataFrame) -> str:
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)])


# --- 1. judge rankings --------------------------------------------------------------------------------------------
def judge_rankings(data: Path, families: list[str], n_bootstrap: int, cache: Path) -> dict:
    rows, moved, details = [], [], {}
    for name, folder in SETS.items():
        records = read_pairs(data / folder)[0]
        prompts = len({r.prompt_key for r in records})
        models = len({m for r in records for m in (r.model_a, r.model_b)})
        for family in families:
            start = time.perf_counter()
            scores = cross_fit_judge(records, judge_config(family, cache), k=5, seed=0)
            seconds = time.perf_counter() - start
            y = score_targets(records)
            judged = battles_from_records(records, probs=scores.probs)
            for votes in ("majority", "vote shares"):
                for style in (False, True):
                    settings = dict(n_bootstrap=n_bootstrap, seed=0, bootstrap_by="prompt", style_control=style)
                    human = rank(battles_from_records(records, soft=votes == "vote shares"), **settings)
                    judge = rank(judged, **settings)
                    a = agreement(human, judge)
                    iv = a.intervals or {}
                    rows.append({
                        "set": name, "models": models, "battles": len(records), "prompts": prompts, "judge": family,
                        "people's votes": votes, "style control": "both" if style else "no",
                        "judge log loss": log_loss(y, scores.probs), "Spearman (95% CI)": fmt_ci(a.spearman, iv.get("spearman")),
                        "Kendall (95% CI)": fmt_ci(a.kendall, iv.get("kendall")),
                        "pairs in order (95% CI)": fmt_ci(a.pairwise, iv.get("pairwise")),
                        "max / mean abs diff": f"{a.max_abs_diff:.0f} / {a.mean_abs_diff:.0f}",
                        "spread judge/people": f"{a.spread_ratio:.2f}",
                        "people self-Spearman": f"{a.human_stability:.3f}" if a.human_stability is not None else "",
                        "cross-fit s": round(seconds),
                    })
                    details[f"{name}/{family}/{votes}/{'style' if style else 'plain'}"] = a.to_dict()
                    if votes == "majority" and not style:
                        m = a.moved()
                        moved.append({"set": name, "judge": family, "moved": f"{len(m)} of {len(a.models)}",
                                      "largest moves (people -> judge rank)": ", ".join(
                                          f"{r['model']} {r['human rank']}->{r['judge rank']}" for r in m.head(5).to_dict("records"))})
            print(f"judge rankings: {name} {family} done ({seconds:.0f} s)", flush=True)
    return {"rows": rows, "moved": moved, "details": details, "n_bootstrap": n_bootstrap}


# --- 2. the Arena 2023 leaderboard beside FastChat's compute_mle_elo -----------------------------------------------
def fastchat_mle_elo(battles: pd.DataFrame, scale: float = 400, base: float = 10, init: float = 1000) -> pd.Series:
    """FastChat's `compute_mle_elo` (fastchat/serve/monitor/elo_analysis.py), restated.

    Per ordered pair of models (i, j) it counts twice the battles i won against j (as model_a or model_b) plus the
    battles they tied (either order); a pair enters the regression as two rows with +log(base) in i's column and
    -log(base) in j's: label 1 weighted by i's count over j, label 0 weighted by j's count over i. The counts come
    from three pivot tables (A won, B won, tie), summed after aligning their rows and columns, so a pair is left
    out when one of its models is missing from a pivot's rows or columns, as there. The fit is scikit-learn's
    unpenalised logistic regression without intercept (lbfgs, tol 1e-6); rating = scale * coefficient + init (FastChat
    then anchors mixtral-8x7b-instruct-v0.1 at 1114 when it is in the data; it is not in 2023's votes).
    """
    from sklearn.linear_model import LogisticRegression

    def pivot(mask: pd.Series) -> pd.DataFrame:
        return pd.pivot_table(battles[mask], index="model_a", columns="model_b", aggfunc="size", fill_value=0)

    tie = battles["winner"].isin(["tie", "tie (bothbad)"])
    a_won, b_won = pivot(battles["winner"] == "model_a"), pivot(battles["winner"] == "model_b")
    ties = pivot(tie) if tie.any() else pd.DataFrame(0, index=a_won.index, columns=a_won.columns)
    counts = a_won * 2 + b_won.T * 2 + (ties + ties.T)
    models = list(counts.index)
    column = {m: k for k, m in enumerate(models)}
    X, y, w = [], [], []
    for i in models:
        for j in counts.columns:
            if i == j or pd.isna(counts.loc[i, j]) or pd.isna(counts.loc[j, i]):
                continue
            row = np.zeros(len(models))
            row[column[i]], row[column[j]] = np.log(base), -np.log(base)
            X += [row, row]
            y += [1.0, 0.0]
            w += [counts.loc[i, j], counts.loc[j, i]]
    lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6)  # = penalty=None (deprecated in sklearn 1.8)
    lr.fit(np.array(X), np.array(y), sample_weight=np.array(w))
    ratings = pd.Series(scale * lr.coef_[0] + init, index=models)
    if "mixtral-8x7b-instruct-v0.1" in ratings.index:
        ratings += 1114 - ratings["mixtral-8x7b-instruct-v0.1"]
    return ratings.sort_values(ascending=False)


def arena_2023(data: Path, n_bootstrap: int) -> dict:
    path = data / "arena-votes" / "arena_votes_2023.csv"
    votes = pd.read_csv(path)
    records = read_pairs(path)[0]
    start = time.perf_counter()
    ours = rank(records, n_bootstrap=n_bootstrap, seed=0)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = fastchat_mle_elo(votes)
    theirs_s = time.perf_counter() - start
    table = ours.table()
    table["FastChat compute_mle_elo"] = table["model"].map(theirs)
    table["difference"] = table["rating"] - table["FastChat compute_mle_elo"]
    centred = theirs - theirs.mean() + 1000
    diff_centred = (table["rating"] - table["model"].map(centred)).abs().max()
    self_battles = int((votes["model_a"] == votes["model_b"]).sum())
    return {"table": table, "votes": len(votes), "battles": ours.n_battles, "self_battles": self_battles,
            "models": len(ours.models), "max_abs_diff": float(table["difference"].abs().max()),
            "max_abs_diff_centred": float(diff_centred), "fastchat_mean": float(theirs.mean()),
            "ours_s": ours_s, "theirs_s": theirs_s, "n_bootstrap": n_bootstrap,
            "spearman": float(pd.Series(table["rating"]).corr(table["FastChat compute_mle_elo"], method="spearman"))}


# --- 3. distillation --------------------------------------------------------------------------------------------
def distillation(data: Path, cache: Path, work: Path) -> dict:
    from arenapref.workflows import run_cv

    records = [r for name in SETS.values() for r in read_pairs(data / name)[0]]
    folds = GroupedFolds(5, seed=0).fold_ids(records)
    train = [r for r, f in zip(records, folds) if f != 0]
    held = [r for r, f in zip(records, folds) if f == 0]
    y = score_targets(held)
    teacher_cfg, student_cfg = EmbedConfig(n_jobs=1, cache_dir=str(cache)), FeaturesConfig(n_jobs=1)
    out, times = {}, {}

    def timed(key, fn):
        start = time.perf_counter()
        value = fn()
        times[key] = time.perf_counter() - start
        return value

    out["prior of the training rows"] = prior(score_targets(train), len(held))
    baseline = timed("features fit", lambda: build_model(student_cfg).fit(train))
    out["features on the sets' own labels"] = timed("features predict", lambda: baseline.predict_proba(held))
    teacher = timed("teacher fit", lambda: build_model(teacher_cfg).fit(train))
    out["embed teacher"] = timed("teacher predict", lambda: teacher.predict_proba(held))
    soft_file = work / "teacher-oof.csv"
    timed("teacher 5-fold OOF", lambda: run_cv(train, RunConfig(model=teacher_cfg), work / "cv", progress=False,
                                               save_oof_soft=soft_file))
    oof_rows = read_pairs(soft_file)[0]
    assert [r.id for r in oof_rows] == [r.id for r in train]
    student = timed("student fit", lambda: build_model(student_cfg).fit(oof_rows))
    out["features student of the teacher's out-of-fold labels"] = timed("student predict", lambda: student.predict_proba(held))
    from arenapref.distill import with_soft_labels

    oof = np.array([r.soft_label for r in oof_rows])
    own = np.array([r.target() for r in train])
    mixed = with_soft_labels(train, (oof + own) / 2)
    out["features student of half teacher (out-of-fold), half own labels"] = build_model(student_cfg).fit(mixed).predict_proba(held)
    in_sample = with_soft_labels(train, teacher.predict_proba(train))
    out["features student of the teacher's in-sample labels"] = build_model(student_cfg).fit(in_sample).predict_proba(held)
    sources = sorted({r.source for r in records})
    held_src = np.array([r.source for r in held])
    train_src = np.array([r.source for r in train])
    y_train = score_targets(train)
    rows = [{"model (held-out prompts)": name, "log loss": log_loss(y, p), "accuracy": accuracy(y, p),
             "mean P(tie)": float(p[:, TIE].mean()),
             **{f"log loss {s}": log_loss(y[held_src == s], p[held_src == s]) for s in sources}}
            for name, p in out.items()]
    oof_quality = {s: log_loss(y_train[train_src == s], oof[train_src == s]) for s in sources}
    teacher_probs = out["embed teacher"]
    student_probs = out["features student of the teacher's out-of-fold labels"]
    return {"table": pd.DataFrame(rows), "times": times, "train": len(train), "held": len(held),
            "held_tie_rate": float(y[:, TIE].mean()), "oof_quality": oof_quality,
            "oof_quality_all": log_loss(y_train, oof),
            "student_teacher_mae": float(np.abs(student_probs - teacher_probs).mean()),
            "pairs_per_s": {"teacher": len(held) / times["teacher predict"], "student": len(held) / times["student predict"]},
            "oof_soft_columns": list(pd.read_csv(soft_file, nrows=1).columns)}


def torch_threads() -> str:
    try:
        import torch

        return str(torch.get_num_threads())
    except ImportError:
        return "no"


# --- the block ------------------------------------------------------------------------------------------------------
def run_line(run: dict) -> str:
    return (f"Measured {run['started']} by `{run['command']}` ({run['seconds'] / 60:.1f} min for this section); "
            f"1-minute load average meanwhile: {run['load']}.")


def block(results: dict) -> str:
    parts = ["## Rankings: judge-made leaderboards, the 2023 Arena leaderboard, distillation\n\n"
             f"Machine: {machine_summary()}; LightGBM on 1 thread, OMP_WAIT_POLICY=PASSIVE, torch {torch_threads()} "
             "threads (the sentence encoder of `embed`). The 2 cores were shared with other developers' runs (load "
             "averages below, per section), so times are pessimistic; no GPU."]
    if "judge" in results:
        j = results["judge"]
        parts.append(
            "### Judge rankings against people's, same battles\n\n"
            "Each set's battles are scored by judges cross-fitted on 5 folds grouped by prompt (every battle by a judge "
            "trained on the other folds' battles, which never saw its prompt; default settings), with swap TTA; the "
            "judge's ratings are fitted from its P(A), P(B), P(tie) as fractional outcomes (a tie half a win each way) "
            "and the people's from their votes (the majority of a battle's annotators, or each annotator's vote as a "
            "share), on the same battles with the same "
            f"{j['n_bootstrap']} resamples of prompts; intervals are percentiles over those paired resamples. "
            "`style control: both` fits log(len A / len B) in both rankings. `people self-Spearman` is the median "
            "Spearman of the people's ranking with its own resamples: how stable the reference itself is. "
            "`judge log loss` is the cross-fitted judge's on the majority labels (uniform 1.0986). Target: Spearman >= 0.8 "
            "on each set. " + run_line(j["run"]) + "\n\n" + markdown(pd.DataFrame(j["rows"]))
            + "\n\nModels that moved (majority votes, no style control):\n\n" + markdown(pd.DataFrame(j["moved"])))
    if "arena" in results:
        a = results["arena"]
        t = a["table"][["rank", "model", "rating", "ci_low", "ci_high", "battles", "FastChat compute_mle_elo", "difference"]]
        t = t.rename(columns={"rating": "arenapref rating", "ci_low": "95% CI low", "ci_high": "95% CI high"})
        t = t.assign(**{c: t[c].map(lambda v: f"{v:.2f}") for c in ("arenapref rating", "95% CI low", "95% CI high",
                                                                     "FastChat compute_mle_elo")},
                     difference=t["difference"].map(lambda v: f"{v:+.4f}"))
        parts.append(
            "### The spring-2023 Chatbot Arena leaderboard from its own votes\n\n"
            f"`arena-votes/arena_votes_2023.csv`: {a['votes']} votes, {a['self_battles']} of them a model against itself "
            f"(left out by both), {a['battles']} battles between {a['models']} models. `arenapref rank` "
            f"({a['n_bootstrap']} bootstrap resamples of battles, {a['ours_s']:.1f} s with them) beside FastChat's "
            "`compute_mle_elo` (lm-sys/FastChat `fastchat/serve/monitor/elo_analysis.py`, restated in this script and "
            f"run on the same file, {a['theirs_s']:.1f} s): max |difference| {a['max_abs_diff']:.4f} rating points "
            f"({a['max_abs_diff_centred']:.4f} after centring FastChat's ratings on 1000; their mean is "
            f"{a['fastchat_mean']:.4f}), Spearman {a['spearman']:.4f}. The leaderboard LMSYS published in May 2023 used "
            "online Elo (K=4, order-dependent), not this fit, so its numbers are not the reference here. "
            + run_line(a["run"]) + "\n\n" + markdown(t))
    if "distill" in results:
        d = results["distill"]
        times = d["times"]
        parts.append(
            "### Distillation: an `embed` teacher into a `features` student\n\n"
            f"PandaLM + LLMFAO + Tulu (tie-bearing, annotator vote shares as soft labels where a set has several votes). "
            f"Fold 0 of 5 grouped by prompt is held out ({d['held']} pairs, tie rate {d['held_tie_rate']:.3f}); nothing "
            f"below trained on it. On the other {d['train']} pairs: the teacher's out-of-fold probabilities came from "
            "`run_cv(..., save_oof_soft=teacher-oof.csv)` (5 folds, what `arenapref cv --save-oof-soft` writes; columns "
            f"{', '.join(d['oof_soft_columns'])}), and the student is `features` trained on that file; for contrast, a "
            "student of the teacher's in-sample labels (the teacher trained on all training rows labelling them, as "
            "`predict --soft-labels` on its own training data would). Log loss on the held-out majority labels, lower "
            "is better (uniform 1.0986). " + run_line(d["run"]) + "\n\n" + markdown(d["table"])
            + f"\n\nTimes: teacher fit {times['teacher fit']:.0f} s, its 5-fold OOF run {times['teacher 5-fold OOF']:.0f} s, "
            f"student fit {times['student fit']:.0f} s, `features` fit {times['features fit']:.0f} s; prediction on the "
            f"held-out pairs: teacher {d['pairs_per_s']['teacher']:.0f} pairs/s, student {d['pairs_per_s']['student']:.0f} "
            "pairs/s. The teacher's times include embedding each text the first time it is seen (the embedding cache "
            "starts empty, unless the judge section ran before it in the same process). Mean |student - teacher| "
            f"probability on the held-out pairs: {d['student_teacher_mae']:.3f}.\n\n"
            f"Why the out-of-fold student loses: the labels it learns are only as good as the teacher out of fold. "
            f"Scored against the training rows' own majority labels, the teacher's out-of-fold probabilities have log "
            f"loss {d['oof_quality_all']:.4f} overall, "
            + ", ".join(f"{s} {v:.4f}" for s, v in d["oof_quality"].items())
            + " (uniform 1.0986): on LLMFAO, whose 13 prompts leave a fold's teacher 2-3 prompts it never saw, they "
            "are worse than uniform, and a student fitted to them learns that noise. Half of the row's own label "
            "mixed in repairs most of it; the teacher's in-sample labels, smoother but over-confident on its own "
            "training rows, do better here than its out-of-fold ones. Neither student reaches the teacher on this "
            "data.")
    return "\n\n".join(parts)


def to_plain(results: dict) -> dict:
    def plain(v):
        return {"__frame__": v.to_dict("records")} if isinstance(v, pd.DataFrame) else str(v)

    return json.loads(json.dumps(results, default=plain))


def from_plain(data: dict) -> dict:
    def back(v):
        if isinstance(v, dict):
            return pd.DataFrame(v["__frame__"]) if set(v) == {"__frame__"} else {k: back(x) for k, x in v.items()}
        return v

    return back(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--sections", default="arena,judge,distill")
    parser.add_argument("--judges", default="features,embed")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--json", type=Path, help="Results as JSON, rewritten after every section.")
    parser.add_argument("--reuse-json", action="store_true", help="Keep the sections already in --json (measured by an "
                        "earlier run, whose date, load and command the block then states) and run only the others.")
    args = parser.parse_args()
    command = "HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_rankings.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    results: dict = {}
    if args.reuse_json and args.json and args.json.exists():
        results = from_plain(json.loads(args.json.read_text(encoding="utf-8")))
    with tempfile.TemporaryDirectory(prefix="arenapref-bench-rank-") as tmp:
        cache = Path(tmp) / "embed-cache"  # cold: the first embed run on a set embeds its texts
        runs = {"arena": lambda: arena_2023(args.data, args.bootstrap),
                "judge": lambda: judge_rankings(args.data, args.judges.split(","), args.bootstrap, cache),
                "distill": lambda: distillation(args.data, cache, Path(tmp))}
        for section in args.sections.split(","):
            if section in results:
                print(f"{section}: kept from {args.json}", flush=True)
                continue
            started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            start = time.perf_counter()
            with LoadSampler() as load:
                results[section] = runs[section]()
            results[section]["run"] = {"started": started, "seconds": time.perf_counter() - start,
                                       "load": load.summary(), "command": command.strip()}
            print(f"{section} done in {results[section]['run']['seconds']:.0f} s", flush=True)
            if args.json:
                args.json.write_text(json.dumps(to_plain(results), indent=1), encoding="utf-8")
    replace_block(args.output, "rankings", block(results))
    print(f"wrote the rankings block of {args.output}")


if __name__ == "__main__":
    main()
