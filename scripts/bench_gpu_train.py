"""Fine-tuning on a CUDA GPU at real size through arenapref's own training path (TransformerModel -> hf.fine_tune ->
the Hugging Face Trainer), and a real fine-tune of all-MiniLM-L6-v2 on every shared set. Writes the `gpu-train`
block of BENCHMARKS.md (issue 14).

    python3 scripts/bench_gpu_train.py --minilm-path .gpu-carry/minilm --data .gpu-carry/data      # on a GPU
    python3 scripts/bench_gpu_train.py --tiny --minilm-path DIR --data DIR --benchmarks /tmp/B.md   # CPU smoke run

1. A Gemma-2-9B-shaped 3-way classifier with random weights (a random-weight checkpoint, write_random_checkpoint:
   built in bf16 on the GPU at every load), LoRA r16 on all linear layers, 2,048-token rows, full swap (a pair and
   its swap in one step), 20 steps with gradient checkpointing off and on: step time, tokens/s, peak memory, MFU,
   finite loss and gradient norm. Then save, reload and predict a few rows (the round trip at real size), and
   `merge` once (when the time budget allows: it writes the 18 GB merged checkpoint). QLoRA when bitsandbytes
   imports.
2. all-MiniLM-L6-v2 (an fp16 copy, scripts/gpu/prepare_carry.py) fully fine-tuned for several epochs with full swap
   on the split of prepare_carry.py (the CPU benchmark's PandaLM + LLMBar fold plus fold 0 of every other shared
   set): held-out log loss and accuracy beside uniform, prior, and the `features` / `embed` figures computed on the
   CPU on the same rows (baselines.json; LightGBM is not on the GPU image).

FLOP counts: scripts/gpubench.py. Runs under a time budget (--budget-s): a phase that would not fit is skipped and
the block says so; SIGTERM stops the run and still writes what was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "scripts" / "gpu"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gpubench as gb  # noqa: E402
from benchblock import replace_block  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from arenapref.config import PriorConfig, TransformerConfig  # noqa: E402
from arenapref.cv import score_targets  # noqa: E402
from arenapref.data.record import PairRecord  # noqa: E402
from arenapref.metrics import accuracy, log_loss, uniform  # noqa: E402
from arenapref.models import build_model, load_model  # noqa: E402

BLOCK = "gpu-train"
SHAPE = "gemma2-9b"


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step (device synchronised at both ends), the gradient norms the Trainer clipped,
    and the peak memory; evals and checkpoint saves fall outside the steps."""

    def __init__(self, device: str):
        self.device, self.times, self._t = device, [], None

    def on_step_begin(self, args, state, control, **kwargs):
        gb.sync(self.device)
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        gb.sync(self.device)
        self.times.append(time.perf_counter() - self._t)


def free(device: str) -> None:
    gb.reset_peak(device)


def failure(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


# --- 1. the 9B shape ------------------------------------------------------------------------------------------
def synthetic_pairs(n: int, words: tuple[int, int, int], seed: int = 0) -> list[PairRecord]:
    """Pairs of random words, long enough that every row is cut to exactly max_length, with labels in turn."""
    rng = np.random.default_rng(seed)
    return [PairRecord(id=f"s{i}", prompt=(gb.long_text(rng, words[0]),), response_a=(gb.long_text(rng, words[1]),),
                       response_b=(gb.long_text(rng, words[2]),), label=i % 3, source="synthetic") for i in range(n)]


def lora_config(args, path: Path, checkpointing: bool, work: Path, **extra) -> TransformerConfig:
    return TransformerConfig(**({
        "model_path": str(path), "finetune": "lora", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
        "target_modules": "all-linear", "max_length": args.max_length, "max_prompt_tokens": args.max_length // 4,
        "batch_size": args.batch_size, "grad_accum": 1, "max_steps": args.steps, "learning_rate": 1e-4,
        "warmup_ratio": 0.1, "logging_steps": 1, "save_steps": 1_000_000, "eval_fraction": 0.0,
        "gradient_checkpointing": checkpointing, "checkpoint_dir": str(work / f"ck-9b-{int(checkpointing)}"),
        "token_budget": max(16384, 4 * args.max_length), "max_batch_rows": 64} | extra))


def train_9b(args, path: Path, records, device: str, peaks: dict, work: Path, checkpointing: bool, keep: bool,
             base: dict, **extra):
    """One LoRA run of `args.steps` steps; returns (results, the fitted model if `keep`). `base`: the architecture's
    parameter counts (from a meta-device build: a 4-bit model's packed weights would undercount)."""
    import torch

    res = {"gradient_checkpointing": checkpointing, "batch_rows": args.batch_size} | extra
    free(device)
    timer = StepTimer(device)
    start = time.perf_counter()
    try:
        model = build_model(lora_config(args, path, checkpointing, work, **extra)).fit(records, progress=False,
                                                                                        callbacks=[timer])
    except torch.OutOfMemoryError as e:
        res["oom"] = f"out of memory at batch {args.batch_size} x {args.max_length} tokens: {str(e).splitlines()[0]}"
        del e
        free(device)
        return res, None
    except Exception as e:  # noqa: BLE001 - the other runs still go; the block names the failure
        traceback.print_exc()
        res["error"] = failure(e)
        del e
        free(device)
        return res, None
    res["fit_seconds"] = time.perf_counter() - start
    res["peak_gib"] = gb.peak_gib(device)
    report = model.train_report_
    forward, swapped = model.sequences(records, True)
    lengths = [len(x) for x in forward + swapped]
    res["row_tokens"] = sorted(set(lengths))
    hist = report["log_history"]
    losses = [h["loss"] for h in hist if "loss" in h]
    norms = [h["grad_norm"] for h in hist if "grad_norm" in h]
    counts = base | {"lora": sum(p.numel() for n, p in model.model_.named_parameters() if "lora_" in n)}
    base_model = model.model_.get_base_model()
    layers, d_attn = gb.attention_shape(base_model.config)
    step_tokens = [args.max_length] * args.batch_size  # asserted below: every row is cut to max_length
    flops = gb.lora_train_flops(step_tokens, counts["non_embedding"], counts["lora"], layers, d_attn)
    steady = timer.times[1:] or timer.times  # the first step compiles kernels and warms the allocator
    step_s = float(np.median(steady))
    res |= {"steps": report["global_step"], "step_times": timer.times, "step_seconds": step_s,
            "tokens_per_s": sum(step_tokens) / step_s, "rows_per_s": args.batch_size / step_s,
            "flops_per_step": flops, "tflops": flops / step_s / 1e12, "params": counts, "layers": layers,
            "d_attn": d_attn, "losses": losses, "grad_norms": norms, "attention": base_model.config._attn_implementation,
            "loss_finite": bool(losses) and bool(np.all(np.isfinite(losses))),
            "grads_finite": bool(norms) and bool(np.all(np.isfinite(norms))),
            "all_rows_max_length": all(n == args.max_length for n in lengths)}
    for name, peak in peaks.items():
        res[f"mfu_{name}"] = res["tflops"] / peak if peak else None
    print(f"9B LoRA, checkpointing {'on' if checkpointing else 'off'}: {step_s:.3f} s/step, "
          f"{res['tokens_per_s']:,.0f} tokens/s, peak {gb.fmt_gib(res['peak_gib'])}", flush=True)
    if not keep:
        del model
        free(device)
        return res, None
    return res, model


def round_trip(model, rows, device: str, work: Path) -> tuple[dict, np.ndarray]:
    """Save, reload and predict `rows` at real size; returns the results and the predictions before saving."""
    out = {"rows": len(rows)}
    before = model.predict_proba(rows, options=model.engine_options(progress=False, devices=[device]))
    start = time.perf_counter()
    model.save(work / "lora-9b")
    out["save_seconds"] = time.perf_counter() - start
    out["adapter_mib"] = sum(f.stat().st_size for f in (work / "lora-9b").rglob("*") if f.is_file()) / 2**20
    del model
    free(device)
    start = time.perf_counter()
    loaded = load_model(work / "lora-9b")
    after = loaded.predict_proba(rows, options=loaded.engine_options(progress=False, devices=[device]))
    out["reload_predict_seconds"] = time.perf_counter() - start
    out["reload_max_abs_diff"] = float(np.abs(after - before).max())
    del loaded
    free(device)
    return out, before


def merge_once(rows, before: np.ndarray, device: str, work: Path) -> dict:
    """`merge` of the saved LoRA model: LoRA folded into the rebuilt base, written as a plain checkpoint, loaded
    back and predicted."""
    from arenapref.models.merge import merge_model

    try:
        start = time.perf_counter()
        merged = merge_model([work / "lora-9b"], work / "merged-9b")
        merge_s = time.perf_counter() - start
        size = sum(f.stat().st_size for f in merged.rglob("*") if f.is_file()) / 2**30
        free(device)
        start = time.perf_counter()
        plain = load_model(merged)
        probs = plain.predict_proba(rows, options=plain.engine_options(progress=False, devices=[device]))
        out = {"seconds": merge_s, "gib": size, "load_predict_seconds": time.perf_counter() - start,
               "max_abs_diff": float(np.abs(probs - before).max())}
        del plain
        return out
    except Exception as e:  # noqa: BLE001 - recorded in the block
        traceback.print_exc()
        return {"error": failure(e)}
    finally:
        shutil.rmtree(work / "merged-9b", ignore_errors=True)
        free(device)


def qlora(args, path: Path, records, device, peaks, work: Path, budget: gb.Budget, base: dict) -> dict:
    """One QLoRA run (4-bit base): bitsandbytes quantizes while loading, so the random model is saved as a plain
    checkpoint first and loaded through the normal (quantized) path."""
    why = gb.bitsandbytes_status()
    if why or not device.startswith("cuda"):
        return {"skipped": why or "QLoRA needs CUDA"}
    if budget.left() < args.qlora_s + args.reserve_s:
        return {"skipped": "time budget"}
    import torch

    from arenapref.config import TransformerConfig as TC
    from arenapref.models.hf import load_tokenizer
    from arenapref.models.transformer import load_classifier

    try:
        plain = work / "random-9b-weights"
        tokenizer = load_tokenizer(path)
        model, _ = load_classifier(str(path), TC(model_path=str(path)), tokenizer, torch.bfloat16, device=device)
        model.save_pretrained(str(plain))
        tokenizer.save_pretrained(str(plain))
        del model
        free(device)
        res, _ = train_9b(args, plain, records, device, peaks, work, True, False, base, quantization="4bit")
        return res
    except Exception as e:  # noqa: BLE001 - recorded in the block
        traceback.print_exc()
        return {"error": failure(e)}
    finally:
        shutil.rmtree(work / "random-9b-weights", ignore_errors=True)


# --- 2. MiniLM on the shared sets -----------------------------------------------------------------------------
def scores(test, probs) -> dict:
    from prepare_carry import cpu_bench_rows

    by_id = dict(zip((r.id for r in test), probs))
    views = {"all held-out rows": test, "cpu-bench held-out rows": cpu_bench_rows(test)}
    views |= {f"source {s}": [r for r in test if r.source == s] for s in sorted({r.source for r in test})}
    out = {}
    for name, recs in views.items():
        if recs:
            p, y = np.array([by_id[r.id] for r in recs]), score_targets(recs)
            out[name] = {"rows": len(recs), "log_loss": log_loss(y, p), "accuracy": accuracy(y, p)}
    return out


def minilm_config(args, path: Path, epochs: float, work: Path, name: str, rows: int) -> TransformerConfig:
    steps = int(np.ceil(2 * rows / args.minilm_batch) * epochs)
    return TransformerConfig(logging_steps=max(1, steps // 20),
        model_path=str(path), finetune="full", max_length=args.minilm_max_length,
        max_prompt_tokens=args.minilm_max_length // 4, batch_size=args.minilm_batch, epochs=epochs,
        learning_rate=args.minilm_lr, warmup_ratio=0.1, scheduler="cosine", save_steps=1_000_000,
        eval_fraction=0.0, checkpoint_dir=str(work / f"ck-minilm-{name}"), token_budget=65536, max_batch_rows=256)


def minilm(args, device: str, work: Path, budget: gb.Budget) -> dict:
    from prepare_carry import cpu_bench_rows, read_data

    train, test, info = read_data(args.data)
    out = {"split": {k: info[k] for k in ("train", "test", "dropped_shared_prompt", "cpu_bench_train", "cpu_bench_test",
                                          "test_by_source", "train_by_source", "limit")},
           "runs": {}, "baselines": {}, "precision": "bf16" if device.startswith("cuda") else "fp32"}
    y = score_targets(test)
    out["uniform"] = scores(test, uniform(len(test)))
    plan = (("cpu-bench", cpu_bench_rows(train), args.minilm_epochs_cpu_bench), ("all", train, args.minilm_epochs_all))
    for name, rows, epochs in plan:
        out["baselines"][f"prior | {name}"] = {"train_rows": len(rows), "scores": scores(
            test, build_model(PriorConfig()).fit(rows).predict_proba(test))}
        need = args.minilm_s_per_kpair_epoch * len(rows) / 1000 * epochs + args.reserve_s
        if budget.left() < need:
            out["runs"][name] = {"skipped": f"time budget ({budget.left():.0f} s left, about {need:.0f} s needed)",
                                 "train_rows": len(rows), "epochs": epochs}
            continue
        free(device)
        timer = StepTimer(device)
        config = minilm_config(args, args.minilm_path, epochs, work, name, len(rows))
        start = time.perf_counter()
        model = build_model(config).fit(rows, progress=False, callbacks=[timer])
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        probs = model.predict_proba(test, options=model.engine_options(progress=False, devices=[device]))
        predict_s = time.perf_counter() - start
        report = model.train_report_
        hist = [h for h in report["log_history"] if "loss" in h]
        out["runs"][name] = {
            "train_rows": len(rows), "epochs": epochs, "steps": report["global_step"], "fit_seconds": fit_s,
            "step_seconds_total": float(sum(timer.times)), "predict_seconds": predict_s, "peak_gib": gb.peak_gib(device),
            "pairs_per_s": report["global_step"] * config.batch_size / 2 / max(sum(timer.times), 1e-9),
            "tokens_per_row_mean": report["tokens_per_row_mean"], "truncation": report["truncation"],
            "loss_first": hist[0]["loss"] if hist else None, "loss_last": hist[-1]["loss"] if hist else None,
            "scores": scores(test, probs), "config": config.model_dump(mode="json")}
        print(f"MiniLM on {name}: held-out {log_loss(y, probs):.4f} (prior "
              f"{out['baselines'][f'prior | {name}']['scores']['all held-out rows']['log_loss']:.4f}), "
              f"{fit_s:.0f} s", flush=True)
        del model
        free(device)
    out["baselines"] |= cpu_baselines(args.data, info)
    return out


def cpu_baselines(folder: Path, info: dict) -> dict:
    """features / embed computed on the CPU beforehand on the same rows (prepare_carry.py --only baselines), or
    on this machine when LightGBM imports here."""
    path = folder / "baselines.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if (saved["train_ids"], saved["test_ids"]) != (info["train_ids"], info["test_ids"]):
            return {"note": f"{path} is for other rows; rerun prepare_carry.py --only baselines"}
        return {k: v | {"where": f"CPU beforehand ({saved['machine']})"} for k, v in saved["results"].items()
                if v["model"] != "prior"}
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return {"note": "no baselines.json and LightGBM is not importable here: features / embed not scored"}
    from prepare_carry import baselines

    saved = baselines(folder, ("features",))
    return {k: v | {"where": "this machine"} for k, v in saved["results"].items()}


# --- the block ------------------------------------------------------------------------------------------------
def render(r: dict, command: str) -> str:
    m, tiny, peaks = r["machine"], r["tiny"], r["peaks"]
    title = ("## Fine-tuning at real size on a GPU" if not tiny else
             "## Fine-tuning at real size on a GPU: TINY CPU SMOKE RUN (`--tiny`: hidden size 32, not a benchmark)")
    lines = [title, ""]
    if tiny:
        lines += ["This block was written by the CPU test's tiny run (tiny shapes, few rows, CPU). Its figures only "
                  "show that the script runs end to end; they say nothing about a GPU or about what the models reach.", ""]
    stopped = f" Stopped early: {r['stopped']}." if r.get("stopped") else ""
    lines += [f"Measured {r['finished']} by `{command}` ({r['seconds']:.0f} s in all, budget {r['budget_s']:.0f} s)."
              f"{stopped} Machine: {gb.machine_line(m)}.", "",
              f"Peak dense {r['dtype']} rate: spec sheet "
              f"{gb.fmt(peaks.get('spec'), '{:.1f} TFLOP/s', 'n/a (no spec-sheet figure for this device)')}; measured "
              f"{peaks['measured']:.1f} TFLOP/s ({r['matmul_n']}^3 matrix product on random data, median of 10).", ""]
    g = r.get("gemma", {})
    runs = g.get("runs", [])
    if runs:
        first = next((x for x in runs if "step_seconds" in x), None)
        lines += [f"### {gb.SHAPES[SHAPE]['label']}-shaped classifier, LoRA, through `TransformerModel.fit`", "",
                  "Random weights (a random-weight checkpoint: config.json + tokenizer + random_init.json, built on the "
                  f"device in {r['dtype']} at every load; right for speed and memory, meaningless for predictions). LoRA "
                  f"r16 / alpha 32 / dropout 0.05 on every linear layer, the head trained whole; rows of exactly "
                  f"{r['max_length']:,} tokens (synthetic text, every row cut to max_length), full swap: each step holds "
                  f"{gb.plural(r['batch_size'] // 2, 'pair')} and their swaps ({r['batch_size']} rows); AdamW lr 1e-4, "
                  f"{'bf16 autocast over a bf16 base, adapters in fp32' if r['dtype'] == 'bf16' else 'fp32'}, "
                  f"{r['steps']} steps; step time is the median of steps 2 onwards, device synchronised around each "
                  "step.", ""]
        if first:
            p = first["params"]
            lines += [f"Parameters: {gb.human(p['total'])} in all, N = {gb.human(p['non_embedding'])} outside the input "
                      f"embedding (frozen), {gb.human(p['lora'])} in the adapters; {first['layers']} layers, d_attn "
                      f"{first['d_attn']:,}, attention {first['attention']}. FLOPs per step of rows of L tokens: forward "
                      "2 (N + N_lora) L + attention, backward 2 N L (activation gradients through the frozen base) + "
                      "4 N_lora L + 2 x attention, attention = layers x 2 x d_attn x L (L + 1); the recomputation of "
                      "gradient checkpointing is not counted (model FLOPs): "
                      f"{first['flops_per_step'] / 1e12:.3g} TFLOP per step.", ""]
        lines += ["| run | s / step | tokens/s | TFLOP/s | MFU (spec) | MFU (measured) | peak GiB | loss first / last | "
                  "grad norm max | finite loss, grads |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for x in runs:
            name = (f"{'QLoRA 4-bit base' if x.get('quantization') == '4bit' else 'LoRA ' + r['dtype'] + ' base'}, checkpointing "
                    f"{'on' if x['gradient_checkpointing'] else 'off'}")
            if "step_seconds" not in x:
                lines.append(f"| {name} | {x.get('oom') or x.get('skipped') or x.get('error')} | | | | | | | | |")
                continue
            lines.append(
                f"| {name} | {x['step_seconds']:.3f} | {x['tokens_per_s']:,.0f} | {x['tflops']:.1f} | "
                f"{gb.fmt(x.get('mfu_spec'), '{:.1%}', 'n/a')} | {gb.fmt(x.get('mfu_measured'), '{:.1%}', 'n/a')} | "
                f"{gb.fmt(x['peak_gib'], '{:.1f}', 'n/a')} | {x['losses'][0]:.3f} / {x['losses'][-1]:.3f} | "
                f"{max(x['grad_norms']) if x['grad_norms'] else float('nan'):.3g} | "
                f"{'yes' if x['loss_finite'] else 'NO'}, {'yes' if x['grads_finite'] else 'NO'} |")
        lines.append("")
        lines.append("Finite gradients: the Trainer's clipped gradient norm (over every trainable weight) was finite at "
                     "every step. " + ("" if all(x.get("all_rows_max_length", True) for x in runs) else
                                       "WARNING: some rows were shorter than max_length. "))
        if "qlora" in g and ("skipped" in g["qlora"] or "error" in g["qlora"]):
            lines.append(f"QLoRA (4-bit base): not run: {g['qlora'].get('skipped') or g['qlora'].get('error')}.")
        t = g.get("round_trip")
        if t:
            text = (f"Round trip at this size: saved (adapter and head, {t['adapter_mib']:.1f} MiB, {t['save_seconds']:.1f} "
                    f"s), reloaded with `load_model` (the base rebuilt from the random-weight checkpoint) and predicted "
                    f"{t['rows']} rows with swap TTA in {t['reload_predict_seconds']:.1f} s: max |p_reloaded - p_before| "
                    f"= {t['reload_max_abs_diff']:.1e}.")
            mg = t.get("merge", {})
            if "seconds" in mg:
                text += (f" `merge` (LoRA folded into the base, a plain {mg['gib']:.1f} GiB checkpoint): "
                         f"{mg['seconds']:.1f} s; loaded and predicted in {mg['load_predict_seconds']:.1f} s, max |p_merged "
                         f"- p_before| = {mg['max_abs_diff']:.1e}.")
            else:
                text += f" `merge`: not run: {mg.get('skipped') or mg.get('error') or 'stopped before it finished'}."
            lines.append(text)
        elif g.get("round_trip_note"):
            lines.append(g["round_trip_note"])
        lines.append("")
    elif g.get("skipped"):
        lines += [f"9B LoRA: not run: {g['skipped']}.", ""]
    mm = r.get("minilm")
    if mm:
        lines += render_minilm(mm, tiny)
    elif r.get("minilm_note"):
        lines += [r["minilm_note"]]
    return "\n".join(lines).rstrip() + "\n"


def render_minilm(mm: dict, tiny: bool) -> list[str]:
    s = mm["split"]
    lines = ["### all-MiniLM-L6-v2 cross-encoder, full fine-tune on every shared set", "",
             f"Split (scripts/gpu/prepare_carry.py): PandaLM + LLMBar folded together as in the CPU benchmark "
             f"(scripts/bench_transformer.py: GroupedFolds(5, seed 0), fold 0 held out: {s['cpu_bench_test']} held-out "
             f"rows), every other shared set by its own GroupedFolds(5, seed 0), fold 0 held out; {s['train']:,} training "
             f"and {s['test']:,} held-out pairs; {s['dropped_shared_prompt']} training rows dropped because their prompt "
             "is also held out." + (f" Smoke test: {s['limit']} rows per set." if s.get("limit") else ""),
             f"Two training sets: `cpu-bench` ({s['cpu_bench_train']:,} pairs: the CPU benchmark's PandaLM + LLMBar "
             "training rows, less any whose prompt is also held out) and `all` (every set's training rows). Scored on "
             "hard labels; lower log loss is better; uniform = 1.0986.", ""]
    for name, run in mm["runs"].items():
        if "skipped" in run:
            lines.append(f"MiniLM on `{name}` ({run['train_rows']:,} pairs): not run: {run['skipped']}.")
            continue
        c = run["config"]
        lines.append(f"MiniLM on `{name}`: {run['train_rows']:,} pairs, {gb.plural(run['epochs'], 'epoch')}, {run['steps']} steps "
                     f"of {c['batch_size']} rows (pairs + swaps), max_length {c['max_length']} (prompt turns capped at "
                     f"{c['max_prompt_tokens']}; {run['truncation']['share_rows_truncated']:.0%} of pairs cut), AdamW lr "
                     f"{c['learning_rate']:g}, 10% warm-up + cosine, "
                     f"{'fp32 weights with bf16 autocast' if mm['precision'] == 'bf16' else 'fp32'}; train loss "
                     f"{gb.fmt(run['loss_first'], '{:.3f}')} -> {gb.fmt(run['loss_last'], '{:.3f}')}; fit "
                     f"{run['fit_seconds']:.0f} s ({run['pairs_per_s']:.0f} pairs/s inside steps), held-out prediction "
                     f"with swap TTA {run['predict_seconds']:.1f} s, peak {gb.fmt_gib(run['peak_gib'])}.")
    lines.append("")
    views = ["all held-out rows", "cpu-bench held-out rows"]
    lines += ["| model | trained on | where | " + " | ".join(f"{v}: log loss / acc" for v in views) + " |",
              "|---|---|---|" + "---:|" * len(views)]

    def row(label, train, where, sc):
        cells = [f"{sc[v]['log_loss']:.4f} / {sc[v]['accuracy']:.3f}" if v in sc else "" for v in views]
        lines.append(f"| {label} | {train} | {where} | " + " | ".join(cells) + " |")

    row("uniform", "-", "-", mm["uniform"])
    for name in ("cpu-bench", "all"):
        for model in ("prior", "features", "embed"):
            b = mm["baselines"].get(f"{model} | {name}")
            if b:
                row(model, name, b.get("where", "this machine"), b["scores"])
        run = mm["runs"].get(name, {})
        if "scores" in run:
            row("transformer (MiniLM, swap TTA)", name, "this machine", run["scores"])
    if mm["baselines"].get("note"):
        lines += ["", mm["baselines"]["note"] + "."]
    sources = sorted(k for k in mm["uniform"] if k.startswith("source "))
    if sources:
        lines += ["", "Held-out log loss by source (rows):", "",
                  "| model | trained on | " + " | ".join(f"{k[7:]} ({mm['uniform'][k]['rows']})" for k in sources) + " |",
                  "|---|---|" + "---:|" * len(sources)]
        for name in ("cpu-bench", "all"):
            entries = [("prior", mm["baselines"].get(f"prior | {name}")), ("features", mm["baselines"].get(f"features | {name}")),
                       ("embed", mm["baselines"].get(f"embed | {name}")),
                       ("transformer", mm["runs"].get(name) if "scores" in mm["runs"].get(name, {}) else None)]
            for label, e in entries:
                if e:
                    lines.append(f"| {label} | {name} | " + " | ".join(
                        f"{e['scores'][k]['log_loss']:.4f}" if k in e["scores"] else "" for k in sources) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU, few rows: the test")
    ap.add_argument("--minilm-path", type=Path, default=None, help="all-MiniLM-L6-v2 checkpoint (prepare_carry.py)")
    ap.add_argument("--data", type=Path, default=ROOT / ".gpu-carry" / "data", help="prepare_carry.py's data folder")
    ap.add_argument("--steps", type=int, default=None, help="LoRA steps per run (default 20; tiny 3)")
    ap.add_argument("--batch-size", type=int, default=2, help="rows per step: pairs and their swaps (even)")
    ap.add_argument("--max-length", type=int, default=None, help="tokens per row (default 2048; tiny 128)")
    ap.add_argument("--no-merge", dest="merge", action="store_false")
    ap.add_argument("--minilm-epochs-cpu-bench", type=float, default=None, help="default 4 (tiny 1)")
    ap.add_argument("--minilm-epochs-all", type=float, default=None, help="default 2 (tiny 1)")
    ap.add_argument("--minilm-max-length", type=int, default=None, help="default 512 (tiny 64)")
    ap.add_argument("--minilm-batch", type=int, default=32, help="rows per step: pairs and their swaps (even)")
    ap.add_argument("--minilm-lr", type=float, default=5e-5)
    ap.add_argument("--budget-s", type=float, default=None, help="time budget (default 285 s on a GPU, 240 s tiny)")
    ap.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--work-dir", type=Path, default=None, help="scratch: checkpoints, the adapter, the merged model")
    args = ap.parse_args()
    import torch

    tiny = args.tiny
    args.steps = args.steps or (3 if tiny else 20)
    args.max_length = args.max_length or (128 if tiny else 2048)
    args.minilm_epochs_cpu_bench = args.minilm_epochs_cpu_bench or (1 if tiny else 4)
    args.minilm_epochs_all = args.minilm_epochs_all or (1 if tiny else 2)
    args.minilm_max_length = args.minilm_max_length or (64 if tiny else 512)
    args.budget_s = args.budget_s or (240.0 if tiny else 285.0)
    # seconds the phases are expected to need on one H200 (skipped when fewer are left); tiny runs need little
    args.reserve_s = 2.0 if tiny else 15.0
    args.merge_s, args.qlora_s = (5.0, 5.0) if tiny else (90.0, 90.0)
    args.minilm_s_per_kpair_epoch = 0.5 if tiny else 4.0
    if args.batch_size % 2:
        raise SystemExit("--batch-size must be even: full swap puts a pair and its swap in one step")
    if tiny:
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda:0"
    else:
        raise SystemExit("no CUDA GPU here: real shapes need one (run with --tiny for the CPU smoke run)")
    dtype = torch.float32 if tiny else torch.bfloat16
    gb.stop_on_sigterm()
    budget = gb.Budget(args.budget_s)
    command = "python3 scripts/bench_gpu_train.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-gpu-train-"))
    r = {"tiny": tiny, "machine": gb.machine(device), "dtype": "fp32" if tiny else "bf16", "budget_s": args.budget_s,
         "steps": args.steps, "batch_size": args.batch_size, "max_length": args.max_length, "gemma": {"runs": []}}
    try:
        r["matmul_n"] = 256 if tiny else 8192
        r["peaks"] = {"spec": None if tiny else gb.spec_peak_tflops(r["machine"]["device"]),
                      "measured": gb.measure_matmul_tflops(device, dtype, r["matmul_n"])}
        from arenapref.models.transformer import write_random_checkpoint

        arch = gb.architecture_config(SHAPE, tiny, dtype=dtype)
        base = gb.meta_parameter_counts(arch)
        path = write_random_checkpoint(work / "random-9b", arch, gb.word_tokenizer(), seed=0)
        n_pairs = args.steps * args.batch_size // 2
        words = (args.max_length // 2, args.max_length, args.max_length)
        records = synthetic_pairs(n_pairs, words)
        predict_rows = synthetic_pairs(4, words, seed=1)
        model = None
        for checkpointing in (False, True):
            res, model = train_9b(args, path, records, device, r["peaks"], work, checkpointing, keep=checkpointing,
                                  base=base)
            r["gemma"]["runs"].append(res)
            gb.write_json(args.json, r)
        before = None
        if model is not None:
            try:
                r["gemma"]["round_trip"], before = round_trip(model, predict_rows, device, work)
            except Exception as e:  # noqa: BLE001 - recorded in the block
                traceback.print_exc()
                r["gemma"]["round_trip_note"] = f"Round trip failed: {failure(e)}."
            model = None
        else:
            r["gemma"]["round_trip_note"] = "Round trip not run: the checkpointing run did not finish."
        r["gemma"]["qlora"] = qlora(args, path, records, device, r["peaks"], work, budget, base)
        if "step_seconds" in r["gemma"]["qlora"]:
            r["gemma"]["runs"].append(r["gemma"]["qlora"])
        gb.write_json(args.json, r)
        free(device)
        if args.minilm_path is None:
            r["minilm_note"] = "MiniLM fine-tune not run: no --minilm-path (scripts/gpu/prepare_carry.py writes one)."
        elif not (args.data / "split.json").is_file():
            r["minilm_note"] = f"MiniLM fine-tune not run: {args.data} holds no split.json (scripts/gpu/prepare_carry.py)."
        else:
            try:
                r["minilm"] = minilm(args, device, work, budget)
            except Exception as e:  # noqa: BLE001 - recorded in the block
                traceback.print_exc()
                r["minilm_note"] = f"MiniLM fine-tune failed: {failure(e)}."
        gb.write_json(args.json, r)
        if before is not None:  # last: on a GPU it writes and reads the whole 18 GB checkpoint
            if not args.merge:
                r["gemma"]["round_trip"]["merge"] = {"skipped": "--no-merge"}
            elif budget.left() < args.merge_s + args.reserve_s:
                r["gemma"]["round_trip"]["merge"] = {"skipped": f"time budget ({budget.left():.0f} s left)"}
            else:
                r["gemma"]["round_trip"]["merge"] = merge_once(predict_rows, before, device, work)
    except (gb.TimeUp, KeyboardInterrupt) as e:
        r["stopped"] = f"{type(e).__name__} after {budget.elapsed():.0f} s"
    r["seconds"] = budget.elapsed()
    r["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    gb.write_json(args.json, r)
    block = render(r, command.strip())
    replace_block(args.benchmarks, BLOCK, block)
    print(block)
    print(f"wrote the {BLOCK} block of {args.benchmarks}")
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    bad = [x for x in r["gemma"]["runs"] if "step_seconds" in x and not (x["loss_finite"] and x["grads_finite"])]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
