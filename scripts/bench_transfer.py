#!/usr/bin/env python
"""Transfer between the shared sets, source-aware training and prior adaptation; writes the `transfer` block of
BENCHMARKS.md.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_transfer.py [--data ../shared/data] [--output BENCHMARKS.md]
        [--sections candidates transfer cv] [--n-jobs 1] [--json /tmp/transfer.json] [--render /tmp/transfer.json]

About 45 minutes on the shared 2-core dev machine with one LightGBM thread (85 fits of `features`, 65 of them on 12-16k
pairs; encoding the texts is a third of each fit). `--render` rewrites the block from an earlier run's --json file
without measuring anything.

Data: every shared set with texts (battle logs have none; `arena-format/quirks.csv` is hand-written, not human
labels, so it is left out too). The tie-bearing sets are PandaLM, LLMFAO, LLMEval2 and Tulu.

1. candidates: how the source enters the default `features` model (source_weighting x source_columns), each
   measured by leave-one-source-out transfer (raw and with --adapt-prior) and by one 5-fold grouped CV of the whole
   pool scored per tie-bearing set.
2. transfer: leave-one-source-out with the default config: train on every other set, predict the held-out one
   without its labels, raw, with `--adapt-prior` (EM) and with `--tie-rate` at its true rate (a reference), beside
   uniform, the training pool's prior and the held-out set's own prior (an oracle); estimated vs true tie rate.
3. cv: each tie-bearing set's own 5 grouped folds; training on that set alone vs on its training folds plus every
   other set (the same test folds), mean and sample std of the per-fold log loss.

Pairs a held-out set shares with a training set (`find_overlaps`: the same two responses, either order, compared
case-, space- and punctuation-insensitively, whole conversations or first turns) are dropped from training, and the
script says how many; prompts may be shared (the same instruction answered by other models).
Nothing is cached: every number is computed by the run. Only the block between the markers is replaced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see scripts/benchmark.py: spinning OpenMP threads starve

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arenapref.adapt import adapt_prior, shift_to_tie_rate  # noqa: E402
from arenapref.config import FeaturesConfig  # noqa: E402
from arenapref.cv import score_targets  # noqa: E402
from arenapref.data.folds import GroupedFolds  # noqa: E402
from arenapref.data.overlap import find_overlaps, pair_key  # noqa: E402
from arenapref.data.record import TIE, targets  # noqa: E402
from arenapref.metrics import accuracy, log_loss, prior, uniform  # noqa: E402
from arenapref.models import build_model  # noqa: E402
from benchblock import LoadSampler, machine_summary, replace_block, shared_sets  # noqa: E402  (scripts/ is on sys.path when a script runs)

TIE_SETS = ("pandalm", "llmfao", "llmeval2", "tulu")
NAMES = {"pandalm": "PandaLM", "llmfao": "LLMFAO", "llmeval2": "LLMEval2", "tulu": "Tulu", "hh-rlhf": "hh-rlhf",
         "llmbar": "LLMBar", "hhh": "HHH", "train_sample": "Kaggle sample"}
LEFT_OUT = ("quirks",)  # hand-written traps of the Kaggle format, not human labels
SECTIONS = ("candidates", "transfer", "cv")
# (source_weighting, source_columns, source_trees); the first is the model before sources were an input
CANDIDATES = [("none", "none", 0), ("balanced", "tie_rate", 0), ("balanced", "indicator", 0), ("sqrt", "indicator", 0),
              ("sqrt", "indicator", 100)]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fmt(x, nd: int = 4) -> str:
    return "" if x is None else f"{x:.{nd}f}"


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def config(n_jobs: int, source: tuple | None = None) -> FeaturesConfig:
    """The default features config (its own source settings unless `source` gives them), on n_jobs threads."""
    settings = {"n_jobs": n_jobs}
    if source is not None:
        settings |= dict(zip(("source_weighting", "source_columns", "source_trees"), source))
    return FeaturesConfig(**settings)


def settings(cfg: FeaturesConfig) -> tuple:
    return cfg.source_weighting, cfg.source_columns, cfg.source_trees


def label(source: tuple) -> str:
    return "{}, {}, {}".format(*source)


# --- data ------------------------------------------------------------------------------------------------------
def load(data: Path) -> dict[str, list]:
    return shared_sets(data, LEFT_OUT)


def keys(records) -> set[str]:
    return {k for r in records for level in ("conversation", "first_turn") if (k := pair_key(r, level)) is not None}


def training_pool(sets: dict[str, list], held: str) -> tuple[list, dict]:
    """Every set but `held`, less the rows that share a pair with it; what was found and dropped."""
    held_keys = keys(sets[held])
    pool, dropped = [], {}
    for name, rows in sets.items():
        if name == held:
            continue
        kept = [r for r in rows if not ({pair_key(r, lv) for lv in ("conversation", "first_turn")} & held_keys)]
        if len(kept) < len(rows):
            dropped[name] = len(rows) - len(kept)
        pool += kept
    report = find_overlaps({held: sets[held], "training": [r for n, rows in sets.items() if n != held for r in rows]})
    pairs, prompts = report.pairs.get((held, "training")), report.prompts.get((held, "training"))
    found = {"pair_rows_held": pairs.rows_a if pairs else 0, "pair_rows_train": pairs.rows_b if pairs else 0,
             "prompt_rows_held": prompts.rows_a if prompts else 0, "dropped": dropped}
    if pairs:
        log(f"WARNING: {held} shares {pairs.distinct} pair(s) with the training sets ({pairs.rows_a} held-out rows, "
            f"{pairs.rows_b} training rows); dropped from training: {dropped}")
    return pool, found


def tie_rate(records) -> float:
    return float(np.mean(score_targets(records)[:, TIE]))


def scores(y, p) -> dict:
    return {"logloss": log_loss(y, p), "acc": accuracy(y, p), "mean_tie": float(p[:, TIE].mean())}


# --- leave one source out -------------------------------------------------------------------------------------
def loso(sets: dict[str, list], cfg: FeaturesConfig) -> dict:
    out = {}
    for held in TIE_SETS:
        pool, found = training_pool(sets, held)
        test = sets[held]
        y = score_targets(test)
        start = time.perf_counter()
        model = build_model(cfg).fit(pool, progress=False)
        fit_s = time.perf_counter() - start
        raw = model.predict_proba(test)
        priors = model.training_priors(test)
        em, info = adapt_prior(raw, priors)
        row = {"rows": len(test), "train_rows": len(pool), "fit_s": fit_s, "true_tie": tie_rate(test),
               "soft_tie": float(targets(test)[:, TIE].mean()), "overlap": found,
               "train_prior_tie": float(model.train_prior_[TIE]), "raw": scores(y, raw), "em": scores(y, em),
               "em_tie": info.tie_rate, "em_iterations": info.iterations, "em_converged": info.converged,
               "em_applied": info.applied}
        known, _ = shift_to_tie_rate(raw, priors, row["true_tie"])
        row |= {"uniform": scores(y, uniform(len(test))), "pool_prior": scores(y, prior(score_targets(pool), len(test))),
                "oracle_prior": scores(y, prior(y, len(test))), "tie_rate": scores(y, known)}
        out[held] = row
        log(f"  {held}: raw {row['raw']['logloss']:.4f}, EM {row['em']['logloss']:.4f} (tie {info.tie_rate:.3f} vs "
            f"{row['true_tie']:.3f}), fit {fit_s:.0f} s on {len(pool)} rows")
    return out


# --- cross-validation -------------------------------------------------------------------------------------------
def pooled_cv(sets: dict[str, list], cfg: FeaturesConfig, k: int = 5) -> dict:
    """One grouped k-fold CV of every set together, scored per tie-bearing set."""
    records = [r for rows in sets.values() for r in rows]
    folds = GroupedFolds(k, 0).fold_ids(records)
    oof = np.zeros((len(records), 3))
    for f in range(k):
        train = [r for r, g in zip(records, folds) if g != f]
        test_idx = np.flatnonzero(folds == f)
        oof[test_idx] = build_model(cfg).fit(train, progress=False).predict_proba([records[i] for i in test_idx])
    y, sources = score_targets(records), np.array([r.source for r in records])
    out = {}
    for s in TIE_SETS:
        m = sources == s
        per_fold = [log_loss(y[m & (folds == f)], oof[m & (folds == f)]) for f in range(k)]
        out[s] = {"logloss": log_loss(y[m], oof[m]), "fold_mean": float(np.mean(per_fold)), "fold_sd": float(np.std(per_fold, ddof=1))}
    return out


def own_folds_cv(sets: dict[str, list], cfg: FeaturesConfig, k: int = 5) -> dict:
    """Per tie-bearing set: its own k grouped folds, trained on its training folds alone and plus every other set."""
    out = {}
    for s in TIE_SETS:
        rows = sets[s]
        folds = GroupedFolds(k, 0).fold_ids(rows)
        others, found = training_pool(sets, s)
        y = score_targets(rows)
        preds = {"prior": np.zeros((len(rows), 3)), "alone": np.zeros((len(rows), 3)), "plus": np.zeros((len(rows), 3))}
        start = time.perf_counter()
        for f in range(k):
            train = [r for r, g in zip(rows, folds) if g != f]
            idx = np.flatnonzero(folds == f)
            test = [rows[i] for i in idx]
            preds["prior"][idx] = prior(score_targets(train), len(idx))
            preds["alone"][idx] = build_model(cfg).fit(train, progress=False).predict_proba(test)
            preds["plus"][idx] = build_model(cfg).fit(train + others, progress=False).predict_proba(test)
        res = {"rows": len(rows), "others": len(others), "overlap": found, "seconds": time.perf_counter() - start}
        for name, p in preds.items():
            per_fold = [log_loss(y[folds == f], p[folds == f]) for f in range(k)]
            res[name] = {"logloss": log_loss(y, p), "acc": accuracy(y, p), "fold_mean": float(np.mean(per_fold)),
                         "fold_sd": float(np.std(per_fold, ddof=1)), "per_fold": per_fold}
        diff = np.array(res["plus"]["per_fold"]) - np.array(res["alone"]["per_fold"])
        res["plus_minus_alone"] = {"mean": float(diff.mean()), "sd": float(diff.std(ddof=1)), "folds_better": int((diff < 0).sum())}
        out[s] = res
        log(f"  {s}: prior {res['prior']['fold_mean']:.4f}, alone {res['alone']['fold_mean']:.4f} +- "
            f"{res['alone']['fold_sd']:.4f}, plus others {res['plus']['fold_mean']:.4f} +- {res['plus']['fold_sd']:.4f}")
    return out


# --- the block --------------------------------------------------------------------------------------------------
def candidates_section(res: dict, default: str) -> str:
    rows = []
    for key, r in res.items():
        loso_raw = [r["loso"][s]["raw"]["logloss"] for s in TIE_SETS]
        loso_em = [r["loso"][s]["em"]["logloss"] for s in TIE_SETS]
        cv = [r["cv"][s]["logloss"] for s in TIE_SETS]
        loso_ref = [r["loso"][s]["tie_rate"]["logloss"] for s in TIE_SETS]
        rows.append([key + (" (default)" if key == default else "")] +
                    [f"{a:.4f} / {b:.4f} / {c:.4f}" for a, b, c in zip(loso_raw, loso_em, loso_ref)] +
                    [f"{np.mean(loso_raw):.4f}", f"{np.mean(loso_ref):.4f}"] +
                    [fmt(c) for c in cv] + [f"{np.mean(cv):.4f}", f"{r['seconds'] / 60:.1f} min"])
    heads = ["weighting, columns, source trees"] + [f"LOSO {NAMES[s]} raw / EM / tie-rate" for s in TIE_SETS] + \
            ["LOSO raw mean", "LOSO tie-rate mean"] + [f"pooled CV {NAMES[s]}" for s in TIE_SETS] + ["pooled CV mean", "time"]
    return "\n".join([
        "### Candidates: how the source enters the model", "",
        "`features` with default hyper-parameters and each setting of `source_weighting`, `source_columns`, "
        "`source_trees`. LOSO: leave-one-source-out log loss of each tie-bearing set (trained on every other set, "
        "overlapping pairs dropped), raw / with `--adapt-prior` (EM) / with `--tie-rate` at the set's true rate "
        "(a reference that uses its labels). Pooled CV: one 5-fold grouped CV of all sets together (folds seed 0), "
        "log loss of each tie-bearing set's out-of-fold rows (its training folds and 4/5 of every other set in "
        "training).", "",
        table(heads, rows), "",
        "Best candidate by each summary: " + "; ".join(
            f"{what}: {min(res, key=lambda k: np.mean([pick(res[k], s) for s in TIE_SETS]))}" for what, pick in [
                ("pooled CV mean", lambda r, s: r["cv"][s]["logloss"]),
                ("LOSO raw mean", lambda r, s: r["loso"][s]["raw"]["logloss"]),
                ("LOSO tie-rate mean", lambda r, s: r["loso"][s]["tie_rate"]["logloss"])]) +
        f". The default is {default}."])


def transfer_section(res: dict, default: str) -> str:
    rows, notes = [], []
    for s in TIE_SETS:
        r = res[s]
        ref = lambda k: fmt(r[k]["logloss"])  # noqa: E731
        rows.append([NAMES[s], r["rows"], r["train_rows"], ref("uniform"), ref("pool_prior"), ref("oracle_prior"),
                     ref("raw"), ref("em"), ref("tie_rate"), f"{r['em']['logloss'] - r['oracle_prior']['logloss']:+.4f}",
                     fmt(r["em"]["acc"], 3)])
        o = r["overlap"]
        if o["pair_rows_held"] or o["dropped"]:
            notes.append(f"{NAMES[s]}: {o['pair_rows_held']} of its rows share a pair with the other sets; "
                         f"dropped from its training pool: " + ", ".join(f"{n} rows of {NAMES.get(k, k)}" for k, n in o["dropped"].items()))
        if o["prompt_rows_held"]:
            notes.append(f"{NAMES[s]}: {o['prompt_rows_held']} of its rows share a prompt (other responses) with the "
                         "training sets; kept")
    ties = [[NAMES[s], fmt(res[s]["true_tie"], 3), fmt(res[s]["soft_tie"], 3), fmt(res[s]["train_prior_tie"], 3),
             fmt(res[s]["raw"]["mean_tie"], 3), fmt(res[s]["em_tie"], 3), f"{res[s]['em_tie'] - res[s]['true_tie']:+.3f}",
             f"{res[s]['em_iterations']}{'' if res[s]['em_converged'] else ' (not converged)'}",
             "yes" if res[s]["em_applied"] else "no (ran to the edge)"] for s in TIE_SETS]
    return "\n".join([
        "### Leave one source out", "",
        f"Default config ({default}). Each tie-bearing set is held out in turn: the model is trained on every other "
        "shared set and predicts the held-out one without any of its labels. `pool prior`: the class prior of the "
        "training rows; `oracle prior`: the held-out set's own swap-symmetric class prior (uses its labels); `EM`: "
        "`predict --adapt-prior` (the model's own predictions where EM ran to the edge, below); `tie-rate`: `predict --tie-rate` at the held-out set's true tie rate (a reference: "
        "it uses the labels' tie share). `EM - oracle`: negative is better than the oracle prior. Accuracy: of EM.", "",
        table(["held out", "rows", "training rows", "uniform", "pool prior", "oracle prior", "model raw", "model EM",
               "model tie-rate", "EM - oracle", "acc"], rows), "",
        "Overlap with the training sets:", "", *[f"- {n}" for n in notes], "",
        "Tie rate of each held-out set: true (hard labels, as scored; annotator splits count as ties), the mean soft "
        "label's tie share, the model's training prior, its mean P(tie) before adaptation, and the EM estimate:", "",
        table(["held out", "true", "soft labels", "training prior", "mean P(tie) raw", "EM estimate", "EM - true",
               "EM steps", "applied"], ties), "",
        "An EM estimate within 0.005 of 0 or 1 is reported but not applied (the predictions stay the model's own, "
        "and `predict` warns): the likelihood then has no maximum inside, which a new source's covariate shift "
        "causes and a prior shift alone does not.", "",
        "How the model's tie mass moves with the held-out set's true tie rate: mean P(tie) minus the training "
        "prior's tie share is " + ", ".join(f"{NAMES[s]} {res[s]['raw']['mean_tie'] - res[s]['train_prior_tie']:+.3f} "
                                            f"(true minus prior {res[s]['true_tie'] - res[s]['train_prior_tie']:+.3f})"
                                            for s in TIE_SETS) +
        ". Where the two signs differ, or the first is near zero while the second is not, the predictions carry "
        "no usable signal of the set's tie rate, and no reweighting of them can find it."])


def cv_section(res: dict, default: str) -> str:
    rows = []
    for s in TIE_SETS:
        r = res[s]
        d = r["plus_minus_alone"]
        rows.append([NAMES[s], r["rows"], r["others"], f"{r['prior']['fold_mean']:.4f} ± {r['prior']['fold_sd']:.4f}",
                     f"{r['alone']['fold_mean']:.4f} ± {r['alone']['fold_sd']:.4f}",
                     f"{r['plus']['fold_mean']:.4f} ± {r['plus']['fold_sd']:.4f}",
                     f"{d['mean']:+.4f} ({d['folds_better']}/5 folds better)",
                     f"{r['prior']['fold_mean'] - r['alone']['fold_mean']:+.4f} / {r['prior']['fold_mean'] - r['plus']['fold_mean']:+.4f}",
                     f"{r['seconds']:.0f} s"])
    return "\n".join([
        "### One set alone vs that set plus every other set", "",
        f"Default config ({default}). Each tie-bearing set's own 5 grouped folds (by prompt, stratified, seed 0); "
        "`alone` trains on its 4 training folds, `plus others` on the same folds plus every other shared set (pairs "
        "shared with the set dropped, as above); both predict the same test fold. Mean ± sample sd of the 5 per-fold "
        "log losses; `plus - alone` is the mean per-fold difference (negative: more data helped).", "",
        table(["set", "rows", "other rows", "prior", "alone", "plus others", "plus - alone", "prior - model (alone / plus)",
               "time"], rows)])


def targets_section(transfer: dict | None, cv: dict | None) -> str:
    def names(sets) -> str:
        return ", ".join(NAMES[s] for s in sets) or "none"

    def say(ok: bool, sets, total: int | None = None) -> str:
        return ("met" if ok else "missed") + f" ({names(sets)}{f' of {total}' if total and sets else ''})"

    lines = ["### The issue's targets", ""]
    if transfer:
        def where(key, test):
            return [s for s in TIE_SETS if test(transfer[s][key]["logloss"], transfer[s])]

        beat = where("em", lambda ll, r: ll < 1.0986)
        near = where("em", lambda ll, r: ll <= r["oracle_prior"]["logloss"] + 0.02)
        better = where("em", lambda ll, r: ll < r["oracle_prior"]["logloss"])
        est = [s for s in TIE_SETS if abs(transfer[s]["em_tie"] - transfer[s]["true_tie"]) <= 0.05]
        lines += [
            f"- LOSO with `--adapt-prior` beats uniform on every held-out set: {say(len(beat) == 4, beat, 4)}; within "
            f"0.02 of the oracle prior or better on every set: {say(len(near) == 4, near, 4)}; stretch, beats the "
            f"oracle on two or more: {say(len(better) >= 2, better)}.",
            f"- For comparison, without adaptation the model beats uniform on {names(where('raw', lambda ll, r: ll < 1.0986))} "
            f"and comes within 0.02 of the oracle on {names(where('raw', lambda ll, r: ll <= r['oracle_prior']['logloss'] + 0.02))}; "
            f"with `--tie-rate` at the true rate (labels needed for the rate) it beats uniform on "
            f"{names(where('tie_rate', lambda ll, r: ll < 1.0986))}, comes within 0.02 of the oracle on "
            f"{names(where('tie_rate', lambda ll, r: ll <= r['oracle_prior']['logloss'] + 0.02))} and beats it on "
            f"{names(where('tie_rate', lambda ll, r: ll < r['oracle_prior']['logloss']))}.",
            f"- EM tie-rate estimate within 0.05 of the truth on every set: {say(len(est) == 4, est, 4)}."]
    if cv:
        sd_ok = [s for s in TIE_SETS if cv[s]["plus"]["fold_mean"] - cv[s]["alone"]["fold_mean"] <= cv[s]["alone"]["fold_sd"]]
        helped = [s for s in TIE_SETS if cv[s]["plus"]["fold_mean"] < cv[s]["alone"]["fold_mean"]]
        gain_plus = [s for s in TIE_SETS if cv[s]["prior"]["fold_mean"] - cv[s]["plus"]["fold_mean"] >= 0.03]
        gain_alone = [s for s in TIE_SETS if cv[s]["prior"]["fold_mean"] - cv[s]["alone"]["fold_mean"] >= 0.03]
        lines += [
            f"- Plus others never worse than alone by more than one fold sd: {say(len(sd_ok) == 4, sd_ok, 4)}; better "
            f"on two or more: {say(len(helped) >= 2, helped)}.",
            f"- Default-model CV beats each set's prior by 0.03 or more, trained on the set plus every other: "
            f"{say(len(gain_plus) == 4, gain_plus, 4)}; trained on the set alone: {say(len(gain_alone) == 4, gain_alone, 4)}."]
    return "\n".join(lines)


def render(raw: dict) -> str:
    """The block, from the raw results of a run (what --json writes; --render reads it back)."""
    parts = []
    if "candidates" in raw:
        parts.append(candidates_section(raw["candidates"], raw["default_label"]))
    if "transfer" in raw:
        parts.append(transfer_section(raw["transfer"], raw["default"]))
    if "cv" in raw:
        parts.append(cv_section(raw["cv"], raw["default"]))
    parts.append(targets_section(raw.get("transfer"), raw.get("cv")))
    sizes = ", ".join(f"{NAMES.get(s, s)} {n}" for s, n in raw["sets"].items())
    head = "\n".join([
        "## Transfer between sources, source-aware training, prior adaptation", "",
        f"Measured {raw['finished']} UTC by `{raw['command']}` ({raw['runtime_s'] / 60:.0f} min in all). "
        f"Machine: {raw['machine']}; LightGBM {raw['n_jobs']} thread(s), OMP_WAIT_POLICY={raw['omp_wait_policy']}; "
        f"1-minute load average during the run {raw['load']} (shared with other developers' jobs). Log loss on hard "
        "labels (annotator majority; a split vote is a tie), lower is better; uniform scores 1.0986.", "",
        f"Data: every shared set with texts ({sizes} rows); battle logs (no texts) and the hand-written "
        "`arena-format/quirks.csv` are left out. Model: `features` with default hyper-parameters."])
    return "\n\n".join([head] + parts)


def measure(args, command: str) -> dict:
    sampler = LoadSampler().start()
    started = time.time()
    sets = load(args.data)
    log("sets: " + ", ".join(f"{s} {len(r)}" for s, r in sets.items()))
    default_cfg = config(args.n_jobs)
    raw: dict = {"sets": {s: len(r) for s, r in sets.items()}, "n_jobs": args.n_jobs, "command": command,
                 "default": "source_weighting {}, source_columns {}, source_trees {}".format(*settings(default_cfg)),
                 "default_label": label(settings(default_cfg))}
    if "candidates" in args.sections:
        raw["candidates"] = {}
        for source in CANDIDATES:
            log(f"candidate {label(source)}")
            start = time.perf_counter()
            cfg = config(args.n_jobs, source)
            raw["candidates"][label(source)] = {"loso": loso(sets, cfg), "cv": pooled_cv(sets, cfg),
                                                "seconds": time.perf_counter() - start}
    if "transfer" in args.sections:
        log(f"leave one source out, {raw['default']}")
        done = raw.get("candidates", {}).get(raw["default_label"])
        raw["transfer"] = done["loso"] if done else loso(sets, default_cfg)  # the same fits: not run twice
    if "cv" in args.sections:
        log(f"each set alone vs plus others, {raw['default']}")
        raw["cv"] = own_folds_cv(sets, default_cfg)
    sampler.stop()
    return raw | {"runtime_s": time.time() - started, "load_samples": sampler.samples, "load": sampler.summary(),
                  "finished": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}", "machine": machine_summary(),
                  "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--n-jobs", type=int, default=1, help="LightGBM threads (the dev machine is shared)")
    ap.add_argument("--json", type=Path, help="also write the raw results here (e.g. under /tmp)")
    ap.add_argument("--render", type=Path, help="measure nothing: write the block from the raw results of an earlier "
                    "run (its --json file)")
    args = ap.parse_args(argv)
    if args.render:
        raw = json.loads(args.render.read_text(encoding="utf-8"))
    else:
        command = "HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_transfer.py" + (
            "" if argv is None and len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:] if argv is None else argv))
        raw = measure(args, command)
        if args.json:
            args.json.write_text(json.dumps(raw, indent=1, default=float), encoding="utf-8")
    replace_block(args.output, "transfer", render(raw))
    log(f"wrote the transfer block of {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
