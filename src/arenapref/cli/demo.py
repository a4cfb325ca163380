"""`arenapref demo`, the main job: what arenapref does, on the real shared data, in minutes on 2 cores.

It calls the library (arenapref/workflows.py) as any user's script would, prints each step as a table that fits
an 80-column terminal, writes everything under the output folder, and ends on a short summary:

1. read every shared set (one canonical record for all of them);
2. cross-validate the default model on the four real tie-bearing sets, beside uniform and the prior;
3. leave one set out: train on every other set, predict it with none of its labels, with the tie-rate options;
4. train on every set, predict the 32 real Kaggle rows and grade them as the competition's grader does;
5. rank the spring-2023 Chatbot Arena from its own votes;
6. rank PandaLM's models twice: by people's votes and by a cross-fitted judge, side by side;
7. write report.html with all of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from arenapref.cli.common import out, show_table, warn
from arenapref.config import load_run_config

TIE_SETS = ("pandalm", "llmfao", "llmeval2", "tulu")  # the real human-labelled sets with ties
HELD_OUT = "tulu"  # step 3: a set of expert votes with a third ties, not like the others
KAGGLE = Path("kaggle-sample") / "train_sample.csv"
ARENA_VOTES = Path("arena-votes") / "arena_votes_2023.csv"
NOT_TRAINED_ON = {"quirks", "train_sample"}  # hand-written traps; the Kaggle rows are what step 4 predicts
ARENA_TIE_RATE = 0.3  # about a third of Chatbot Arena votes are ties (29% in the 2023 log)


@dataclass
class Summary:
    lines: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def _log_loss_row(name, rows, tie_rate, values: dict[str, float]) -> dict:
    return {"set": name, "rows": rows, "ties": f"{tie_rate:.0%}", **{k: round(v, 4) for k, v in values.items()}}


def _step(n: int, title: str) -> None:
    out.rule(f"[bold]{n}. {title}", align="left")


def run_demo(data: Path, output: Path, family: str = "features", folds: int = 5, quick: bool = False) -> Summary:
    """The whole main job; `quick` runs it on a sample of each set (for tests), with the same steps."""
    from arenapref.data.io import read_pairs
    from arenapref.data.record import has_text, is_labelled
    from arenapref.data.stats import describe
    from arenapref.metrics import log_loss, prior
    from arenapref.report import ExtraSection
    from arenapref.submission import grade
    from arenapref.workflows import (
        JudgeRequest,
        run_cv,
        run_judge_rank,
        run_predict,
        run_rank,
        run_report,
        run_train,
    )

    start = time.perf_counter()
    summary = Summary()
    run = load_run_config(None, [f"folds.n_splits={folds}"], family)
    if quick:
        run = load_run_config(None, [f"folds.n_splits={folds}", "model.n_estimators=40", "model.source_trees=10",
                                     "model.tfidf_max_features=3000"], family)

    # 1. every shared set ----------------------------------------------------------------------------------
    _step(1, "every shared set, read into one canonical record")
    records, report = read_pairs(data)
    if quick:  # every set, but a slice of each
        by_source: dict[str, list] = {}
        for r in records:
            by_source.setdefault(r.source, []).append(r)
        records = [r for rows in by_source.values() for r in rows[:: max(1, len(rows) // 150)]]
    sets = pd.DataFrame([{"set": s, "rows": d["rows"], "with text": d["rows"] - d.get("textless", 0),
                          "ties": f"{d['tie_rate']:.0%}", "models": len(d["models"])}
                         for s, d in ((s, describe([r for r in records if r.source == s]))
                                      for s in dict.fromkeys(r.source for r in records))])
    show_table(sets, f"{len(records)} pairs from {len(sets)} sets ({sum(1 for p in report.problems if not p.fatal)} "
               "warnings)")
    textful = [r for r in records if has_text(r) and is_labelled([r])]

    # 2. cross-validation on the tie-bearing sets -----------------------------------------------------------
    _step(2, f"{folds}-fold grouped CV of `{family}` on the real sets with ties")
    tie_rows = [r for r in textful if r.source in TIE_SETS]
    cv = run_cv(tie_rows, run, output / "cv", progress=None)
    table = cv.result.table.set_index("slice")
    rows = []
    for name in (*TIE_SETS, "pooled"):
        key = "pooled" if name == "pooled" else f"source {name}"
        if key in table.index:
            t = table.loc[key]
            share = float(np.mean([r.label == 2 for r in tie_rows if name == "pooled" or r.source == name]))
            rows.append(_log_loss_row(name, int(t["rows"]), share, {"uniform": t["uniform logloss"],
                                      "prior": t["prior logloss"], family: t[f"{family} logloss"]})
                        | {"acc": f"{t[f'{family} acc']:.3f}"})
    cv_table = pd.DataFrame(rows)
    show_table(cv_table, f"log loss (lower is better) in {cv.seconds:.0f} s; acc = accuracy of `{family}`")
    pooled = table.loc["pooled"]
    summary.lines.append(f"cross-validated `{family}` on {len(tie_rows)} real pairs with ties: log loss "
                         f"{pooled[f'{family} logloss']:.4f} against the prior's {pooled['prior logloss']:.4f} and "
                         f"uniform guessing's {pooled['uniform logloss']:.4f}")
    summary.files["out-of-fold predictions"] = cv.files["oof"]

    # 3. a set it has never seen --------------------------------------------------------------------------
    _step(3, f"leave {HELD_OUT} out: train on the other sets, predict it without its labels")
    train_rows = [r for r in textful if r.source != HELD_OUT and r.source not in NOT_TRAINED_ON]
    held = [r for r in textful if r.source == HELD_OUT]
    pool_model = output / f"model-without-{HELD_OUT}"
    run_train(train_rows, run, pool_model, progress=None)
    y = np.eye(3)[[r.label for r in held]]
    true_tie = float(y[:, 2].mean())
    oracle, known = f"{HELD_OUT}'s own prior (oracle)", f"--tie-rate {round(true_tie, 2)} (the rate, known)"
    transfer = {"uniform": log_loss(y, np.full((len(held), 3), 1 / 3)),
                "pool prior": log_loss(y, prior(np.eye(3)[[r.label for r in train_rows]], len(held))),
                oracle: log_loss(y, prior(y, len(held)))}
    raw = run_predict(pool_model, held, output / f"{HELD_OUT}-raw.csv", progress=False)
    transfer[f"{family}, as it is"] = log_loss(y, raw.probs)
    em = run_predict(pool_model, held, output / f"{HELD_OUT}-adapt-prior.csv", adapt_prior=True, progress=False)
    transfer[f"--adapt-prior (EM: {em.adaptation.tie_rate:.0%} ties{'' if em.adaptation.applied else ', not applied'})"] = (
        log_loss(y, em.probs))
    given = run_predict(pool_model, held, output / f"{HELD_OUT}-tie-rate.csv", tie_rate=round(true_tie, 2), progress=False)
    transfer[known] = log_loss(y, given.probs)
    transfer_table = pd.DataFrame({"prediction": list(transfer), "log loss": [round(v, 4) for v in transfer.values()]})
    show_table(transfer_table, f"{HELD_OUT}: {len(held)} pairs, {true_tie:.0%} ties, trained on {len(train_rows)} "
               "pairs of the other sets")
    summary.lines.append(f"on {HELD_OUT}, never seen in training: {transfer[f'{family}, as it is']:.4f} as it is, "
                         f"{transfer[known]:.4f} told its tie rate (uniform {transfer['uniform']:.4f}, its own prior "
                         f"{transfer[oracle]:.4f})")

    # 4. the real Kaggle rows -----------------------------------------------------------------------------
    _step(4, "train on every set; predict and grade the 32 real Kaggle rows")
    final_rows = [r for r in textful if r.source not in NOT_TRAINED_ON]
    model_dir = output / "model"
    trained = run_train(final_rows, run, model_dir, progress=None)
    kaggle, _ = read_pairs(data / KAGGLE, labels="ignore", on_id_clash="error")
    submission = output / "submission.csv"
    predicted = run_predict(model_dir, kaggle, submission, tie_rate=ARENA_TIE_RATE, progress=False)
    graded = grade(submission, data / KAGGLE)
    uniform_sub = output / "uniform.csv"
    pd.DataFrame({"id": [r.id for r in kaggle], "winner_model_a": 0.333334, "winner_model_b": 0.333333,
                  "winner_tie": 0.333333}).to_csv(uniform_sub, index=False)
    kaggle_table = pd.DataFrame([
        {"submission": "uniform guessing", "log loss": round(grade(uniform_sub, data / KAGGLE)["log_loss"], 4),
         "accuracy": "-"},
        {"submission": f"{family}, --tie-rate {ARENA_TIE_RATE}", "log loss": round(graded["log_loss"], 4),
         "accuracy": f"{graded['accuracy']:.3f}"},
    ])
    show_table(kaggle_table, f"{graded['rows']} rows of Kaggle's train.csv (model trained on {len(final_rows)} pairs "
               f"in {trained.seconds:.0f} s)")
    for note in predicted.notes:
        warn(note)
    summary.lines.append(f"trained `{family}` on {len(final_rows)} pairs of every set; on the 32 real Kaggle rows "
                         f"it scores {graded['log_loss']:.4f} (uniform {kaggle_table['log loss'][0]:.4f})")
    summary.files["model"], summary.files["submission"] = model_dir, submission

    # 5. the 2023 Chatbot Arena leaderboard -----------------------------------------------------------------
    _step(5, "the spring-2023 Chatbot Arena leaderboard, from its own votes")
    votes, _ = read_pairs(data / ARENA_VOTES)
    arena = run_rank(votes, n_bootstrap=20 if quick else 100, output=output / "arena-ratings.csv")
    top = arena.table().head(10)[["rank", "model", "rating", "ci_low", "ci_high", "battles"]]
    top[["rating", "ci_low", "ci_high"]] = top[["rating", "ci_low", "ci_high"]].map(lambda v: f"{v:.0f}")
    show_table(top, f"top 10 of {len(arena.models)} models, {arena.n_battles} votes (Bradley-Terry, 1000 = mean)")
    summary.lines.append(f"ranked {len(arena.models)} models from {arena.n_battles} Arena votes: "
                         f"{top['model'].iloc[0]} first at {top['rating'].iloc[0]}")
    summary.files["Arena ratings"] = arena.files["ratings"]

    # 6. PandaLM's models: people vs a judge ----------------------------------------------------------------
    _step(6, "PandaLM's models ranked by people and by a cross-fitted judge")
    pandalm = [r for r in textful if r.source == "pandalm"]
    judged = run_judge_rank(pandalm, JudgeRequest(run=run, cross_fit=3 if quick else 5),
                            n_bootstrap=20 if quick else 200, output=output / "pandalm-judge.csv", progress=None)
    side = judged.agreement.table()[["model", "human rank", "judge rank", "human rating", "judge rating"]]
    side[["human rating", "judge rating"]] = side[["human rating", "judge rating"]].map(lambda v: f"{v:.0f}")
    show_table(side, f"{len(pandalm)} PandaLM battles; Spearman {judged.agreement.spearman:.2f}, pairs in the same "
               f"order {judged.agreement.pairwise:.0%}")
    summary.lines.append(f"ranked PandaLM's {len(side)} models by a cross-fitted judge: Spearman "
                         f"{judged.agreement.spearman:.2f} with the people's ranking of the same battles")

    # 7. the report ---------------------------------------------------------------------------------------
    _step(7, "one self-contained page with all of it")
    extras = [ExtraSection("transfer", f"A set never seen: {HELD_OUT}",
                           f"Trained on every other shared set, predicting {HELD_OUT} with none of its labels.",
                           [(f"{HELD_OUT}: log loss", transfer_table)]),
              ExtraSection("kaggle", "The 32 real Kaggle rows", "Graded as the competition's grader grades.",
                           [("graded", kaggle_table)]),
              ExtraSection("arena", "The spring-2023 Chatbot Arena leaderboard", "From its own votes.",
                           [("ratings", arena.table().round(1))])]
    page = run_report(tie_rows, [(family, cv.files["oof"])], output / "report.html", model_dir=model_dir,
                      n_bootstrap=20 if quick else 100, title="arenapref demo", inputs=list(TIE_SETS),
                      agreements=[("PandaLM", judged.agreement)], extra_sections=extras)
    summary.files["report"] = output / "report.html"
    out.print(f"report: {output / 'report.html'} ({len(page.sections)} sections)")

    out.rule("[bold]summary", align="left")
    for line in summary.lines:
        out.print(f"- {line}")
    for name, path in summary.files.items():
        out.print(f"  {name}: {path}")
    out.print(f"done in {time.perf_counter() - start:.0f} s; every output is in {output}/")
    return summary


def demo(
    data: Path = typer.Option(Path("../shared/data"), help="The shared data folder."),
    output: Path = typer.Option(Path("runs/demo"), "--output", "-o", help="Where models, predictions and tables go."),
    model: str = typer.Option("features", "--model", "-m", help="Model family to run (tabular: prior, features, embed)."),
    folds: int = typer.Option(5, "--folds", "-k", min=2),
    quick: bool = typer.Option(False, "--quick", help="A slice of every set and smaller models: the same steps in "
                               "a fraction of the time."),
):
    """The main job: every shared set read; CV on the real sets with ties beside the baselines; a set never seen,
    with the tie-rate options; the 32 real Kaggle rows predicted and graded; the 2023 Arena leaderboard; PandaLM's
    models ranked by people and by a judge; one report.html."""
    from arenapref.errors import UsageError

    if not data.exists():
        raise UsageError(f"{data} not found: run from the repository root with shared/ beside it, or pass --data")
    run_demo(data, output, model, folds, quick)


def register(app: typer.Typer) -> None:
    app.command()(demo)
