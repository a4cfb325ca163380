"""Fold averaging and merging of `transformer` models.

- `average_models`: one model from several trained on different folds or seeds (same base, format and LoRA
  settings). LoRA adapters are averaged exactly (k rank-r adapters -> one rank-k*r adapter); heads, poolers and
  fully fine-tuned weights element by element.
- `merge_model`: LoRA folded into the base and written as a plain transformers checkpoint that
  AutoModelForSequenceClassification loads without arenapref (and `arenapref predict` reads too).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Sequence

from arenapref.config import TransformerConfig
from arenapref.errors import UsageError
from arenapref.models import hf
from arenapref.models.base import load_calibration, load_model, read_model_meta
from arenapref.models.transformer import (
    ADAPTER_DIR,
    TransformerModel,
    add_lora,
    load_classifier,
)


def _read_meta(directory: Path) -> dict:
    meta = read_model_meta(directory)
    if meta.get("family") != "transformer":
        raise UsageError(f"{directory}: a {meta.get('family')!r} model; merging and averaging are for transformer models")
    return meta


def average_models(model_dirs: Sequence[str | Path], output: str | Path) -> Path:
    """One model from several trained on different folds (same base, format and LoRA settings).

    LoRA adapters are averaged exactly: the mean of k updates B_i A_i is one adapter of rank k*r whose A stacks
    the A_i and whose B stacks the B_i / k (alpha scaled to keep alpha/r). Heads, poolers and fully fine-tuned
    weights are averaged element by element.
    """
    dirs = [Path(d) for d in model_dirs]
    if len(dirs) < 2:
        raise UsageError("averaging needs at least two model directories")
    configs = [TransformerConfig.model_validate(_read_meta(d)["config"]) for d in dirs]
    must_match = ("finetune", "model_path", "head", "template", "max_length", "max_prompt_tokens", "max_response_tokens",
                  "prompt_weight", "min_turn_tokens", "lora_r", "target_modules", "quantization")
    for field in must_match:
        values = {json.dumps(getattr(c, field)) for c in configs}
        if len(values) > 1:
            raise UsageError(f"cannot average models whose {field} differs: {sorted(values)}")
    first = configs[0]
    if first.finetune == "full":
        return _average_full(dirs, first, Path(output))
    return _average_lora(dirs, first, Path(output))


def _average_full(dirs: list[Path], config, output: Path) -> Path:
    import torch

    models = [load_model(d) for d in dirs]
    states = [m.model_.state_dict() for m in models]
    avg = {k: (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v)
           for k, v in states[0].items()}
    merged = models[0]
    merged.model_.load_state_dict(avg)
    merged.n_train_ = None
    merged.calibration = None
    merged.train_report_ = {"averaged_from": [str(d) for d in dirs]}
    return merged.save(output)


def _average_lora(dirs: list[Path], config, output: Path) -> Path:
    import torch
    from safetensors.torch import load_file

    peft = hf.require_peft()
    k = len(dirs)
    states = [load_file(str(d / ADAPTER_DIR / "adapter_model.safetensors")) for d in dirs]
    adapter_cfg = json.loads((dirs[0] / ADAPTER_DIR / "adapter_config.json").read_text(encoding="utf-8"))
    if adapter_cfg.get("use_dora"):
        raise UsageError("averaging DoRA adapters is not supported")
    avg = {}
    for key, first in states[0].items():
        parts = [s[key] for s in states]
        if ".lora_A." in key:
            avg[key] = torch.cat(parts, dim=0)
        elif ".lora_B." in key:
            avg[key] = torch.cat([p / k for p in parts], dim=1)
        else:
            avg[key] = torch.stack([p.float() for p in parts]).mean(0).to(first.dtype)
    alpha = config.lora_alpha * (math.sqrt(k) if adapter_cfg.get("use_rslora") else k)
    new_config = config.model_copy(update={"lora_r": config.lora_r * k, "lora_alpha": alpha})
    model = TransformerModel(new_config)
    model.tokenizer_ = hf.load_tokenizer(dirs[0])
    dtype = hf.device_dtype(hf.default_device(), new_config.precision)
    with hf.quiet_transformers():
        base, model.head_ = load_classifier(new_config.model_path, new_config, model.tokenizer_, dtype)
    model.model_ = add_lora(base, new_config, model.head_)
    result = peft.set_peft_model_state_dict(model.model_, avg)
    missing = [m for m in result.missing_keys if "lora_" in m or "modules_to_save" in m]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"averaged adapter does not fit the model: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")
    model.model_.eval()
    model.train_report_ = {"averaged_from": [str(d) for d in dirs]}
    return model.save(output)


def _load_for_merge(source: Path, meta: dict) -> "TransformerModel":
    """Loads with unquantized base weights in the checkpoint's own dtype: LoRA cannot be merged into 4-bit
    weights, and a 9B base in fp32 would not fit in memory."""
    config = TransformerConfig.model_validate(meta["config"]).model_copy(update={"quantization": "none"})
    model = TransformerModel(config)
    model._load_state(source, dtype="auto")
    model.n_train_ = meta.get("n_train")
    model.calibration = load_calibration(source)  # still holds: merging does not change the predictions
    return model


def merge_model(model_dirs: Sequence[str | Path], output: str | Path) -> Path:
    """A plain transformers checkpoint (config.json, safetensors, tokenizer, id2label) that
    AutoModelForSequenceClassification loads without arenapref; also an arenapref model dir. Several
    directories (folds) are averaged first."""
    dirs = [Path(d) for d in model_dirs]
    if not dirs:
        raise UsageError("name at least one model directory to merge")
    output = Path(output)
    if any(output.resolve() == d.resolve() for d in dirs):
        raise UsageError("write the merged model to a new directory, not over an input")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.average-", dir=output.parent) as tmp:  # same disk, not /tmp
        source = dirs[0]
        if len(dirs) > 1:
            _read_meta(dirs[0])
            source = average_models(dirs, Path(tmp) / "averaged")
        meta = _read_meta(source)
        if meta["config"].get("head") == "mlp":
            raise UsageError("an MLP head has no plain transformers equivalent, so a merged checkpoint would reload with "
                             "a random head; keep the arenapref model directory, or train with head: linear")
        model = _load_for_merge(source, meta)
        if model.config.finetune == "lora":
            model.model_ = model.model_.merge_and_unload()
        model.config = model.config.model_copy(update={"finetune": "full"})
        model.train_report_ = {"merged_from": [str(d) for d in dirs]}
        return model.save(output)
