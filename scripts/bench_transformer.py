"""A real fine-tune of all-MiniLM-L6-v2 as a 3-way cross-encoder on PandaLM + LLMBar, one grouped fold; writes the
`transformer` block of BENCHMARKS.md.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_transformer.py [--steps 120] [--batch-size 8] [--max-length 256]

Held-out log loss of the fine-tuned encoder (swap TTA) beside uniform, prior, `features` and `embed` trained on the
same training rows of the same fold; the loss curve (train soft cross-entropy, eval log loss on part of the held-out
fold every --eval-steps); training throughput in pairs/s counted over optimizer steps only (each pair is trained
in both orders, so rows/s is twice that); prediction throughput with swap TTA. Only the block between
`<!-- transformer:start -->` and `<!-- transformer:end -->` is replaced.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from transformers import TrainerCallback  # noqa: E402

from arenapref.config import EmbedConfig, FeaturesConfig, PriorConfig, TransformerConfig  # noqa: E402
from arenapref.cv import score_targets  # noqa: E402
from arenapref.data.folds import GroupedFolds  # noqa: E402
from arenapref.data.io import read_pairs  # noqa: E402
from arenapref.metrics import accuracy, log_loss, uniform  # noqa: E402
from arenapref.models import build_model  # noqa: E402
from benchblock import machine_summary, replace_block  # scripts/ is on sys.path when a script runs



def machine() -> str:
    import torch

    return f"{machine_summary()}, torch {torch.__version__} ({torch.get_num_threads()} torch threads)"


def load() -> float:
    return os.getloadavg()[0]


class StepTimer(TrainerCallback):
    """Wall time inside optimizer steps only, so evals and checkpoints do not count against throughput."""

    def __init__(self):
        self.seconds, self.steps, self._t = 0.0, 0, None

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self._t
        self.steps += 1


def write_block(path: Path, body: str) -> None:
    replace_block(path, "transformer", body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=8, help="rows per step, swaps included")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--learning-rate", type=float, default=8e-5)
    ap.add_argument("--eval-steps", type=int, default=30)
    ap.add_argument("--eval-rows", type=int, default=64, help="held-out rows scored at each eval (the curve)")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="smoke test: keep only this many train and test rows")
    args = ap.parse_args()
    command = "HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_transformer.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    load_start, start = load(), time.perf_counter()

    records = read_pairs([args.data / "pandalm", args.data / "llmbar"])[0]
    fold_ids = GroupedFolds(5, 0).fold_ids(records)
    train = [r for r, f in zip(records, fold_ids) if f != args.fold]
    test = [r for r, f in zip(records, fold_ids) if f == args.fold]
    if args.limit:
        train, test = train[:args.limit], test[:args.limit]
    y = score_targets(test)
    rng = np.random.default_rng(0)
    curve_rows = [test[i] for i in sorted(rng.choice(len(test), size=min(args.eval_rows, len(test)), replace=False))]

    results, timings = {"uniform": uniform(len(test))}, {}
    for name, config in [("prior", PriorConfig()), ("features", FeaturesConfig(n_jobs=1)), ("embed", EmbedConfig(n_jobs=1))]:
        t = time.perf_counter()
        results[name] = build_model(config).fit(train).predict_proba(test)
        timings[name] = time.perf_counter() - t
        print(f"{name}: {log_loss(y, results[name]):.4f} ({timings[name]:.0f} s)", flush=True)

    config = TransformerConfig(
        finetune="full", max_length=args.max_length, max_prompt_tokens=64, batch_size=args.batch_size,
        max_steps=args.steps, learning_rate=args.learning_rate, warmup_ratio=0.1, scheduler="cosine",
        eval_steps=args.eval_steps, logging_steps=10, save_steps=10_000, predict_batch_size=32,
        checkpoint_dir=tempfile.mkdtemp(prefix="bench-transformer-"),
    )
    timer = StepTimer()
    t = time.perf_counter()
    model = build_model(config).fit(train, progress=False, eval_records=curve_rows, callbacks=[timer])
    fit_seconds = time.perf_counter() - t
    t = time.perf_counter()
    results["transformer"] = model.predict_proba(test)
    predict_seconds = time.perf_counter() - t
    one_order = model.predict_proba(test, swap_tta=False)
    report = model.train_report_
    rows_per_s = timer.steps * config.batch_size / timer.seconds
    print(f"transformer: {log_loss(y, results['transformer']):.4f}; {rows_per_s / 2:.2f} pairs/s", flush=True)

    lines = [
        "## Transformer cross-encoder (all-MiniLM-L6-v2, full fine-tune, CPU)",
        "",
        f"Command: `{command}` ({time.perf_counter() - start:.0f} s in all). Machine: {machine()}; shared with other "
        f"developers' runs (1-minute load average {load_start:.1f} at the start, {load():.1f} at the end), so times are "
        "pessimistic. Data: PandaLM + LLMBar, grouped 5-fold split (seed 0), fold "
        f"{args.fold} held out: {len(train)} training pairs, {len(test)} held-out pairs. Log loss on hard labels; "
        "lower is better; uniform scores 1.0986.",
        "",
        f"Transformer settings: max_length {config.max_length} (prompt turns capped at {config.max_prompt_tokens} tokens), "
        f"full swap, batch {config.batch_size} rows ({config.batch_size // 2} pairs + swaps), {report['global_step']} "
        f"optimizer steps ({report['global_step'] * config.batch_size // 2} pairs seen, "
        f"{report['global_step'] * config.batch_size / 2 / len(train):.2f} epochs), AdamW lr {config.learning_rate:g}, "
        f"10% warm-up + cosine, fp32. Training inputs: mean {report['tokens_per_row_mean']:.0f} tokens per row; "
        f"{report['truncation']['share_rows_truncated']:.1%} of pairs cut, {report['truncation']['share_tokens_cut']:.1%} "
        "of text tokens cut.",
        "",
        "| model (same training rows) | held-out log loss | accuracy | fit + predict s |",
        "|---|---|---|---|",
    ]
    for name, p in results.items():
        secs = {"transformer": fit_seconds + predict_seconds}.get(name, timings.get(name))
        label = {"transformer": "transformer (swap TTA)"}.get(name, name)
        lines.append(f"| {label} | {log_loss(y, p):.4f} | {accuracy(y, p):.4f} | {'' if secs is None else f'{secs:.0f}'} |")
    lines.append(f"| transformer (one order, no TTA) | {log_loss(y, one_order):.4f} | {accuracy(y, one_order):.4f} | |")
    gap = {k: log_loss(y, results["transformer"]) - log_loss(y, results[k]) for k in ("prior", "features")}
    lines += ["", f"Transformer minus prior: {gap['prior']:+.4f}; minus features: {gap['features']:+.4f} (negative is "
              f"better). The cross-encoder saw {report['global_step'] * config.batch_size // 2} of {len(train)} training "
              "pairs in this CPU budget; this measures the pipeline and its speed, not what the model reaches after "
              "whole epochs on a GPU."]
    lines += [
        "",
        f"Throughput: training {rows_per_s / 2:.2f} pairs/s ({rows_per_s:.2f} rows/s, both orders of each pair; "
        f"{timer.seconds:.0f} s inside {timer.steps} optimizer steps, {fit_seconds:.0f} s for the whole fit with "
        f"model loading, tokenization and evals); prediction with swap TTA {len(test) / predict_seconds:.1f} pairs/s "
        f"({len(test)} pairs in {predict_seconds:.0f} s).",
        "",
        f"Loss curve (train: soft cross-entropy, mean over the last {config.logging_steps} steps; eval: log loss on "
        f"{len(curve_rows)} held-out pairs, one order):",
        "",
        "| step | train loss | eval log loss |",
        "|---|---|---|",
    ]
    by_step: dict[int, dict] = {}
    for h in report["log_history"]:
        if "step" in h:
            by_step.setdefault(h["step"], {}).update(h)
    for step in sorted(by_step):
        h = by_step[step]
        if "loss" in h or "eval_log_loss" in h:
            train_loss = f"{h['loss']:.4f}" if "loss" in h else ""
            eval_loss = f"{h['eval_log_loss']:.4f}" if "eval_log_loss" in h else ""
            lines.append(f"| {step} | {train_loss} | {eval_loss} |")
    write_block(args.output, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
