"""The inference engine on a CUDA GPU at real architecture sizes: Gemma-2-9B and Llama-3-8B shaped 3-way
classifiers with random weights (built on the GPU in bf16, no download), engine vs a naive Hugging Face loop on the
same rows, MFU, `arenapref estimate` beside the measured time, and a 25k-row Kaggle projection. Writes the
`gpu-engine` block of BENCHMARKS.md (issue 13).

    python3 scripts/bench_gpu_engine.py                        # on a GPU: at most --budget-s (200 s)
    python3 scripts/bench_gpu_engine.py --tiny --benchmarks /tmp/B.md    # the same code path on a CPU, tiny shapes

Inputs: pairs of random token ids whose lengths are drawn from real pairs of the shared sets as the transformer
family formats them at 2,048 tokens (scripts/gpu/arena_lengths.json, written by scripts/gpu/prepare_carry.py
--only lengths), both A/B orders.
Naive: batches of 8 pairs in input order, each padded to its longest row, one pass per order, the model called
directly. Engine: `TransformerModel.predict_proba` on `arenapref.infer` (length-sorted batches under a token budget,
both orders in one pass). Same model, same rows, same process; their probabilities are compared.
FLOP counts: scripts/gpubench.py. Runs under a time budget (--budget-s): a phase that would not fit is skipped and
the block says so; SIGTERM stops the run and still writes what was measured.
"""

from __future__ import annotations

import argparse
import os
import shlex
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gpubench as gb  # noqa: E402
from benchblock import replace_block  # noqa: E402

from arenapref.data.record import PairRecord, swap_average  # noqa: E402
from arenapref.models.transformer import TransformerModel  # noqa: E402

BLOCK = "gpu-engine"
KAGGLE_TEST_ROWS = 25_000
KAGGLE_HOURS = 9
AGREE_TOLERANCE = {"bf16": 0.03, "fp32": 1e-5}  # max |p_engine - p_naive|: batch shapes change bf16 rounding


class SyntheticPairs(TransformerModel):
    """The transformer family's prediction path (engine options, back-end, swap TTA in one pass, output checks)
    over synthetic token ids. A record's meta holds its length and seed; ids are made on demand, so a 25k-row
    projection never holds 25k sequences. The swapped order is the same tokens with the two answer halves
    exchanged, as prompt + B + A is to prompt + A + B."""

    def __init__(self, config, model, vocab: int, pad: int):
        super().__init__(config)
        self.model_, self.head_, self._vocab, self._pad = model, "score", vocab, pad

    def sequences(self, records, swap):
        forward, swapped = [], []
        for r in records:
            ids = gb.random_ids(r.meta["length"], self._vocab, self._pad, np.random.default_rng(r.meta["seed"]))
            forward.append(ids)
            if swap:
                k = len(ids) // 5  # the "prompt" stays first
                m = (len(ids) - k) // 2
                swapped.append(ids[:k] + ids[k + m:] + ids[k:k + m])
        return forward, (swapped if swap else None)

    @property
    def pad_token_id(self) -> int:
        return self._pad


def synthetic_records(lengths, seed: int, prefix: str = "p") -> list[PairRecord]:
    return [PairRecord(id=f"{prefix}{i}", prompt=("",), response_a=("",), response_b=("",),
                       meta={"length": int(n), "seed": seed * 1_000_003 + i}) for i, n in enumerate(lengths)]


def naive_loop(forward, swapped, score, pad: int, batch: int = 8):
    """Batches of `batch` pairs in input order, each padded to its longest row, one pass per A/B order."""
    import torch

    from arenapref.infer import pad_batch, to_probabilities

    probs, padded = [], 0
    for seqs in (forward, swapped):
        rows = []
        for i in range(0, len(seqs), batch):
            ids, mask = pad_batch(seqs, list(range(i, min(i + batch, len(seqs)))), pad)
            padded += ids.numel()
            with torch.inference_mode():
                rows.append(score(ids, mask).to("cpu", torch.float64).numpy())
        probs.append(to_probabilities(np.vstack(rows), "logits"))
    return swap_average(probs[0], probs[1]), padded, 2 * -(-len(forward) // batch)


def rates(lengths, seconds: float, pairs: int, flops: float, peaks: dict) -> dict:
    out = {"seconds": seconds, "pairs_per_s": pairs / seconds, "real_tokens_per_s": float(np.sum(lengths)) / seconds,
           "tflops": flops / seconds / 1e12}
    for name, peak in peaks.items():
        out[f"mfu_{name}"] = out["tflops"] / peak if peak else None
    return out


def bench_model(res: dict, args, device: str, dtype, peaks: dict, table: dict, budget: gb.Budget, work: Path) -> dict:
    """Fills `res` (already in the results, so a run stopped half way keeps what it measured)."""
    import torch

    from arenapref.config import TransformerConfig
    from arenapref.estimate import estimate_run
    from arenapref.infer import plan_batches

    name = res["model"]
    n_pairs = args.pairs if name == "gemma2-9b" else args.llama_pairs
    gb.reset_peak(device)
    start = time.perf_counter()
    hf_model = gb.build_classifier(name, args.tiny, device, dtype)
    gb.sync(device)
    res["build_seconds"] = time.perf_counter() - start
    res["build_peak_gib"] = gb.peak_gib(device)
    res["params"] = gb.parameter_counts(hf_model)
    res["attention"] = hf_model.config._attn_implementation
    layers, d_attn = gb.attention_shape(hf_model.config)
    res["layers"], res["d_attn"] = layers, d_attn
    vocab, pad = hf_model.config.vocab_size, hf_model.config.pad_token_id
    config = TransformerConfig(token_budget=args.token_budget, max_batch_rows=args.max_batch_rows, quantization="none")
    model = SyntheticPairs(config, hf_model, vocab, pad)
    scale = 1 / 32 if args.tiny else 1.0
    lengths = gb.draw_lengths(table, n_pairs, args.length_mix, seed=args.seed, scale=scale)
    records = synthetic_records(lengths, args.seed)
    res["lengths"] = gb.describe_lengths(lengths)
    forward, swapped = model.sequences(records, True)
    seqs = forward + swapped
    all_lengths = [len(s) for s in seqs]
    n_params = res["params"]["non_embedding"]
    flops = gb.forward_flops(all_lengths, n_params, layers, d_attn)
    res["flops"] = flops
    options = lambda: model.engine_options(progress=False, devices=[device])  # noqa: E731 - fresh stats per run
    score = model.score_function(device)

    # warm-up: kernels, cuBLAS handles and the allocator, on a few pairs of each method
    warm = records[:4]
    model.predict_proba(warm, options=options())
    fw, sw = model.sequences(warm, True)
    naive_loop(fw, sw, score, pad, args.naive_batch)
    gb.sync(device)

    gb.reset_peak(device)
    opts = options()
    start = time.perf_counter()
    p_engine = model.predict_proba(records, options=opts)
    gb.sync(device)
    engine_s = time.perf_counter() - start
    plan = plan_batches(seqs, opts.token_budget, opts.max_batch_rows)
    padded_engine = int(sum(len(b) * len(seqs[int(b[0])]) for b in plan))
    res["engine"] = rates(all_lengths, engine_s, n_pairs, flops, peaks) | {
        "padded_tokens": padded_engine, "padding_share": 1 - sum(all_lengths) / padded_engine, "batches": len(plan),
        "oom_splits": opts.stats.get("oom_splits", 0), "peak_gib": gb.peak_gib(device),
        "token_budget": opts.token_budget, "max_batch_rows": opts.max_batch_rows}
    print(f"{name}: engine {res['engine']['pairs_per_s']:.2f} pairs/s, {res['engine']['tflops']:.1f} TFLOP/s", flush=True)

    if budget.left() > engine_s * args.naive_factor + args.reserve_s:
        gb.reset_peak(device)
        start = time.perf_counter()
        p_naive, padded_naive, naive_batches = naive_loop(forward, swapped, score, pad, args.naive_batch)
        gb.sync(device)
        naive_s = time.perf_counter() - start
        res["naive"] = rates(all_lengths, naive_s, n_pairs, flops, peaks) | {
            "padded_tokens": padded_naive, "padding_share": 1 - sum(all_lengths) / padded_naive,
            "batches": naive_batches, "peak_gib": gb.peak_gib(device), "batch_pairs": args.naive_batch}
        diff = np.abs(p_engine - p_naive)
        precision = "fp32" if dtype == torch.float32 else "bf16"
        res["agreement"] = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
                            "argmax_agree": float(np.mean(p_engine.argmax(1) == p_naive.argmax(1))),
                            "tolerance": AGREE_TOLERANCE[precision], "agree": bool(diff.max() <= AGREE_TOLERANCE[precision])}
        res["speedup"] = naive_s / engine_s
        print(f"{name}: naive {res['naive']['pairs_per_s']:.2f} pairs/s; speed-up {res['speedup']:.2f}x; max |dp| "
              f"{diff.max():.1e}", flush=True)
    else:
        res["naive"] = {"skipped": f"time budget: {budget.left():.0f} s left, the naive loop needs about "
                                   f"{engine_s * args.naive_factor:.0f} s"}

    if budget.left() > args.reserve_s:
        est = estimate_run(model, records, options(), swap_tta=True, timed_rows=args.estimate_rows)
        res["estimate"] = {"seconds": est.total_seconds, "score_seconds": est.score_seconds,
                           "measured_seconds": engine_s, "error": est.total_seconds / engine_s - 1,
                           "timed_rows": est.timed_rows, "hardware": est.hardware}
        arena = [int(x) for x in table["sets"]["kaggle-sample"]["lengths"]]
        arena_mean = float(np.mean(np.clip(np.round(np.asarray(arena) * scale), 8, 2048)))
        kaggle = synthetic_records(gb.draw_lengths(table, KAGGLE_TEST_ROWS, "arena", seed=args.seed + 1, scale=scale),
                                   args.seed + 1, prefix="k")
        est25 = estimate_run(model, kaggle, options(), swap_tta=True, timed_rows=args.estimate_rows)
        measured_rate = KAGGLE_TEST_ROWS * 2 * arena_mean / res["engine"]["real_tokens_per_s"]
        res["kaggle"] = {"rows": KAGGLE_TEST_ROWS, "arena_mean_tokens": arena_mean, "measured_rate_seconds": measured_rate,
                         "estimate_seconds": est25.total_seconds, "estimate_timed_rows": est25.timed_rows}
        if peaks.get("spec"):
            res["kaggle"]["t4x2_seconds"] = measured_rate * peaks["spec"] / (2 * gb.T4_FP16_TFLOPS)
    else:
        res["estimate"] = {"skipped": "time budget"}

    if args.quantized and budget.left() > args.quant_s + args.reserve_s:
        res["quantized"] = bench_quantized(hf_model, model, records[:args.quant_pairs], p_engine[:args.quant_pairs],
                                           device, peaks, work / f"{name}-random", args)
    return res  # the model is freed with this frame: main() calls gb.reset_peak next


def bench_quantized(hf_model, model, records, reference, device, peaks, path: Path, args) -> dict:
    """8-bit and 4-bit weights through arenapref's own loading path (SequenceClassifierFactory, bitsandbytes),
    from the random model saved as a checkpoint (bitsandbytes quantizes while loading)."""
    why = gb.bitsandbytes_status()
    if why is not None or not str(device).startswith("cuda"):
        return {"skipped": why or "8-bit/4-bit weights need CUDA"}
    from arenapref.infer import engine_predict
    from arenapref.models.hf import SequenceClassifierFactory

    out = {}
    try:
        start = time.perf_counter()
        hf_model.save_pretrained(str(path))
        out["save_seconds"] = time.perf_counter() - start
        forward, swapped = model.sequences(records, True)
        lengths = [len(s) for s in forward + swapped]
        counts = gb.parameter_counts(hf_model)
        layers, d_attn = gb.attention_shape(hf_model.config)
        flops = gb.forward_flops(lengths, counts["non_embedding"], layers, d_attn)
        for kind in ("8bit", "4bit"):
            gb.reset_peak(device)
            score = SequenceClassifierFactory(str(path), quantization=kind).build(device)
            opts = model.engine_options(progress=False, devices=[device])
            engine_predict(forward[:2], swapped[:2], score, model.pad_token_id, opts)  # warm-up
            start = time.perf_counter()
            probs = engine_predict(forward, swapped, score, model.pad_token_id, opts)
            gb.sync(device)
            seconds = time.perf_counter() - start
            out[kind] = rates(lengths, seconds, len(records), flops, peaks) | {
                "peak_gib": gb.peak_gib(device), "max_abs_diff_vs_bf16": float(np.abs(probs - reference).max())}
            del score
    except Exception as e:  # noqa: BLE001 - recorded in the block instead of a number
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        traceback.print_exc()
    return out


# --- the block ------------------------------------------------------------------------------------------------
def render(r: dict, command: str) -> str:
    m = r["machine"]
    tiny = r["tiny"]
    title = ("## Inference engine at real sizes on a GPU (random weights)" if not tiny else
             "## Inference engine at real sizes on a GPU: TINY CPU SMOKE RUN (`--tiny`: hidden size 32, not a benchmark)")
    lines = [title, ""]
    if tiny:
        lines += ["This block was written by the CPU test's tiny run (tiny shapes, fp32, CPU). Its figures only show "
                  "that the script runs end to end; they say nothing about a GPU.", ""]
    stopped = f" Stopped early: {r['stopped']}." if r.get("stopped") else ""
    lines += [f"Measured {r['finished']} by `{command}` ({r['seconds']:.0f} s in all, budget {r['budget_s']:.0f} s)."
              f"{stopped} Machine: {gb.machine_line(m)}.", ""]
    peaks = r["peaks"]
    lines += [f"Peak dense {r['dtype']} rate: spec sheet {gb.fmt(peaks.get('spec'), '{:.1f}', 'n/a (no spec-sheet figure for this device)')}"
              f"{' TFLOP/s' if peaks.get('spec') else ''}; measured {peaks['measured']:.1f} TFLOP/s (a {r['matmul_n']}^3 "
              f"{r['dtype']} matrix product on random data, median of 10 after 3 warm-ups). MFU = achieved FLOP/s over "
              "each of the two.", ""]
    mix = {"half-arena": "half of the pairs from kaggle-sample's 32 real Arena rows, half from the other shared sets "
                         "(each set equally likely)", "arena": "kaggle-sample's 32 real Arena rows",
           "equal": "every shared set equally likely"}[r["length_mix"]]
    lines += [f"Models: {', '.join(x['label'] for x in r['models'])} shaped 3-way sequence classifiers (public config "
              "shapes, scripts/gpubench.py) with random weights, built on the device in "
              f"{r['dtype']} with no download; random weights are right for speed and memory, and their predictions mean "
              "nothing. Attention: eager for Gemma-2 (transformers gives it no SDPA, which cannot soft-cap attention "
              "logits; flash-attn is not installed), SDPA for Llama-3.",
              f"Inputs: random token ids, pair lengths drawn ({mix}) from scripts/gpu/arena_lengths.json: real pairs "
              f"formatted by the transformer family at 2,048 tokens ({r['lengths_tokenizer']}; Gemma-2's and Llama-3's "
              "larger vocabularies would give somewhat fewer tokens); both A/B orders of every pair.",
              f"Naive: batches of {r['naive_batch']} pairs in input order, each padded to its longest row, one pass per "
              "order, the model called directly. Engine: `TransformerModel.predict_proba` on `arenapref.infer` "
              "(length-sorted, token-budget batches, both orders in one pass). Each method ran once after a warm-up, "
              "same model, same rows, same process.", ""]
    lines += ["| model | method | pairs | mean / p90 / max tokens | pairs/s | real tokens/s | padded tokens | padding share "
              "| batches | peak GiB | TFLOP/s | MFU (spec) | MFU (measured) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in r["models"]:
        if "engine" not in x:
            lines.append(f"| {x['label']} | - | | | | | | | | | | | {x.get('error', 'not run')} |")
            continue
        ln = x["lengths"]
        for method in ("naive", "engine"):
            e = x[method]
            if "skipped" in e:
                lines.append(f"| {x['label']} | {method} | | | skipped: {e['skipped']} | | | | | | | | |")
                continue
            lines.append(
                f"| {x['label']} | {method} | {ln['n']} | {ln['mean']:.0f} / {ln['p90']:.0f} / {ln['max']} | "
                f"{e['pairs_per_s']:.2f} | {e['real_tokens_per_s']:,.0f} | {e['padded_tokens']:,} | {e['padding_share']:.1%} "
                f"| {e['batches']} | {gb.fmt(e['peak_gib'], '{:.1f}', 'n/a')} | {e['tflops']:.1f} | "
                f"{gb.fmt(e.get('mfu_spec'), '{:.1%}', 'n/a')} | {gb.fmt(e.get('mfu_measured'), '{:.1%}', 'n/a')} |")
    lines.append("")
    for x in r["models"]:
        if "engine" not in x:
            continue
        p = x["params"]
        eng = x["engine"]
        text = (f"{x['label']}: {gb.human(p['total'])} parameters, N = {gb.human(p['non_embedding'])} outside the "
                f"input embedding, {x['layers']} layers, d_attn {x['d_attn']:,}, attention {x['attention']}; built on "
                f"the device in {x['build_seconds']:.1f} s; engine token budget {eng['token_budget']:,}, "
                f"at most {eng['max_batch_rows']} rows a batch, {eng['oom_splits']} out-of-memory split(s).")
        if "speedup" in x:
            a = x["agreement"]
            text += (f" Engine / naive: {x['speedup']:.2f}x the pairs/s. Outputs {'agree' if a['agree'] else 'DISAGREE'}: "
                     f"max |p_engine - p_naive| = {a['max_abs_diff']:.1e} (mean {a['mean_abs_diff']:.1e}, tolerance "
                     f"{a['tolerance']:g}: the batch a row lands in changes its {r['dtype']} rounding), argmax equal "
                     f"on {a['argmax_agree']:.1%} of pairs.")
        lines.append(text)
    lines += ["", "FLOP count per row of L real tokens (padding not counted): 2 N L + layers x 2 x d_attn x L (L + 1) "
              "(causal attention: QK^T and AV over the i + 1 keys of token i; d_attn = heads x head_dim). TFLOP/s and "
              "MFU count these FLOPs over each method's wall time.", ""]

    est_rows = [x for x in r["models"] if "seconds" in x.get("estimate", {})]
    if est_rows:
        lines += ["### `arenapref estimate` beside the measured time", "",
                  "`estimate_run` on the same model, rows and engine settings: it formats a sample, plans the whole "
                  "run's batches from its lengths and times a sample spread over the lengths.", "",
                  "| model | pairs | timed pairs | estimated s | measured engine s | error |", "|---|---:|---:|---:|---:|---:|"]
        for x in est_rows:
            e = x["estimate"]
            lines.append(f"| {x['label']} | {x['lengths']['n']} | {e['timed_rows']} | {e['seconds']:.3g} | "
                         f"{e['measured_seconds']:.3g} | {e['error']:+.1%} |")
        lines += ["", f"### {KAGGLE_TEST_ROWS:,} Kaggle test rows, both orders, at 2,048 tokens: projections", "",
                  "Lengths: kaggle-sample's real Arena rows (the Kaggle test set is Arena data). 'measured rate': "
                  f"{KAGGLE_TEST_ROWS:,} x 2 orders x the mean Arena row over this run's engine real tokens/s. "
                  "'estimate': `estimate_run` on 25,000 such rows (times a sample of them). '2 x T4': the measured-rate "
                  f"projection x this device's spec-sheet peak / (2 x {gb.T4_FP16_TFLOPS:g} TFLOP/s, T4's dense fp16 peak: "
                  "it has no bf16); a projection, not a measurement: a T4 holds 16 GB, so a 9B model there needs 8-/4-bit "
                  "weights, whose speed it does not model.", "",
                  f"| model | Arena mean tokens/row | this device, measured rate | this device, estimate | 2 x T4 (projection) | "
                  f"{KAGGLE_HOURS}-hour budget |", "|---|---:|---:|---:|---:|---:|"]
        for x in est_rows:
            k = x["kaggle"]
            t4 = k.get("t4x2_seconds")
            lines.append(f"| {x['label']} | {k['arena_mean_tokens']:.0f} | {k['measured_rate_seconds'] / 60:.3g} min | "
                         f"{k['estimate_seconds'] / 60:.3g} min | {gb.fmt(t4 and t4 / 3600, '{:.1f} h', 'n/a')} | "
                         f"{KAGGLE_HOURS} h |")
        lines.append("")
    q = [(x["label"], x["quantized"]) for x in r["models"] if "quantized" in x]
    lines.append("### 8-bit and 4-bit weights")
    lines.append("")
    if not q:
        lines.append(f"Not measured: {r['bitsandbytes'] or 'skipped (time budget or --no-quantized)'}.")
    for label, qq in q:
        if "skipped" in qq or "error" in qq:
            lines.append(f"{label}: not measured: {qq.get('skipped') or qq.get('error')}.")
            continue
        for kind in ("8bit", "4bit"):
            if kind in qq:
                e = qq[kind]
                lines.append(f"{label} {kind} (bitsandbytes, `arenapref predict --quantize {kind}`'s loading path): "
                             f"{e['pairs_per_s']:.2f} pairs/s, peak {gb.fmt(e['peak_gib'], '{:.1f}', 'n/a')} GiB, max |dp| vs bf16 "
                             f"{e['max_abs_diff_vs_bf16']:.1e}.")
    if r.get("skipped_models"):
        lines += ["", "Not run (time budget): " + ", ".join(r["skipped_models"]) + "."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (hidden size 32) in fp32 on the CPU: the test")
    ap.add_argument("--models", default="gemma2-9b,llama3-8b")
    ap.add_argument("--pairs", type=int, default=None, help="pairs for Gemma-2-9B (default 500; tiny 16)")
    ap.add_argument("--llama-pairs", type=int, default=None, help="pairs for Llama-3-8B (default 400; tiny 12)")
    ap.add_argument("--length-mix", default="half-arena", choices=("half-arena", "arena", "equal"))
    ap.add_argument("--lengths", type=Path, default=gb.LENGTHS_FILE)
    ap.add_argument("--token-budget", type=int, default=16384)
    ap.add_argument("--max-batch-rows", type=int, default=256)
    ap.add_argument("--naive-batch", type=int, default=8)
    ap.add_argument("--estimate-rows", type=int, default=32)
    ap.add_argument("--no-quantized", dest="quantized", action="store_false")
    ap.add_argument("--quant-pairs", type=int, default=128)
    ap.add_argument("--budget-s", type=float, default=None, help="time budget (default 200 s on a GPU, 120 s tiny)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--work-dir", type=Path, default=None, help="scratch (a quantized run saves the random model here)")
    args = ap.parse_args()
    import torch

    args.pairs = args.pairs or (16 if args.tiny else 500)
    args.llama_pairs = args.llama_pairs or (12 if args.tiny else 400)
    args.budget_s = args.budget_s or (120.0 if args.tiny else 200.0)
    args.naive_factor, args.reserve_s, args.quant_s = 3.0, (5.0 if args.tiny else 25.0), 120.0
    if args.tiny:
        device, dtype = "cpu", torch.float32
        args.token_budget = min(args.token_budget, 512)
    elif torch.cuda.is_available():
        device, dtype = "cuda:0", torch.bfloat16
    else:
        raise SystemExit("no CUDA GPU here: real shapes need one (run with --tiny for the CPU smoke run)")
    gb.stop_on_sigterm()
    budget = gb.Budget(args.budget_s)
    command = "python3 scripts/bench_gpu_engine.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    table = gb.read_lengths(args.lengths)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-gpu-engine-"))
    r = {"tiny": args.tiny, "machine": gb.machine(device), "dtype": "fp32" if args.tiny else "bf16",
         "budget_s": args.budget_s, "length_mix": args.length_mix, "lengths_tokenizer": table["tokenizer"],
         "naive_batch": args.naive_batch, "models": [], "skipped_models": [], "bitsandbytes": gb.bitsandbytes_status()}
    try:
        r["matmul_n"] = 256 if args.tiny else 8192
        r["peaks"] = {"spec": None if args.tiny else gb.spec_peak_tflops(r["machine"]["device"]),
                      "measured": gb.measure_matmul_tflops(device, dtype, r["matmul_n"])}
        print(f"peak: {r['peaks']}", flush=True)
        names = [n for n in args.models.split(",") if n]
        for i, name in enumerate(names):
            if i and budget.left() < (10 if args.tiny else 90):
                r["skipped_models"].append(gb.SHAPES[name]["label"])
                continue
            res = {"model": name, "label": gb.SHAPES[name]["label"] + (" (tiny shape)" if args.tiny else "")}
            r["models"].append(res)
            try:
                bench_model(res, args, device, dtype, r["peaks"], table, budget, work)
            except Exception as e:  # noqa: BLE001 - the other model still runs; the block names the failure
                traceback.print_exc()
                res["error"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                del e  # its traceback holds the model
            gb.reset_peak(device)
            gb.write_json(args.json, r)
    except (gb.TimeUp, KeyboardInterrupt) as e:
        r["stopped"] = f"{type(e).__name__} after {budget.elapsed():.0f} s"
    r["seconds"] = budget.elapsed()
    r["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    gb.write_json(args.json, r)
    block = render(r, command.strip())
    replace_block(args.benchmarks, BLOCK, block)
    print(block)
    print(f"wrote the {BLOCK} block of {args.benchmarks}")
    failed = [x for x in r["models"] if "error" in x or not x.get("agreement", {"agree": True})["agree"]]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
