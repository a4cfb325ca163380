#!/usr/bin/env python
"""CPU-model benchmarks on the shared real data; writes the `cpu-models` block of BENCHMARKS.md.

Measures, on the machine it runs on:
  1. grouped 5-fold CV (folds seed 0) of uniform, prior, `features` and `embed` on each public set separately;
  2. transfer: train on hh-rlhf + LLMBar, test on PandaLM (which has ties; the training sets have none);
  3. fit time and prediction throughput (pairs/s, swap TTA on) of prior, features and embed, the latter with a
     cold and a warm embedding cache.

Only the block between `<!-- cpu-models:start -->` and `<!-- cpu-models:end -->` is (re)written, so other
scripts can keep their own sections in the same file. Run from anywhere:

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/benchmark.py            # everything (20-40 min on 2 cores)
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/benchmark.py --sets llmbar --models prior,features --sections cv
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# libgomp's default spin-waiting makes LightGBM (and torch) threads 10x+ slower when other processes share the
# cores (measured here: 0.19 s vs 0.018 s per boosting round with 2 threads and a load average of 6 on 2 cores);
# passive waiting costs nothing measurable on an idle machine. Must be set before lightgbm/torch load libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from benchblock import LoadSampler, cpu_name, has_block, ram_gib, replace_block  # scripts/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- cpu-models:start -->", "<!-- cpu-models:end -->"
SETS = {"hh-rlhf": "hh-rlhf", "pandalm": "PandaLM", "llmbar": "LLMBar"}  # folder under the data root -> display name
MODELS = ("prior", "features", "embed")
SECTIONS = ("cv", "transfer", "throughput")
TEMP_DIRS: list[str] = []  # folders this run created under /tmp (removed at the end unless --keep-cache)

HEADER = """# Benchmarks

Every figure below was measured by a script in `scripts/` on the machine named in its section, and each
section says the command that produced it. Regenerate the CPU-model sections with `make bench`, which runs
`HF_HUB_OFFLINE=1 .venv/bin/python scripts/benchmark.py` (50 minutes on the 2-core machine described below,
which other jobs were sharing; most of it is embedding hh-rlhf's ~25k texts; options: `--sets`, `--models`,
`--sections`, `--output`, `--json`). Each script rewrites only its own block between
`<!-- name:start -->` and `<!-- name:end -->` markers, so sections from other scripts (transformer
fine-tune, engine throughput, calibration) can be appended below and survive a rerun.

Data: `../shared/data` (see its README.md). Log loss is the mean multi-class log loss against the hard
labels (lower is better; uniform = ln 3 = 1.0986); accuracy is argmax agreement.

"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------------------
def model_config(family: str, cache_dir: str | None):
    from arenapref.config import EmbedConfig, FeaturesConfig, PriorConfig

    if family == "prior":
        return PriorConfig()
    if family == "features":
        return FeaturesConfig()
    return EmbedConfig(cache_dir=cache_dir)


def cache_size(cache_dir: str | Path) -> int:
    """Number of vectors stored on disk under an arenapref cache root (all encoders)."""
    n = 0
    for shard in Path(cache_dir).glob("embeddings/*/shard-*.npz"):
        try:
            with np.load(shard) as z:
                n += len(z["keys"])
        except (OSError, ValueError, KeyError):
            pass
    return n


def fmt(x: float, nd: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def table(headers: list[str], rows: list[list], left: int = 1) -> str:
    """Markdown table; the first `left` columns (and a trailing `notes` column) left-aligned, the rest right."""
    align = ["---" if i < left or h == "notes" else "---:" for i, h in enumerate(headers)]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------------------
def run_cv(sets: list[str], models: list[str], data_root: str, cache_dir: str) -> dict:
    """Per set: pooled and per-fold scores of uniform, prior and each requested model."""
    from arenapref.config import RunConfig
    from arenapref.cv import cross_validate
    from arenapref.data.io import read_pairs

    results = {}
    for name in sets:
        records, _ = read_pairs(f"{data_root}/{name}")
        labels = np.bincount([r.label for r in records], minlength=3)
        log(f"cv {name}: {len(records)} rows, labels A/B/tie = {labels.tolist()}")
        res = {"rows": len(records), "labels": labels, "models": {}, "seconds": {}, "cache": {}}
        families = [m for m in models if m != "prior"] or ["prior"]
        for family in families:
            before = cache_size(cache_dir) if family == "embed" else None
            t0 = time.perf_counter()
            cv = cross_validate(records, RunConfig(model=model_config(family, cache_dir)), show_progress=True)
            secs = time.perf_counter() - t0
            tab = cv.table
            folds = tab[tab["slice"].str.startswith("fold ")]
            pooled = tab[tab["slice"] == "pooled"].iloc[0]
            for m in cv.oof:
                if m in res["models"]:
                    continue  # uniform / prior: identical in every run (same folds)
                res["models"][m] = {
                    "logloss": float(pooled[f"{m} logloss"]), "acc": float(pooled[f"{m} acc"]),
                    "fold_logloss": folds[f"{m} logloss"].to_numpy(float),
                }
            res["seconds"][family] = secs
            if family == "embed":
                res["cache"]["embed"] = (before, cache_size(cache_dir))
            log(f"cv {name} {family}: {secs:.0f} s; pooled log loss {pooled[f'{family} logloss'] if family != 'prior' else pooled['prior logloss']:.4f}")
        results[name] = res
    return results


def cv_section(results: dict, models: list[str], cmd: str) -> str:
    lines = ["## CPU models: grouped 5-fold CV", ""]
    lines.append(
        "Each set on its own: `cross_validate(records, RunConfig(model=...))` with `records, _ = "
        "read_pairs('../shared/data/<set>')`, 5 folds grouped by prompt and stratified by label, folds seed 0, "
        "default hyper-parameters (swap augmentation and swap TTA on). Log loss and accuracy are pooled over all "
        "out-of-fold rows; `fold sd` is the sample standard deviation (ddof=1) of the 5 per-fold log losses; "
        "`vs prior` is prior log loss minus model log loss (positive = better than the prior) and `folds won` "
        "counts folds where the model's log loss is below the prior's on the same fold. `time` is the wall time "
        "of the whole `cross_validate` call (5 fits + predictions; for embed it includes embedding every text "
        "not yet in the cache). One row should also be reproducible with the CLI, e.g. "
        "`arenapref cv ../shared/data/llmbar --model features`."
    )
    lines.append("")
    order = ["uniform", "prior"] + [m for m in models if m != "prior"]
    rows = []
    for name, res in results.items():
        prior = res["models"].get("prior")
        for m in order:
            if m not in res["models"]:
                continue
            r = res["models"][m]
            fl = r["fold_logloss"]
            if m in ("uniform", "prior") or prior is None:
                delta, won = "", ""
            else:
                delta = f"{prior['logloss'] - r['logloss']:+.4f}"
                won = f"{int((fl < prior['fold_logloss']).sum())}/{len(fl)}"
            secs = res["seconds"].get(m, res["seconds"].get("prior") if m == "prior" and len(res["seconds"]) == 1 else None)
            rows.append([SETS[name], res["rows"] if m == "uniform" else "", m, fmt(r["logloss"]), fmt(fl.std(ddof=1)),
                         fmt(r["acc"], 3), delta, won, f"{secs:.0f} s" if secs is not None else ""])
    lines.append(table(["set", "rows", "model", "log loss", "fold sd", "accuracy", "vs prior", "folds won", "time"], rows, left=3))
    lines.append("")
    lines.append("Against the prior (absolute log-loss difference, prior minus model):")
    lines.append("")
    for name, res in results.items():
        prior = res["models"].get("prior")
        lab = res["labels"]
        bits = []
        for m in (x for x in models if x != "prior"):
            if m not in res["models"] or prior is None:
                continue
            r = res["models"][m]
            d = prior["logloss"] - r["logloss"]
            # "beats" only when the pooled gain is larger than the fold-to-fold noise of the difference
            diff_sd = float(np.std(prior["fold_logloss"] - r["fold_logloss"], ddof=1))
            won = int((r["fold_logloss"] < prior["fold_logloss"]).sum())
            if d > 0:
                verdict = f"**{m}** beats the prior by {d:.4f} ({won}/5 folds; sd of the per-fold difference {diff_sd:.4f})"
                if d < 2 * diff_sd / np.sqrt(len(r["fold_logloss"])) or won < 4:
                    verdict += " - not a clear win (gain under 2 standard errors of the per-fold difference, or fewer than 4/5 folds)"
            else:
                verdict = f"**{m} does NOT beat the prior**: worse by {-d:.4f} ({won}/5 folds better)"
            bits.append(verdict)
        tie = lab[2] / lab.sum()
        extra = ""
        if "embed" in res["cache"]:
            b, a = res["cache"]["embed"]
            extra = f" Embed cache held {b} vectors before this set's embed CV and {a} after ({a - b} texts embedded)."
        lines.append(f"- {SETS[name]} ({res['rows']} rows, tie rate {tie:.3f}): " + ("; ".join(bits) or "prior only") + "." + extra)
    lines += ["", f"Command: `{cmd}`", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
def run_transfer(models: list[str], data_root: str, cache_dir: str) -> dict:
    from arenapref.cv import score_targets
    from arenapref.data.io import read_pairs
    from arenapref.metrics import accuracy, log_loss, uniform
    from arenapref.models import build_model

    train = read_pairs(f"{data_root}/hh-rlhf")[0] + read_pairs(f"{data_root}/llmbar")[0]
    test = read_pairs(f"{data_root}/pandalm")[0]
    y = score_targets(test)
    tie = y[:, 2] == 1
    out = {"train_rows": len(train), "test_rows": len(test), "ties": int(tie.sum()),
           "train_ties": int(sum(r.label == 2 for r in train)), "rows": {}}
    preds = {"uniform": (uniform(len(test)), None)}
    for family in ["prior"] + [m for m in models if m != "prior"]:
        log(f"transfer: fitting {family} on hh-rlhf + llmbar ({len(train)} rows)")
        t0 = time.perf_counter()
        model = build_model(model_config(family, cache_dir)).fit(train)
        fit_s = time.perf_counter() - t0
        preds[family] = (model.predict_proba(test), fit_s)
    t = tie.mean()
    for m, (p, fit_s) in preds.items():
        # "oracle" tie rate: P(tie) replaced by PandaLM's own tie rate, A/B rescaled; uses the test labels,
        # so it is a diagnostic of what the missing ties cost, not a legitimate score
        ab = p[:, :2] / p[:, :2].sum(axis=1, keepdims=True)
        oracle = np.column_stack([ab * (1 - t), np.full(len(p), t)])
        out["rows"][m] = {
            "fit_s": fit_s, "logloss": log_loss(y, p), "acc": accuracy(y, p),
            "logloss_nontie": log_loss(y[~tie], p[~tie]), "acc_nontie": accuracy(y[~tie], p[~tie]),
            "logloss_tie": log_loss(y[tie], p[tie]), "mean_ptie": float(p[:, 2].mean()),
            "tie_share_of_loss": float(log_loss(y[tie], p[tie]) * tie.sum() / (log_loss(y, p) * len(y))),
            "logloss_oracle_tie": log_loss(y, oracle),
        }
        r = out["rows"][m]
        log(f"transfer {m}: log loss {r['logloss']:.4f} (non-tie {r['logloss_nontie']:.4f}), acc {r['acc']:.3f}")
    return out


def transfer_section(res: dict, cmd: str) -> str:
    n, k = res["test_rows"], res["ties"]
    lines = ["## Transfer", "",
             f"Train on hh-rlhf + LLMBar ({res['train_rows']} rows, {res['train_ties']} ties), test on all of PandaLM "
             f"({n} rows; {k} = {k / n:.1%} are ties by annotator majority, a three-way split counted as a tie). "
             "`build_model(config).fit(train).predict_proba(test)`, default configs, swap TTA on. The embed model "
             "used the benchmark's embedding cache (warm if the CV section ran first). `non-tie` columns score the "
             f"{n - k} PandaLM rows whose label is A or B; `tie rows` is the mean log loss on the {k} tie rows; "
             "`share` is the fraction of the total log loss that comes from the tie rows.", ""]
    rows = []
    for m, r in res["rows"].items():
        rows.append([m, fmt(r["logloss"]), fmt(r["acc"], 3), fmt(r["logloss_nontie"]), fmt(r["acc_nontie"], 3),
                     fmt(r["logloss_tie"], 3), f"{r['tie_share_of_loss']:.0%}", fmt(r["mean_ptie"]),
                     secs(r["fit_s"]) if r["fit_s"] is not None else ""])
    lines.append(table(["model", "log loss", "accuracy", "log loss non-tie", "acc non-tie", "log loss tie rows",
                        "share", "mean P(tie)", "fit time"], rows))
    lines.append("")
    prior = res["rows"].get("prior")
    notes = []
    if prior:
        notes.append(
            f"Trained on tie-free data, every model puts almost no mass on a tie (the prior's P(tie) is its 1e-3 floor "
            f"renormalised, {prior['mean_ptie']:.4f}), so each of the {k} tie rows costs about "
            f"{prior['logloss_tie']:.1f} nats: the prior scores {prior['logloss']:.4f} on all of PandaLM, worse than "
            f"uniform (1.0986), but {prior['logloss_nontie']:.4f} on the non-tie rows (ln 2 = 0.6931 there). "
            "Accuracy can never count a tie row as right, so it is capped at "
            f"{1 - k / n:.3f}.")
        for m in ("features", "embed"):
            if m in res["rows"]:
                r = res["rows"][m]
                d_all, d_nt = prior["logloss"] - r["logloss"], prior["logloss_nontie"] - r["logloss_nontie"]
                verdict = ("beats the prior on all rows and on non-tie rows" if d_all > 0 and d_nt > 0 else
                           "does NOT beat the prior on all rows (the missing ties), but does on non-tie rows" if d_nt > 0 else
                           "does NOT beat the prior on non-tie rows either" if d_all <= 0 else
                           "beats the prior on all rows but NOT on non-tie rows")
                notes.append(f"{m} vs prior: {d_all:+.4f} on all rows, {d_nt:+.4f} on non-tie rows "
                             f"(positive = better than the prior): {m} {verdict}.")
        oracle = ", ".join(f"{m} {fmt(r['logloss_oracle_tie'])}" for m, r in res["rows"].items() if m != "uniform")
        notes.append("Diagnostic only (uses PandaLM's own labels, so not a legitimate score): with P(tie) replaced by "
                     f"PandaLM's tie rate {k / n:.3f} and P(A), P(B) rescaled to fill the rest, the log loss on all rows "
                     f"would be {oracle}. Calibrating to the target tie rate is the missing step.")
    lines += [f"- {x}" for x in notes]
    lines += ["", f"Command: `{cmd}`", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
def run_throughput(models: list[str], data_root: str, set_name: str, n_test: int, cache_dir: str, repeats: int,
                   tmp_root: str) -> dict:
    from arenapref.data.io import read_pairs
    from arenapref.models import build_model

    records = read_pairs(f"{data_root}/{set_name}")[0]
    # hold out whole prompts: n_test rows whose prompt appears in no training row
    rng = np.random.default_rng(0)
    groups = {}
    for i, r in enumerate(records):
        groups.setdefault(r.prompt_key, []).append(i)
    test_idx = []
    for g in rng.permutation(sorted(groups)):
        if len(test_idx) >= n_test:
            break
        test_idx += groups[g]
    test_idx = set(test_idx[:n_test]) if len(test_idx) >= n_test else set(test_idx)
    test_groups = {records[i].prompt_key for i in test_idx}
    train = [r for i, r in enumerate(records) if i not in test_idx and r.prompt_key not in test_groups]
    test = [records[i] for i in sorted(test_idx)]
    log(f"throughput: train {len(train)} rows of {set_name}, predict {len(test)} held-out rows")
    out = {"set": set_name, "train_rows": len(train), "test_rows": len(test), "rows": []}

    def timed_predict(model):
        t0 = time.perf_counter()
        p = model.predict_proba(test)
        return time.perf_counter() - t0, p

    for family in ["prior"] + [m for m in models if m != "prior"]:
        before = cache_size(cache_dir) if family == "embed" else None
        t0 = time.perf_counter()
        model = build_model(model_config(family, cache_dir)).fit(train)
        fit_s = time.perf_counter() - t0
        fit_note = ""
        if family == "embed":
            new = cache_size(cache_dir) - before
            fit_note = ("warm cache (all training texts already embedded)" if new == 0 else
                        f"cache partly cold: {new} texts embedded during fit")
        times = [timed_predict(model)[0] for _ in range(repeats)]
        t = float(np.median(times))
        label = f"{family}" + (" (warm cache, in memory)" if family == "embed" else "")
        out["rows"].append({"model": label, "fit_s": fit_s, "fit_note": fit_note, "predict_s": t,
                            "pairs_s": len(test) / t, "how": f"median of {repeats} calls"})
        log(f"throughput {family}: fit {fit_s:.1f} s, predict {t:.2f} s = {len(test) / t:.0f} pairs/s")
        if family != "embed":
            continue
        # cold cache: the same fitted model, rebuilt from its saved state with cache_dir pointing at a fresh,
        # empty folder (what `arenapref predict` does in a new process on unseen data): encoder load + embedding
        saved = Path(tempfile.mkdtemp(prefix="arenapref-bench-model-", dir=tmp_root))
        model.save(saved)
        cold_dir = tempfile.mkdtemp(prefix="arenapref-bench-cold-", dir=tmp_root)
        TEMP_DIRS.append(cold_dir)
        cold = build_model(model.config.model_copy(update={"cache_dir": cold_dir}))
        cold._load_state(saved)  # what load_model does, with the cache folder overridden
        t_cold, p_cold = timed_predict(cold)
        embedded = cache_size(cold_dir)
        out["rows"].append({"model": "embed (cold cache, fresh model: encoder load + embedding)", "fit_s": None,
                            "predict_s": t_cold, "pairs_s": len(test) / t_cold, "how": f"1 call; {embedded} distinct texts embedded",
                            "fit_note": ""})
        out["embed_texts_per_s"] = embedded / t_cold
        log(f"throughput embed cold: {t_cold:.1f} s = {len(test) / t_cold:.1f} pairs/s ({embedded} texts embedded)")
        t_warm_mem = float(np.median([timed_predict(cold)[0] for _ in range(repeats)]))
        out["rows"].append({"model": "embed (same model, cache now warm in memory)", "fit_s": None, "predict_s": t_warm_mem,
                            "pairs_s": len(test) / t_warm_mem, "how": f"median of {repeats} calls", "fit_note": ""})
        # warm disk cache, freshly loaded model: load_model + first predict (encoder load + reading the shards)
        warm = build_model(model.config.model_copy(update={"cache_dir": cold_dir}))
        warm._load_state(saved)
        t_warm_disk, p_warm = timed_predict(warm)
        out["rows"].append({"model": "embed (fresh model, warm disk cache: encoder load + reading the cache)", "fit_s": None,
                            "predict_s": t_warm_disk, "pairs_s": len(test) / t_warm_disk, "how": "1 call", "fit_note": ""})
        out["cold_vs_disk_maxdiff"] = float(np.abs(p_cold - p_warm).max())
        log(f"throughput embed warm disk: {t_warm_disk:.1f} s; max |p_cold - p_disk| = {out['cold_vs_disk_maxdiff']:.2e}")
        shutil.rmtree(saved, ignore_errors=True)
    return out


def secs(t: float) -> str:
    return f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s" if t < 100 else f"{t:.0f} s"


def throughput_section(res: dict, cmd: str) -> str:
    lines = ["## Prediction throughput", "",
             f"Models fitted on {res['train_rows']} rows of {res['set']}; `predict_proba` (swap TTA on, i.e. two model "
             f"passes per call) on {res['test_rows']} held-out {res['set']} rows whose prompts are not in the training "
             "rows, all in one call. LightGBM and torch use every core (`n_jobs=0`, torch default threads). Throughput "
             "= rows / wall time of the call. The embed fit used the benchmark's embedding cache; the cold-cache row "
             "rebuilt the fitted model from its saved state with `EmbedConfig.cache_dir` pointing at a fresh empty "
             "folder under /tmp, so it includes loading the sentence encoder and embedding every distinct prompt and "
             "response of the test rows.", ""]
    rows = []
    for r in res["rows"]:
        rows.append([r["model"], secs(r["fit_s"]) if r["fit_s"] is not None else "",
                     secs(r["predict_s"]), f"{r['pairs_s']:,.0f}" if r["pairs_s"] >= 100 else f"{r['pairs_s']:.1f}",
                     r["how"] + (f"; fit: {r['fit_note']}" if r["fit_note"] else "")])
    lines.append(table(["model", "fit time", "predict time", "pairs/s", "notes"], rows))
    lines.append("")
    if "embed_texts_per_s" in res:
        lines.append(f"- Sentence encoder (all-MiniLM-L6-v2, max_seq_length 256, batch 64) on this CPU: "
                     f"{res['embed_texts_per_s']:.1f} texts/s including encoder load; each new pair needs up to 3 texts "
                     "(prompt, A, B), so a fit on uncached data adds roughly 3 x rows / that rate to the fit time above.")
    if "cold_vs_disk_maxdiff" in res:
        lines.append(f"- Same fitted model, same rows: max |P(cold cache) - P(warm disk cache)| = {res['cold_vs_disk_maxdiff']:.2e} "
                     "(0 means a vector is the same whether just computed or read back from the float16 cache).")
    lines += ["", f"Command: `{cmd}`", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
def machine_section(cmd: str, started: float, finished: float, load: str) -> str:
    def version(mod):
        try:
            return __import__(mod).__version__
        except Exception:
            return "not installed"

    cpu = cpu_name()
    gib = ram_gib()
    mem = f"{gib:.1f} GiB" if gib else "unknown"
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())
    try:
        import torch
        threads = str(torch.get_num_threads())
    except Exception:
        threads = "n/a"
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout.strip()
        commit += " (with uncommitted changes under src/)" if dirty else ""
    except OSError:
        commit = "unknown"
    rows = [
        ["date", dt.datetime.fromtimestamp(started).astimezone().strftime("%Y-%m-%d %H:%M %Z")],
        ["total runtime", f"{(finished - started) / 60:.1f} min"],
        ["CPU", f"{cpu}; `nproc` = {nproc}; torch threads = {threads}"],
        ["RAM", mem], ["GPU", "none used (CPU only)"],
        ["threads", f"LightGBM `n_jobs=0` (= all {nproc} cores), torch {threads}; OMP_WAIT_POLICY="
                    f"{os.environ.get('OMP_WAIT_POLICY', 'unset')} (set by the script unless given)"],
        ["1-min load average during the run", f"{load} (with {nproc} cores, above {nproc} means other processes competed for the CPU)"],
        ["OS", f"{platform.system()} {platform.release()}"],
        ["Python", platform.python_version()],
        ["torch", version("torch")], ["lightgbm", version("lightgbm")], ["scikit-learn", version("sklearn")],
        ["sentence-transformers", version("sentence_transformers")], ["numpy", version("numpy")],
        ["arenapref", f"{version('arenapref')} @ git {commit}"],
    ]
    return "\n".join(["## Machine", "", "All figures in this block were measured on:", "",
                      table(["", ""], rows, left=2), "", f"Command: `{cmd}`", ""])


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def write_block(path: Path, block: str) -> None:
    if has_block(path, "cpu-models"):
        replace_block(path, "cpu-models", block)
        return
    block = f"{START}\n{block.rstrip()}\n{END}"
    if path.exists():
        text = path.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text, count=1)
        else:
            # first run into a file other scripts started: our header (if missing) and block go first
            if "make bench" not in text:
                text = re.sub(r"\A# Benchmarks[^\n]*\n+", "", text)
                text = HEADER + block + "\n\n" + text.lstrip()
            else:
                at = text.find("<!-- ")
                text = (text[:at] + block + "\n\n" + text[at:]) if at >= 0 else text.rstrip() + "\n\n" + block + "\n"
    else:
        text = HEADER + block + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {','.join(SETS)} (CV section)")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {','.join(MODELS)}")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {','.join(SECTIONS)}")
    ap.add_argument("--output", default=str(REPO / "BENCHMARKS.md"), help="markdown file; only its cpu-models block is replaced")
    ap.add_argument("--data", default="../shared/data", help="data root, relative to the repo root (default ../shared/data)")
    ap.add_argument("--throughput-set", default="hh-rlhf", choices=list(SETS))
    ap.add_argument("--throughput-rows", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3, help="timed predict calls per warm measurement (median)")
    ap.add_argument("--cache-dir", default=None,
                    help="embedding cache root for CV/transfer/fit (default: a fresh folder under /tmp, removed at the end)")
    ap.add_argument("--keep-cache", action="store_true", help="keep the temporary cache folders")
    ap.add_argument("--json", default=None, help="also write the raw results (unrounded) to this JSON file")
    args = ap.parse_args(argv)

    def parse(value, allowed, what):
        items = [x.strip() for x in value.split(",") if x.strip()]
        bad = [x for x in items if x not in allowed]
        if bad:
            ap.error(f"unknown {what} {bad}; choose from {', '.join(allowed)}")
        return items

    sets, models, sections = parse(args.sets, SETS, "set"), parse(args.models, MODELS, "model"), parse(args.sections, SECTIONS, "section")
    output = Path(args.output).resolve()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python scripts/benchmark.py" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    os.chdir(REPO)  # so that the data root '../shared/data' means what it says
    if not Path(args.data).is_dir():
        ap.error(f"data root {args.data} not found (relative to {REPO})")

    tmp_root = "/tmp"
    own_cache = args.cache_dir is None
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="arenapref-bench-cache-", dir=tmp_root)
    log(f"embedding cache for CV/transfer/fit: {cache_dir} ({cache_size(cache_dir)} vectors at start)")
    started = time.time()
    sampler = LoadSampler().start()
    parts: list[str] = []
    raw: dict = {"command": cmd}
    cache_note = (f"Embedding cache: `{cache_dir}`, " + ("created empty by this run, so the first embed run on each set "
                  "embedded that set's texts (cold) and later runs reused them (warm)." if own_cache else
                  f"given with --cache-dir; it held {cache_size(cache_dir)} vectors at the start of the run."))
    try:
        if "cv" in sections and sets:
            raw["cv"] = run_cv(sets, models, args.data, cache_dir)
            parts.append(cv_section(raw["cv"], models, cmd))
        if "transfer" in sections:
            raw["transfer"] = run_transfer(models, args.data, cache_dir)
            parts.append(transfer_section(raw["transfer"], cmd))
        if "throughput" in sections:
            raw["throughput"] = run_throughput(models, args.data, args.throughput_set, args.throughput_rows,
                                               cache_dir, args.repeats, tmp_root)
            parts.append(throughput_section(raw["throughput"], cmd))
    finally:
        finished = time.time()
        sampler.stop()
        if not args.keep_cache:
            for d in TEMP_DIRS + ([cache_dir] if own_cache else []):
                shutil.rmtree(d, ignore_errors=True)
    generated = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    block = "\n".join([f"_Generated by `scripts/benchmark.py` on {generated}; {cache_note[0].lower() + cache_note[1:]}_", ""] + parts +
                      [machine_section(cmd, started, finished, sampler.summary())])
    write_block(output, block)
    if args.json:
        raw.update(runtime_s=finished - started, load_average=sampler.samples)
        Path(args.json).write_text(json.dumps(raw, indent=1, default=_jsonable), encoding="utf-8")
    log(f"wrote {output} in {(finished - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
