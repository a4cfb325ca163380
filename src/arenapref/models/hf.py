"""The Hugging Face plumbing both sequence families share (transformer and judge), in one copy: torch and the
extras, device and dtype, 8-bit/4-bit loading, tokenizers with a pad token, LoRA, and a fine-tuning run through
the Trainer (train/trainer.py) with its checkpoint folder.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from arenapref.data.record import PairRecord, text_hash
from arenapref.errors import ConfigError, DeviceError, require_extra
from arenapref.files import cache_root
from arenapref.infer.options import ScorerFactory, resolve_devices


def require_torch(family: str, extra: str = "transformer") -> None:
    require_extra(extra, "torch", "transformers", what=f"the `{family}` model")


def require_peft():
    require_extra("transformer", "peft", what="LoRA fine-tuning")
    import peft

    return peft


def default_device() -> str:
    """The first CUDA GPU, else the CPU."""
    return resolve_devices(None)[0]


def local_device() -> str:
    """This process's GPU (LOCAL_RANK under torchrun / accelerate), else the CPU."""
    import os

    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def device_dtype(device: str, precision: str = "auto"):
    """bf16 (or fp16 where the GPU lacks bf16) weights on CUDA, fp32 on CPU; `precision` forces one."""
    import torch

    if not str(device).startswith("cuda") or precision == "fp32":
        if precision in ("fp16", "bf16") and not str(device).startswith("cuda"):
            raise DeviceError(f"precision {precision!r} needs a CUDA GPU; on CPU use precision: auto or fp32")
        return torch.float32
    if precision == "fp16" or (precision == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def quantization_config(kind: str | None, device: str = "cuda"):
    """A BitsAndBytesConfig for 8-bit or 4-bit (NF4, double quantization) weights; None for "none"."""
    if kind in (None, "none"):
        return None
    import torch

    if kind not in ("8bit", "4bit"):
        raise DeviceError(f"quantization {kind!r}: choose none, 8bit or 4bit")
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        raise DeviceError(f"{kind} weights need a CUDA GPU and bitsandbytes; this machine has none, so run without "
                          "--quantize (quantization: none)")
    require_extra("qlora", "bitsandbytes", what=f"{kind} weights")
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=device_dtype(device))


def need_gguf(gguf_file: str | None) -> None:
    if gguf_file is not None:
        require_extra("judge", "gguf", what="reading a GGUF checkpoint")


def load_tokenizer(path: str | Path, gguf_file: str | None = None):
    """A local tokenizer with a pad token and right padding. Decoder checkpoints often ship without a pad token;
    padding is masked and both families read the last real token, so reusing eos (or unk) is safe."""
    from transformers import AutoTokenizer

    need_gguf(gguf_file)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, **kwargs)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
        else:
            tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    return tokenizer


@contextmanager
def quiet_transformers():
    """Loading a base for an adapter reports a 'newly initialised' head that the adapter then replaces: hide it."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


# --- LoRA -----------------------------------------------------------------------------------------------------
def lora_targets(model, target_modules, keep_whole: Sequence[str] = ()) -> list[str]:
    """Names of the Linear layers to adapt: the configured names, or every Linear outside `keep_whole` (a head
    and pooler trained in full) and outside the output embedding."""
    import torch.nn as nn

    if target_modules != "all-linear":
        return list(target_modules)
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module is out_emb:
            continue
        if any(p in keep_whole for p in name.split(".")):
            continue
        names.append(name)
    if not names:
        raise ConfigError("no Linear layers found to adapt with LoRA; set target_modules or use finetune: full")
    return names


def attach_lora(model, config, task_type: str, keep_whole: Sequence[str] = ()):
    """LoRA adapters (config.lora_*) on `model`; modules in `keep_whole` are trained in full. A quantized base is
    prepared for k-bit training first. Trainable weights are kept in fp32 over a half-precision base."""
    import torch

    peft = require_peft()
    lora = peft.LoraConfig(task_type=getattr(peft.TaskType, task_type), r=config.lora_r, lora_alpha=config.lora_alpha,
                           lora_dropout=config.lora_dropout,
                           target_modules=lora_targets(model, config.target_modules, keep_whole),
                           modules_to_save=list(keep_whole) or None)
    if config.quantization != "none":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    model = peft.get_peft_model(model, lora)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model


# --- fine-tuning ----------------------------------------------------------------------------------------------
def dataset_key(records: Sequence[PairRecord], config) -> str:
    """Names the checkpoint folder by config and data, so `resume` finds the run it continues."""
    settings = json.loads(config.model_dump_json())
    for k in ("resume", "checkpoint_dir", "max_batch_rows", "token_budget"):
        settings.pop(k, None)
    data = text_hash("\n".join(f"{r.id}|{r.prompt_key}|{r.target().tolist() if r.target() is not None else ''}" for r in records))
    return text_hash(json.dumps(settings, sort_keys=True) + data)


def holdout_split(records: Sequence[PairRecord], fraction: float) -> tuple[list[PairRecord], list[PairRecord]]:
    """Grouped by prompt (a prompt's rows land on one side), decided by a hash so it is the same every run."""
    if fraction <= 0:
        return list(records), []
    held = [int(r.prompt_key[:8], 16) % 10_000 < fraction * 10_000 for r in records]
    train = [r for r, h in zip(records, held) if not h]
    evals = [r for r, h in zip(records, held) if h]
    if not train or not evals:
        raise ConfigError(f"eval_fraction={fraction} leaves an empty train or eval set on {len(records)} rows")
    return train, evals


@dataclass
class FineTuneRun:
    trainer: object
    checkpoint_dir: Path
    owns_checkpoints: bool  # a default folder: removed once the model is saved; a configured one is kept
    report: dict


def fine_tune(model, records: Sequence[PairRecord], forward, swapped, eval_ids, eval_targets, config, pad_token_id: int,
              progress: bool, logits_fn: Callable | None = None, log_probs: bool = False,
              callbacks: Sequence = ()) -> FineTuneRun:
    """Trains `model` with the Trainer on token ids of each pair (`forward`) and, with full swap, of its A/B
    swap in the same step; eval log loss on `eval_ids` when given; checkpoints in config.checkpoint_dir or a
    cache folder named by config and data; `config.resume` continues from its last complete checkpoint."""
    from arenapref.data.record import swap_labels, targets
    from arenapref.train.trainer import (
        PairDataset,
        classifier_logits,
        interleave,
        train,
    )

    y = targets(records)
    if swapped is not None:
        data = PairDataset(interleave(forward, swapped), np.asarray(interleave(list(y), list(swap_labels(y)))))
    else:
        data = PairDataset(forward, y)
    evals = PairDataset(eval_ids, eval_targets) if eval_ids else None
    owns = config.checkpoint_dir is None
    ckpt = cache_root(None) / "checkpoints" / dataset_key(records, config) if owns else Path(config.checkpoint_dir)
    start = time.perf_counter()
    trainer = train(model, data, evals, config, ckpt, pad_token_id, resume=config.resume, callbacks=callbacks,
                    progress=progress, logits_fn=logits_fn or classifier_logits, log_probs=log_probs)
    seconds = time.perf_counter() - start
    done = trainer.state.global_step * config.batch_size * config.grad_accum
    report = {
        "checkpoint_dir": str(ckpt), "resumed_from": trainer.resumed_from, "global_step": trainer.state.global_step,
        "train_rows": len(data), "train_pairs": len(records), "eval_pairs": len(eval_ids or []), "seconds": seconds,
        "rows_per_second": done / seconds if seconds else None, "tokens_per_row_mean": data.n_tokens() / len(data),
        "log_history": trainer.state.log_history, "best_metric": trainer.state.best_metric,
    }
    return FineTuneRun(trainer, ckpt, owns, report)


# --- loading a plain checkpoint in a worker -------------------------------------------------------------------
@dataclass
class SequenceClassifierFactory(ScorerFactory):
    """Loads an AutoModelForSequenceClassification from a local directory on the worker's device. A head the
    checkpoint lacks is initialised from `seed`, so every worker builds the same model."""

    path: str
    num_labels: int = 3
    quantization: str | None = None
    precision: str = "auto"
    seed: int = 0
    outputs = "logits"

    def build(self, device: str):
        import torch
        from transformers import AutoModelForSequenceClassification

        from arenapref.infer.scorers import sequence_classifier_score

        torch.manual_seed(self.seed)
        quant = quantization_config(self.quantization, device)
        kwargs = {"quantization_config": quant, "device_map": {"": device}} if quant else {}
        model = AutoModelForSequenceClassification.from_pretrained(
            self.path, num_labels=self.num_labels, dtype=device_dtype(device, self.precision), local_files_only=True, **kwargs)
        if not quant:
            model.to(device)
        return sequence_classifier_score(model)
