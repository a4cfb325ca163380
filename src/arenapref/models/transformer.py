"""`transformer`: a cross-encoder over prompt + A + B as one sequence, with a 3-way head.

Any checkpoint that AutoModelForSequenceClassification can load from a local directory (BERT/MiniLM,
DeBERTa-v2/v3, Llama, Gemma-2, Qwen2, Mistral, Phi), trained with LoRA (peft) or fully through the Hugging Face
Trainer (train/trainer.py, via models/hf.py); input formatting is text/format.py. Prediction runs on the engine
(models/base.SequenceModel).

A saved model is a directory: arenapref.json and config.yaml (resolved config, label order), format.json (the
input format, label map, head), the tokenizer, and either `adapter/` (LoRA weights with the head; the base
weights are read from `model_path`) or, after full fine-tuning or `merge` (models/merge.py), a plain
transformers checkpoint at the top level that AutoModelForSequenceClassification loads without arenapref.

A checkpoint directory may also hold no weights but `random_init.json` (`write_random_checkpoint`): the architecture
of its config.json is then built with random weights from a fixed seed, directly on the device, every time it is
loaded. That is for measuring speed and memory at real sizes (a 9B model) without a download; such a model's
predictions mean nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from arenapref.data.record import LABELS, PairRecord, hard_labels
from arenapref.errors import ConfigError, ModelDirError, UsageError
from arenapref.models import hf
from arenapref.models.base import SequenceModel
from arenapref.text.format import InputFormat, PairFormatter, summarize_cuts

FORMAT_FILE = "format.json"
ADAPTER_DIR = "adapter"
RANDOM_INIT_FILE = "random_init.json"  # marks a checkpoint without weights, built from config.json with random weights
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pth", "*.pt", "*.gguf")
TRAIN_REPORT = "training_report.json"
HEAD_NAMES = ("score", "classifier")  # decoder-style and encoder-style sequence-classification heads


def input_format(config) -> InputFormat:
    return InputFormat(template=config.template, max_length=config.max_length, max_prompt_tokens=config.max_prompt_tokens,
                       max_response_tokens=config.max_response_tokens, prompt_weight=config.prompt_weight,
                       min_turn_tokens=config.min_turn_tokens)


def resolve_model_path(config) -> str:
    if config.model_path:
        path = Path(config.model_path).expanduser()
        if not path.is_dir():
            raise ModelDirError(f"model_path {config.model_path!r} is not a directory; runs are offline, so point it at "
                                "a local checkpoint")
        return str(path.resolve())
    from arenapref.models.embed import default_encoder_path

    return str(Path(default_encoder_path()).resolve())


def find_head(model) -> str:
    import torch.nn as nn

    for name in HEAD_NAMES:
        module = getattr(model, name, None)
        if isinstance(module, (nn.Linear, nn.Sequential)):
            return name
    raise UsageError(f"{type(model).__name__}: no linear classification head named {' or '.join(HEAD_NAMES)}; "
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


def load_classifier(path: str, config, tokenizer, dtype, quantize: bool = True, device: str | None = None):
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
    quant = hf.quantization_config(config.quantization, device or hf.default_device()) if quantize else None
    if quant is not None:
        kwargs |= {"quantization_config": quant, "device_map": {"": device or hf.default_device()}}
    if (Path(path) / RANDOM_INIT_FILE).is_file():
        model = _random_classifier(Path(path), kwargs, device)
    else:
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


def write_random_checkpoint(directory: str | Path, model_config, tokenizer, seed: int = 0) -> Path:
    """A checkpoint directory without weights: `model_config` (a transformers config) as config.json, the tokenizer,
    and random_init.json. Every load of it (training on it, reloading a LoRA model trained on it, merging one) builds
    the same random weights from `seed`, on the target device, with nothing read or materialised on the CPU: for
    measuring speed and memory at real architecture sizes. Its predictions mean nothing."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_config.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    (directory / RANDOM_INIT_FILE).write_text(json.dumps({
        "seed": int(seed), "note": "random weights, built from config.json at every load (arenapref "
                                   "write_random_checkpoint): for speed and memory measurements only"}, indent=2),
        encoding="utf-8")
    return directory


def _random_classifier(path: Path, kwargs: dict, device: str | None):
    """The architecture of `path`'s config.json with the 3-way head, random weights from random_init.json's seed,
    built directly on `device` in the requested dtype (from_pretrained's kwargs)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    weights = sorted(f.name for pattern in WEIGHT_FILES for f in path.glob(pattern))
    if weights:
        raise ModelDirError(f"{path}: holds weights ({weights[0]}) and {RANDOM_INIT_FILE}, which says to use random "
                            f"weights instead; remove one of them")
    if kwargs.get("quantization_config") is not None:
        raise ConfigError(f"{path} is a random-weight checkpoint ({RANDOM_INIT_FILE}), which cannot be loaded 8-/4-bit: "
                          "use quantization: none, or save the random model with save_pretrained and load that")
    try:
        seed = int(json.loads((path / RANDOM_INIT_FILE).read_text(encoding="utf-8")).get("seed", 0))
    except (OSError, ValueError, AttributeError) as e:
        raise ModelDirError(f"{path / RANDOM_INIT_FILE}: unreadable ({e}); write it with write_random_checkpoint") from None
    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    config.num_labels = 3
    config.id2label, config.label2id = kwargs["id2label"], kwargs["label2id"]
    config.problem_type = kwargs["problem_type"]
    if "pad_token_id" in kwargs:
        config.pad_token_id = kwargs["pad_token_id"]
    dtype = kwargs.get("dtype")
    if dtype in (None, "auto"):
        dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dev = torch.device(device or hf.local_device())
    # a seed of its own, so every load builds the same weights whatever the caller's random state
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else [],
                               device_type=dev.type if dev.type == "cuda" else "cuda"):
        torch.manual_seed(seed)
        with torch.device(dev):
            return AutoModelForSequenceClassification.from_config(config, dtype=dtype)


def keep_whole_modules(model, head: str) -> list[str]:
    """Trained in full next to LoRA: the head, and a pooler if the model has one (DeBERTa's is newly initialised)."""
    names = [head]
    if any(n.split(".")[-1] == "pooler" for n, _ in model.named_modules()):
        names.append("pooler")
    return names


def add_lora(model, config, head: str):
    return hf.attach_lora(model, config, "SEQ_CLS", keep_whole_modules(model, head))


class TransformerModel(SequenceModel):
    family = "transformer"

    def __init__(self, config):
        super().__init__(config)
        self.model_ = None
        self.tokenizer_ = None
        self.head_: str | None = None
        self.checkpoints_ = None  # the fine-tuning run whose checkpoints are removed once the model is saved

    def _is_fitted(self) -> bool:
        return self.model_ is not None

    # --- training -------------------------------------------------------------------------------------
    def _fit(self, records: list[PairRecord], progress, eval_records: Sequence[PairRecord] | None = None,
             callbacks: Sequence = ()) -> None:
        """Fine-tunes on `records` (each with its A/B swap in the same step when swap_augment). Eval log loss every
        eval_steps on `eval_records` or on an eval_fraction of the prompts; checkpoints every save_steps."""
        hf.require_torch(self.family)
        import torch
        from transformers import set_seed

        from arenapref.progress import interactive

        config = self.config
        path = resolve_model_path(config)
        self.config = config = config.model_copy(update={"model_path": path})
        if eval_records is None:
            records, eval_records = hf.holdout_split(records, config.eval_fraction)
        set_seed(config.seed)
        self.tokenizer_ = hf.load_tokenizer(path)
        dtype = hf.device_dtype(hf.default_device(), config.precision) if config.finetune == "lora" else torch.float32
        with hf.quiet_transformers():  # the checkpoint has no 3-way head: a new one is expected here
            model, self.head_ = load_classifier(path, config, self.tokenizer_, dtype)
        if config.finetune == "lora":
            model = add_lora(model, config, self.head_)
        formatter = PairFormatter(self.tokenizer_, input_format(config))
        pairs = formatter.format(records)
        swapped = [p.input_ids for p in formatter.format([r.swapped() for r in records])] if config.swap_augment else None
        eval_ids = [p.input_ids for p in formatter.format(eval_records)] if eval_records else None
        eval_targets = np.eye(3)[hard_labels(eval_records)] if eval_records else None
        run = hf.fine_tune(model, records, [p.input_ids for p in pairs], swapped, eval_ids, eval_targets, config,
                           self.tokenizer_.pad_token_id, interactive() if progress is None else bool(progress),
                           callbacks=callbacks)
        self.model_ = run.trainer.model
        self.model_.eval()
        self.checkpoints_ = run
        self.train_report_ = run.report | {"truncation": summarize_cuts([p.cut for p in pairs])}

    # --- the sequence kind ----------------------------------------------------------------------------
    def formatter(self) -> PairFormatter:
        return PairFormatter(self.tokenizer_, input_format(self.config))

    def sequences(self, records, swap):
        fmt = self.formatter()
        forward = [p.input_ids for p in fmt.format(records)]
        return forward, ([p.input_ids for p in fmt.format([r.swapped() for r in records])] if swap else None)

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer_.pad_token_id

    def score_function(self, device: str | None = None, quantization: str | None = None):
        from arenapref.infer.scorers import sequence_classifier_score

        if quantization not in (None, "none", self.config.quantization):
            hf.quantization_config(quantization, device or hf.default_device())  # a DeviceError off CUDA
            if self.directory_ is None:
                raise UsageError(f"save the transformer model first: {quantization} weights are loaded from its directory")
            self._load_state(self.directory_, device=device, quantization=quantization)
        elif device is not None and self.config.quantization == "none":
            self.model_.to(device)
        return sequence_classifier_score(self.model_)

    def fingerprint_key(self) -> str:
        """The config and the head's weights, which every training run changes."""
        digest = hashlib.blake2b(digest_size=12)
        digest.update(json.dumps(self.config.model_dump(mode="json"), sort_keys=True).encode())
        for name, tensor in sorted(self.model_.state_dict().items()):
            if any(h in name for h in HEAD_NAMES):
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()

    def vllm_spec(self) -> dict:
        if self.config.finetune == "lora" or self.directory_ is None:
            raise UsageError("the vllm back-end reads a plain sequence-classification checkpoint: save the model and "
                             "merge its LoRA weights first (`arenapref merge MODEL -o MERGED`), then predict MERGED")
        return {"model": str(self.directory_), "mode": "classify"}

    # --- saving ---------------------------------------------------------------------------------------
    def save(self, directory, extra_files=None) -> Path:
        """Under torchrun every process holds the same trained model: the first writes, the others wait."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return super().save(directory, extra_files)
        if dist.get_rank() == 0:
            super().save(directory, extra_files)
        dist.barrier()
        self.directory_ = Path(directory)
        return Path(directory)

    def _save_state(self, directory: Path) -> None:
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

    def _load_state(self, directory: Path, trust_pickle: bool = False, dtype=None, device=None,
                    quantization: str | None = None) -> None:
        """Weights from `directory` (LoRA: the base from model_path plus the adapter); `quantization` loads them
        8-/4-bit on CUDA instead of the config's setting."""
        hf.require_torch(self.family)
        if not (directory / FORMAT_FILE).is_file():
            raise ModelDirError(f"{directory}: {FORMAT_FILE} is missing; the model directory is incomplete")
        saved = json.loads((directory / FORMAT_FILE).read_text(encoding="utf-8"))
        if tuple(saved["labels"]) != LABELS:
            raise ModelDirError(f"{directory}: saved label order {saved['labels']} differs from {list(LABELS)}")
        dev = device or hf.default_device()
        dtype = dtype or hf.device_dtype(dev, self.config.precision)
        config = self.config if quantization is None else self.config.model_copy(update={"quantization": quantization})
        self.tokenizer_ = hf.load_tokenizer(directory)
        if self.config.finetune == "lora":
            peft = hf.require_peft()
            if not Path(self.config.model_path or "").is_dir():
                raise ModelDirError(f"{directory}: the LoRA adapter needs its base checkpoint at {self.config.model_path!r}, "
                                    "which is not there; copy it back or merge the model (`arenapref merge`) where it is")
            with hf.quiet_transformers():
                base, self.head_ = load_classifier(self.config.model_path, config, self.tokenizer_, dtype, device=dev)
            self.model_ = peft.PeftModel.from_pretrained(base, str(directory / ADAPTER_DIR), is_trainable=False)
        else:
            with hf.quiet_transformers():
                self.model_, self.head_ = load_classifier(str(directory), config, self.tokenizer_, dtype,
                                                          quantize=quantization is not None, device=dev)
            if self.config.head == "mlp":
                _load_head_weights(self.model_, directory, self.head_)
        if str(dev).startswith("cuda") and config.quantization == "none":
            self.model_.to(dev)
        self.model_.eval()


def _load_head_weights(model, directory: Path, head: str) -> None:
    """An MLP head is not a stock transformers head, so from_pretrained skips its weights: read them here."""
    from safetensors.torch import load_file

    state = {}
    for file in sorted(Path(directory).glob("*.safetensors")):
        state |= {k[len(head) + 1:]: v for k, v in load_file(str(file)).items() if k.startswith(head + ".")}
    if not state:
        raise ModelDirError(f"{directory}: no weights for the MLP head {head!r}")
    getattr(model, head).load_state_dict(state)
