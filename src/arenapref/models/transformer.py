"""`transformer`: a cross-encoder over prompt + A + B as one sequence, with a 3-way head.

Any checkpoint that AutoModelForSequenceClassification can load from a local directory (BERT/MiniLM,
DeBERTa-v2/v3, Llama, Gemma-2, Qwen2, Mistral, Phi), trained with LoRA (peft) or fully through the Hugging Face
Trainer (arenapref/train/trainer.py); input formatting is arenapref/text/format.py.

A saved model is a directory: arenapref.json and config.yaml (resolved config, label order), format.json (the
input format, label map, head), the tokenizer, and either `adapter/` (LoRA weights with the head; the base
weights are read from `model_path`) or, after full fine-tuning or `merge`, a plain transformers checkpoint at
the top level that AutoModelForSequenceClassification loads without arenapref.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import List, Sequence

import numpy as np
import typer

from arenapref.data.record import LABELS, PairRecord, swap_labels, targets, text_hash
from arenapref.metrics import check_probabilities
from arenapref.models.base import MODEL_FILE, PairModel
from arenapref.text.format import InputFormat, PairFormatter, summarize_cuts

FORMAT_FILE = "format.json"
ADAPTER_DIR = "adapter"
TRAIN_REPORT = "training_report.json"
HEAD_NAMES = ("score", "classifier")  # decoder-style and encoder-style sequence-classification heads


def _need_torch():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise ImportError("the `transformer` model needs torch and transformers: pip install 'arenapref[transformer]'") from None


def _need_peft():
    try:
        import peft
    except ImportError:
        raise ImportError("LoRA training needs peft: pip install 'arenapref[transformer]' (or use finetune: full)") from None
    return peft


@contextmanager
def _quiet_transformers():
    """Loading a base for an adapter reports a 'newly initialised' head that the adapter then replaces: hide it."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def input_format(config) -> InputFormat:
    return InputFormat(template=config.template, max_length=config.max_length, max_prompt_tokens=config.max_prompt_tokens,
                       max_response_tokens=config.max_response_tokens, prompt_weight=config.prompt_weight,
                       min_turn_tokens=config.min_turn_tokens)


def resolve_model_path(config) -> str:
    if config.model_path:
        path = Path(config.model_path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"model_path {config.model_path!r} is not a directory; runs are offline, so point it at a local checkpoint")
        return str(path.resolve())
    from arenapref.models.embed import default_encoder_path

    return str(Path(default_encoder_path()).resolve())


def device_and_dtype(precision: str):
    """CUDA with bf16 (or fp16) weights for inference and LoRA bases; CPU in fp32."""
    import torch

    if not torch.cuda.is_available() or precision == "fp32":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), torch.float32
    if precision == "fp16" or (precision == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.device("cuda"), torch.float16
    return torch.device("cuda"), torch.bfloat16


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tokenizer.pad_token is None:
        # decoder checkpoints often ship without a pad token; padding is masked and the head reads the last
        # non-pad token, so reusing eos (or unk) is safe
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
        else:
            tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    return tokenizer


def find_head(model) -> str:
    import torch.nn as nn

    for name in HEAD_NAMES:
        module = getattr(model, name, None)
        if isinstance(module, (nn.Linear, nn.Sequential)):
            return name
    raise ValueError(f"{type(model).__name__}: no linear classification head named {' or '.join(HEAD_NAMES)}; "
                     "this architecture is not supported by the transformer family")


def install_mlp_head(model, head_name: str, hidden: int | None, dropout: float, seed: int) -> None:
    """Replaces the linear head by Linear -> GELU -> Dropout -> Linear, freshly initialised."""
    import torch
    import torch.nn as nn

    old = getattr(model, head_name)
    if not isinstance(old, nn.Linear):
        return  # already an MLP (loading a saved one)
    width = hidden or old.in_features
    head = nn.Sequential(nn.Linear(old.in_features, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, old.out_features))
    g = torch.Generator().manual_seed(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        for layer in (head[0], head[3]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * std)
            layer.bias.zero_()
    setattr(model, head_name, head.to(old.weight.device, old.weight.dtype))


def lora_targets(model, target_modules, keep_whole: Sequence[str]) -> list[str]:
    """Names of the Linear layers to adapt: the configured names, or every Linear outside the head and pooler
    (those are trained whole) and outside the output embedding."""
    import torch.nn as nn

    if target_modules != "all-linear":
        return list(target_modules)
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module is out_emb:
            continue
        parts = name.split(".")
        if any(p in keep_whole for p in parts):
            continue
        names.append(name)
    if not names:
        raise ValueError("no Linear layers found to adapt with LoRA; set target_modules or use finetune: full")
    return names


def quantization_config(kind: str):
    if kind == "none":
        return None
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"quantization {kind!r} (QLoRA) needs a CUDA GPU and bitsandbytes; on CPU use quantization: none")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ImportError("quantization needs bitsandbytes: pip install 'arenapref[qlora]'") from None
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    _, dtype = device_and_dtype("auto")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def load_classifier(path: str, config, tokenizer, dtype, quantize: bool = True):
    """The checkpoint at `path` with a 3-way head (labels in LABELS order) and the configured head type."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    pad = tokenizer.pad_token_id
    vocab = getattr(AutoConfig.from_pretrained(path, local_files_only=True), "vocab_size", None)
    # a pad token the tokenizer added (past the checkpoint's vocabulary) is set only after the resize below
    pad_fits = vocab is None or pad < vocab
    kwargs = dict(num_labels=3, id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)},
                  problem_type="single_label_classification", local_files_only=True, dtype=dtype)
    if pad_fits:
        kwargs["pad_token_id"] = pad
    quant = quantization_config(config.quantization) if quantize else None
    if quant is not None:
        kwargs["quantization_config"] = quant
    model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.config.pad_token_id = pad
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    head = find_head(model)
    if config.head == "mlp":
        install_mlp_head(model, head, config.head_hidden_size, config.head_dropout, config.seed)
    return model, head


def keep_whole_modules(model, head: str) -> list[str]:
    """Trained in full next to LoRA: the head, and a pooler if the model has one (DeBERTa's is newly initialised)."""
    names = [head]
    if any(n.split(".")[-1] == "pooler" for n, _ in model.named_modules()):
        names.append("pooler")
    return names


def add_lora(model, config, head: str):
    import torch

    peft = _need_peft()
    keep = keep_whole_modules(model, head)
    lora = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
                           lora_dropout=config.lora_dropout, target_modules=lora_targets(model, config.target_modules, keep),
                           modules_to_save=keep)
    if config.quantization != "none":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    model = peft.get_peft_model(model, lora)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()  # trainable weights in fp32, frozen base may be half precision
    return model


def dataset_key(records: Sequence[PairRecord], config) -> str:
    """Names the checkpoint folder by config and data, so `resume` finds the run it continues."""
    settings = json.loads(config.model_dump_json())
    for k in ("resume", "checkpoint_dir", "predict_batch_size"):
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
        raise ValueError(f"eval_fraction={fraction} leaves an empty train or eval set on {len(records)} rows")
    return train, evals


class TransformerModel(PairModel):
    family = "transformer"

    # The feature-model hooks do not apply: this family overrides fit and predict_proba.
    def encode(self, records, fitting=False):
        raise NotImplementedError("the transformer family formats token sequences, not feature columns")

    def _fit(self, X, y):
        raise NotImplementedError

    def _predict(self, X):
        raise NotImplementedError

    # --- training -------------------------------------------------------------------------------------
    def fit(self, records: Sequence[PairRecord], progress=None, eval_records: Sequence[PairRecord] | None = None,
            resume: bool | None = None, callbacks: Sequence = ()) -> "TransformerModel":
        """Fine-tunes on `records` (each with its A/B swap in the same step when swap_augment). Eval log loss every
        eval_steps on `eval_records` or on an eval_fraction of the prompts; checkpoints every save_steps."""
        _need_torch()
        import torch
        from transformers import set_seed

        from arenapref.models.embed import cache_root
        from arenapref.progress import interactive
        from arenapref.train.trainer import PairDataset, interleave, is_main_process, train

        if not records:
            raise ValueError("cannot fit on zero rows")
        config = self.config
        targets(records)  # names the first unlabelled row, if any
        path = resolve_model_path(config)
        self.config = config = config.model_copy(update={"model_path": path})
        if eval_records is None:
            records, eval_records = holdout_split(records, config.eval_fraction)
        set_seed(config.seed)
        self.tokenizer_ = load_tokenizer(path)
        _, dtype = device_and_dtype(config.precision) if config.finetune == "lora" else (None, torch.float32)
        with _quiet_transformers():  # the checkpoint has no 3-way head: a new one is expected here
            model, self.head_ = load_classifier(path, config, self.tokenizer_, dtype)
        if config.finetune == "lora":
            model = add_lora(model, config, self.head_)
        formatter = PairFormatter(self.tokenizer_, input_format(config))
        pairs = formatter.format(records)
        y = targets(records)
        if config.swap_augment:
            swapped = formatter.format([r.swapped() for r in records])
            train_data = PairDataset(interleave([p.input_ids for p in pairs], [p.input_ids for p in swapped]),
                                     np.asarray(interleave(list(y), list(swap_labels(y)))))
        else:
            train_data = PairDataset([p.input_ids for p in pairs], y)
        eval_data = None
        if eval_records:
            from arenapref.cv import score_targets

            eval_data = PairDataset([p.input_ids for p in formatter.format(eval_records)], score_targets(eval_records))
        ckpt = Path(config.checkpoint_dir) if config.checkpoint_dir else cache_root(None) / "checkpoints" / dataset_key(records, config)
        resume = config.resume if resume is None else resume
        start = time.perf_counter()
        trainer = train(model, train_data, eval_data, config, ckpt, self.tokenizer_.pad_token_id, resume=resume,
                        callbacks=callbacks, progress=interactive() if progress is None else bool(progress))
        seconds = time.perf_counter() - start
        if config.checkpoint_dir is None and is_main_process():
            shutil.rmtree(ckpt, ignore_errors=True)  # only a killed run needs them; a named checkpoint_dir is kept
        self.model_ = trainer.model
        self.model_.eval()
        self.n_train_ = len(records)
        done = trainer.state.global_step * config.batch_size * config.grad_accum
        self.train_report_ = {
            "checkpoint_dir": str(ckpt), "global_step": trainer.state.global_step, "train_rows": len(train_data),
            "train_pairs": len(records), "eval_pairs": len(eval_records or []), "seconds": seconds,
            "rows_per_second": done / seconds if seconds else None,
            "tokens_per_row_mean": train_data.n_tokens() / len(train_data),
            "truncation": summarize_cuts([p.cut for p in pairs]), "log_history": trainer.state.log_history,
            "best_metric": trainer.state.best_metric,
        }
        return self

    # --- prediction -----------------------------------------------------------------------------------
    def fingerprint_key(self) -> str:
        """What, besides the token ids, decides the scores (so --resume never mixes two models' results): the
        config and the head's weights, which every training run changes."""
        import hashlib

        digest = hashlib.blake2b(digest_size=12)
        digest.update(json.dumps(self.config.model_dump(mode="json"), sort_keys=True).encode())
        for name, tensor in sorted(self.model_.state_dict().items()):
            if any(h in name for h in HEAD_NAMES):
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()

    def engine_options(self, **overrides):
        """How `predict_proba` runs through the inference engine (arenapref/infer): batches cut by padded tokens,
        length-sorted, both orders in one pass, OOM halving, optional work dir for --resume."""
        from arenapref.infer.engine import EngineOptions

        return EngineOptions(**({"max_batch_rows": self.config.predict_batch_size, "description": "transformer"} | overrides))

    def predict_proba(self, records: Sequence[PairRecord], swap_tta: bool | None = None, options=None) -> np.ndarray:
        """One row per record, in order: P(A wins), P(B wins), P(tie); with swap TTA the mean of both orders."""
        from arenapref.infer.engine import engine_predict
        from arenapref.infer.scorers import sequence_classifier_score

        if not records:
            return np.zeros((0, 3))
        if getattr(self, "model_", None) is None:
            raise RuntimeError("this transformer model is not trained or loaded: call fit or load_model first")
        tta = self.config.swap_tta if swap_tta is None else swap_tta
        formatter = PairFormatter(self.tokenizer_, input_format(self.config))
        forward = [p.input_ids for p in formatter.format(records)]
        swapped = [p.input_ids for p in formatter.format([r.swapped() for r in records])] if tta else None
        options = options or self.engine_options(progress=False)
        probs = engine_predict(forward, swapped, sequence_classifier_score(self.model_), self.tokenizer_.pad_token_id,
                               options, key=self.fingerprint_key())
        if getattr(self, "calibration", None) is not None:
            probs = self.calibration.transform(probs)
        return check_probabilities(probs, len(records), f"{self.family} model")

    # --- saving ---------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Under torchrun every process holds the same trained model: the first writes, the others wait."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return super().save(directory)
        if dist.get_rank() == 0:
            super().save(directory)
        dist.barrier()
        return Path(directory)

    def _save_state(self, directory: Path) -> None:
        if getattr(self, "model_", None) is None:
            raise RuntimeError("nothing to save: the transformer model is not trained")
        for stale in ("model.safetensors", "model.safetensors.index.json", "config.json", ADAPTER_DIR):
            target = directory / stale
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        if self.config.finetune == "lora":
            # an embedding resized for an added pad token needs no saving: pad positions are masked out
            self.model_.save_pretrained(str(directory / ADAPTER_DIR), save_embedding_layers=False)
        else:
            self.model_.save_pretrained(str(directory))
        self.tokenizer_.save_pretrained(str(directory))
        (directory / FORMAT_FILE).write_text(json.dumps({
            "format": input_format(self.config).to_dict(), "labels": list(LABELS),
            "id2label": {str(i): l for i, l in enumerate(LABELS)}, "head": self.head_, "head_type": self.config.head,
            "finetune": self.config.finetune, "base_model": self.config.model_path,
            "pad_token_id": self.tokenizer_.pad_token_id,
        }, indent=2), encoding="utf-8")
        report = getattr(self, "train_report_", None)
        if report is not None:
            (directory / TRAIN_REPORT).write_text(json.dumps(report, indent=2, default=float), encoding="utf-8")

    def _load_state(self, directory: Path, dtype=None, device=None) -> None:
        _need_torch()
        saved = json.loads((directory / FORMAT_FILE).read_text(encoding="utf-8"))
        if tuple(saved["labels"]) != LABELS:
            raise ValueError(f"{directory}: saved label order {saved['labels']} differs from {list(LABELS)}")
        dev, default_dtype = device_and_dtype(self.config.precision)
        dtype = dtype or default_dtype
        self.tokenizer_ = load_tokenizer(directory)
        if self.config.finetune == "lora":
            peft = _need_peft()
            if not Path(self.config.model_path or "").is_dir():
                raise FileNotFoundError(f"{directory}: the LoRA adapter needs its base checkpoint at {self.config.model_path!r}, "
                                        "which is not there; copy it back or merge the model (`arenapref merge`) where it is")
            with _quiet_transformers():
                base, self.head_ = load_classifier(self.config.model_path, self.config, self.tokenizer_, dtype)
            self.model_ = peft.PeftModel.from_pretrained(base, str(directory / ADAPTER_DIR), is_trainable=False)
        else:
            with _quiet_transformers():
                self.model_, self.head_ = load_classifier(str(directory), self.config, self.tokenizer_, dtype, quantize=False)
            if self.config.head == "mlp":
                _load_head_weights(self.model_, directory, self.head_)
        if device is not None or dev.type == "cuda":
            self.model_.to(device or dev)
        self.model_.eval()


def _load_head_weights(model, directory: Path, head: str) -> None:
    """An MLP head is not a stock transformers head, so from_pretrained skips its weights: read them here."""
    from safetensors.torch import load_file

    state = {}
    for file in sorted(Path(directory).glob("*.safetensors")):
        state |= {k[len(head) + 1:]: v for k, v in load_file(str(file)).items() if k.startswith(head + ".")}
    if not state:
        raise ValueError(f"{directory}: no weights for the MLP head {head!r}")
    getattr(model, head).load_state_dict(state)


# --- fold averaging and merging -----------------------------------------------------------------------
def _read_meta(directory: Path) -> dict:
    meta_path = Path(directory) / MODEL_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{directory} is not an arenapref model directory (no {MODEL_FILE})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("family") != "transformer":
        raise ValueError(f"{directory}: a {meta.get('family')!r} model; merging and averaging are for transformer models")
    return meta


def average_models(model_dirs: Sequence[str | Path], output: str | Path) -> Path:
    """One model from several trained on different folds (same base, format and LoRA settings).

    LoRA adapters are averaged exactly: the mean of k updates B_i A_i is one adapter of rank k*r whose A stacks
    the A_i and whose B stacks the B_i / k (alpha scaled to keep alpha/r). Heads, poolers and fully fine-tuned
    weights are averaged element by element.
    """
    from arenapref.config import TransformerConfig

    dirs = [Path(d) for d in model_dirs]
    if len(dirs) < 2:
        raise ValueError("averaging needs at least two model directories")
    configs = [TransformerConfig.model_validate(_read_meta(d)["config"]) for d in dirs]
    must_match = ("finetune", "model_path", "head", "template", "max_length", "max_prompt_tokens", "max_response_tokens",
                  "prompt_weight", "min_turn_tokens", "lora_r", "target_modules", "quantization")
    for field in must_match:
        values = {json.dumps(getattr(c, field)) for c in configs}
        if len(values) > 1:
            raise ValueError(f"cannot average models whose {field} differs: {sorted(values)}")
    first = configs[0]
    if first.finetune == "full":
        return _average_full(dirs, first, Path(output))
    return _average_lora(dirs, first, Path(output))


def _average_full(dirs: list[Path], config, output: Path) -> Path:
    import torch

    from arenapref.models.base import load_model

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

    peft = _need_peft()
    k = len(dirs)
    states = [load_file(str(d / ADAPTER_DIR / "adapter_model.safetensors")) for d in dirs]
    adapter_cfg = json.loads((dirs[0] / ADAPTER_DIR / "adapter_config.json").read_text(encoding="utf-8"))
    if adapter_cfg.get("use_dora"):
        raise ValueError("averaging DoRA adapters is not supported")
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
    model.tokenizer_ = load_tokenizer(dirs[0])
    _, dtype = device_and_dtype(new_config.precision)
    with _quiet_transformers():
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
    from arenapref.config import TransformerConfig

    config = TransformerConfig.model_validate(meta["config"]).model_copy(update={"quantization": "none"})
    model = TransformerModel(config)
    model._load_state(source, dtype="auto")
    model.n_train_ = meta.get("n_train")
    try:  # a calibration fitted on this model still holds: merging does not change its predictions
        from arenapref.calibrate import load_calibration

        model.calibration = load_calibration(source)
    except ImportError:
        pass
    return model


def merge_model(model_dirs: Sequence[str | Path], output: str | Path) -> Path:
    """A plain transformers checkpoint (config.json, safetensors, tokenizer, id2label) that
    AutoModelForSequenceClassification loads without arenapref; also an arenapref model dir. Several
    directories (folds) are averaged first."""
    import tempfile

    dirs = [Path(d) for d in model_dirs]
    if not dirs:
        raise ValueError("name at least one model directory to merge")
    output = Path(output)
    if any(output.resolve() == d.resolve() for d in dirs):
        raise ValueError("write the merged model to a new directory, not over an input")
    with tempfile.TemporaryDirectory() as tmp:
        source = dirs[0]
        if len(dirs) > 1:
            _read_meta(dirs[0])
            source = average_models(dirs, Path(tmp) / "averaged")
        meta = _read_meta(source)
        if meta["config"].get("head") == "mlp":
            raise ValueError("an MLP head has no plain transformers equivalent, so a merged checkpoint would reload with "
                             "a random head; keep the arenapref model directory, or train with head: linear")
        model = _load_for_merge(source, meta)
        if model.config.finetune == "lora":
            model.model_ = model.model_.merge_and_unload()
        model.config = model.config.model_copy(update={"finetune": "full"})
        model.train_report_ = {"merged_from": [str(d) for d in dirs]}
        return model.save(output)


def merge_command(
    model_dirs: List[Path] = typer.Argument(..., help="transformer model directories from `arenapref train`; "
                                            "several (one per fold) are averaged first"),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the merged checkpoint."),
):
    """Merge LoRA weights into the base model (averaging fold models first) and write a plain transformers
    checkpoint that AutoModelForSequenceClassification loads without arenapref."""
    try:
        path = merge_model(model_dirs, output)
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)
    typer.echo(f"wrote a merged checkpoint to {path} (AutoModelForSequenceClassification.from_pretrained loads it; "
               f"`arenapref predict {path} ...` too)")
