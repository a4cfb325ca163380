"""What the two GPU benchmarks share (scripts/bench_gpu_engine.py, scripts/bench_gpu_train.py): the public
architecture shapes (and tiny ones for the CPU test), FLOP counts, the device's peak (spec sheet and a measured
bf16 matmul), the machine line, a time budget, and synthetic token sequences of real pair lengths.

FLOP counts (written into every block that uses them): N = parameters outside the input embedding (the 3-way head
included), L = a row's real tokens (padding is never counted), d_attn = heads x head_dim, layers = decoder layers.
- forward, per row: 2 N L + attention, attention = layers x 2 x d_attn x L (L + 1) (causal: token i scores and
  mixes i + 1 keys, 2 FLOPs per multiply-add, QK^T and AV);
- LoRA training, per row: forward (2 N_base L + 2 N_lora L + attention) + backward (2 N_base L for the activation
  gradients through the frozen base, 4 N_lora L for the adapters' activation and weight gradients, 2 x attention);
  no weight gradients of the frozen base, and gradient checkpointing's recomputed forward is not counted (model
  FLOPs, not hardware FLOPs).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import time
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
LENGTHS_FILE = SCRIPTS / "gpu" / "arena_lengths.json"

# Dense bf16 tensor-core peak of the spec sheets, TFLOP/s, without sparsity (first match on the device name wins).
SPEC_BF16_TFLOPS = (("H200 NVL", 835.0), ("H200", 989.4), ("GH200", 989.4), ("H100 NVL", 835.0), ("H100 PCIe", 756.0),
                    ("H100", 989.4), ("A100", 312.0), ("L40S", 362.1), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0))
T4_FP16_TFLOPS = 65.0  # T4 has no bf16: its dense fp16 tensor-core peak

# Public architecture shapes (config.json of google/gemma-2-9b and meta-llama/Meta-Llama-3-8B) and tiny ones for the
# CPU test. Random weights: right for speed and memory, meaningless for predictions.
SHAPES = {
    "gemma2-9b": {"arch": "gemma2", "label": "Gemma-2-9B", "real": dict(
        hidden_size=3584, num_hidden_layers=42, num_attention_heads=16, num_key_value_heads=8, head_dim=256,
        intermediate_size=14336, vocab_size=256000, query_pre_attn_scalar=256, sliding_window=4096,
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0, max_position_embeddings=8192, pad_token_id=0,
        eos_token_id=1, bos_token_id=2),
        "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                     intermediate_size=64, vocab_size=512, query_pre_attn_scalar=8, sliding_window=64,
                     max_position_embeddings=512, pad_token_id=0, eos_token_id=1, bos_token_id=2)},
    "llama3-8b": {"arch": "llama", "label": "Llama-3-8B", "real": dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336,
        vocab_size=128256, max_position_embeddings=8192, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        bos_token_id=128000, eos_token_id=128001, pad_token_id=128001),
        "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=64, vocab_size=512, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
                     pad_token_id=2)},
}


def architecture_config(name: str, tiny: bool, **extra):
    """The transformers config of a shape, with a 3-way head."""
    import transformers

    shape = SHAPES[name]
    cls = {"gemma2": transformers.Gemma2Config, "llama": transformers.LlamaConfig}[shape["arch"]]
    return cls(**(shape["tiny" if tiny else "real"] | {"num_labels": 3} | extra))


def attention_implementation(name: str) -> str:
    """SDPA where transformers supports it for the architecture; Gemma-2 is eager, since SDPA cannot apply its
    attention-logit soft-capping (transformers sets _supports_sdpa = False) and flash-attn is not installed."""
    return "eager" if SHAPES[name]["arch"] == "gemma2" else "sdpa"


def build_classifier(name: str, tiny: bool, device: str, dtype, seed: int = 0):
    """A 3-way sequence classifier of the shape with random weights, created directly on `device` (no weights are
    downloaded, nothing of a 9B model is materialised on the CPU)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    config = architecture_config(name, tiny)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForSequenceClassification.from_config(config, dtype=dtype,
                                                               attn_implementation=attention_implementation(name))
    return model.eval()


def parameter_counts(model) -> dict:
    """total, input embedding, non-embedding (N of the FLOP count), and the LoRA adapters' (trainable) share."""
    emb = model.get_input_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    return {"total": total, "embedding": emb.numel(), "non_embedding": total - emb.numel() - lora, "lora": lora}


def meta_parameter_counts(config) -> dict:
    """parameter_counts of the architecture built on the meta device (no memory, no time)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return parameter_counts(model)


def attention_shape(config) -> tuple[int, int]:
    """(layers, d_attn = heads x head_dim) of a decoder config."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, heads * head_dim


def attention_flops(lengths, layers: int, d_attn: int) -> float:
    lengths = np.asarray(lengths, dtype=np.float64)
    return float((layers * 2 * d_attn * lengths * (lengths + 1)).sum())


def forward_flops(lengths, n_params: int, layers: int, d_attn: int) -> float:
    return 2.0 * n_params * float(np.sum(lengths)) + attention_flops(lengths, layers, d_attn)


def lora_train_flops(lengths, n_base: int, n_lora: int, layers: int, d_attn: int) -> float:
    tokens = float(np.sum(lengths))
    attn = attention_flops(lengths, layers, d_attn)
    return (2 * n_base + 2 * n_lora) * tokens + attn + (2 * n_base + 4 * n_lora) * tokens + 2 * attn


# --- the device -----------------------------------------------------------------------------------------------
def device_name(device: str) -> str:
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    from benchblock import cpu_name

    return f"CPU ({cpu_name()})"


def spec_peak_tflops(name: str) -> float | None:
    return next((v for k, v in SPEC_BF16_TFLOPS if k in name), None)


def measure_matmul_tflops(device: str, dtype, n: int = 8192, repeats: int = 10) -> float:
    """The rate of an n x n x n matrix product on random data, median of `repeats` after 3 warm-ups."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    times = []
    for i in range(3 + repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    del a, b
    return 2 * n ** 3 / float(np.median(times)) / 1e12


def sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def reset_peak(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_gib(device: str) -> float | None:
    """Peak memory allocated by torch on the GPU since the last reset_peak; None on the CPU (not tracked)."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**30
    return None


def machine(device: str) -> dict:
    import torch
    import transformers

    from benchblock import machine_summary

    info = {"device": device_name(device), "host": machine_summary(), "torch": torch.__version__,
            "transformers": transformers.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
    try:
        import peft

        info["peft"] = peft.__version__
    except ImportError:
        pass
    if str(device).startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info |= {"memory_gib": props.total_memory / 2**30, "sms": props.multi_processor_count,
                 "capability": f"{props.major}.{props.minor}"}
        try:
            import subprocess

            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def machine_line(m: dict) -> str:
    gpu = (f"{m['device']} ({m['memory_gib']:.0f} GiB, {m['sms']} SMs, compute capability {m['capability']}, driver "
           f"{m.get('driver', '?')})" if "memory_gib" in m else m["device"])
    cuda = f"CUDA {m['cuda']}" if m.get("cuda") else "CPU build"
    return (f"{gpu}; host {m['host']}; torch {m['torch']} ({cuda}), transformers {m['transformers']}"
            + (f", peft {m['peft']}" if "peft" in m else ""))


def fmt(x, spec: str = "{:.2f}", none: str = "") -> str:
    return none if x is None else spec.format(x)


def fmt_gib(x) -> str:
    return "n/a (CPU)" if x is None else f"{x:.1f} GiB"


def plural(n: float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def human(n: float) -> str:
    """9.24e9 -> '9.24B', 3.5e4 -> '35k'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


def bitsandbytes_status() -> str | None:
    """None when bitsandbytes imports, else why not."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any failure to import means "not available here"
        return f"bitsandbytes is not importable here ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return None


# --- time budget ----------------------------------------------------------------------------------------------
class TimeUp(BaseException):
    """SIGTERM (the `timeout` of scripts/gpu/run_device_checks.sh): stop, and write what was measured."""


def stop_on_sigterm() -> None:
    def handler(signum, frame):
        raise TimeUp(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


class Budget:
    """Seconds left of a run's budget; phases that would not fit are skipped and say so."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()


# --- synthetic sequences of real lengths ----------------------------------------------------------------------
def read_lengths(path: Path = LENGTHS_FILE) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def draw_lengths(table: dict, n: int, mix: str, seed: int = 0, scale: float = 1.0, cap: int = 2048) -> np.ndarray:
    """n pair lengths: `arena` draws kaggle-sample's real Arena rows; `equal` draws a shared set (equal odds),
    then one of its rows; `half-arena` draws kaggle-sample half of the time and another set the other half.
    `scale` shrinks them (tiny runs); lengths stay within [8, cap]."""
    rng = np.random.default_rng(seed)
    sets = table["sets"]
    others = [k for k in sets if k != "kaggle-sample"]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        if mix == "arena" or (mix == "half-arena" and rng.random() < 0.5):
            name = "kaggle-sample"
        elif mix in ("equal", "half-arena"):
            name = str(rng.choice(list(sets) if mix == "equal" else others))
        else:
            raise ValueError(f"length mix {mix!r}: choose arena, equal or half-arena")
        out[i] = rng.choice(sets[name]["lengths"])
    return np.clip(np.round(out * scale), 8, cap).astype(np.int64)


def random_ids(length: int, vocab: int, pad: int, rng) -> list[int]:
    """Token ids in [3, vocab) without the pad id (the classifier's last-token pooling looks for it)."""
    ids = rng.integers(3, vocab, size=int(length))
    ids[ids == pad] = 3 if pad != 3 else 4
    return ids.tolist()


def describe_lengths(lengths) -> dict:
    x = np.asarray(lengths)
    return {"n": int(len(x)), "mean": float(x.mean()), "median": float(np.median(x)), "p90": float(np.percentile(x, 90)),
            "max": int(x.max()), "min": int(x.min()), "at_cap": float(np.mean(x >= 2048))}


WORDS = [f"w{i}" for i in range(400)]


def word_tokenizer():
    """One token per word of WORDS (a WordLevel tokenizer, so lengths are exact), `<s>` first, no pad token (the
    transformer family sets one, as for real decoder checkpoints). Hand-built because no real tokenizer travels
    to the device; random weights make the token identities irrelevant."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + WORDS + ["#", "Prompt", "Response", "A", "B"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def long_text(rng, words: int) -> str:
    return " ".join(rng.choice(WORDS, size=words))


def write_json(path: Path | None, data: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)
