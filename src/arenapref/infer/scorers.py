"""Score functions for the engine: a sequence classifier's logits, or a causal LM's logits of label tokens at the
last position; device, dtype and 8-bit/4-bit loading."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from arenapref.infer.engine import ScorerFactory


def device_dtype(device: str, precision: str = "auto"):
    """bf16 (or fp16) weights on CUDA, fp32 on CPU."""
    import torch

    if not str(device).startswith("cuda") or precision == "fp32":
        return torch.float32
    if precision == "fp16" or (precision == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def quantization_config(kind: str | None, device: str = "cuda"):
    """A BitsAndBytesConfig for 8-bit or 4-bit (NF4) weights; None for "none". bitsandbytes is imported only here."""
    if kind in (None, "none"):
        return None
    import torch

    if kind not in ("8bit", "4bit"):
        raise ValueError(f"quantization {kind!r}: choose none, 8bit or 4bit")
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        raise RuntimeError(f"{kind} weights need a CUDA GPU and bitsandbytes; on CPU run without quantization")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ImportError(f"{kind} weights need bitsandbytes: pip install 'arenapref[qlora]'") from None
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=device_dtype(device))


def model_device(model):
    return next(model.parameters()).device


def sequence_classifier_score(model):
    """score(input_ids, attention_mask) -> logits of an AutoModelForSequenceClassification (or a PEFT wrapper)."""
    device = model_device(model)
    model.eval()

    def score(input_ids, attention_mask):
        return model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits.float()

    return score


def label_logits(model, input_ids, attention_mask, label_token_ids: Sequence[int] | None = None):
    """Logits of `label_token_ids` (None: the whole vocabulary) as the next token after the last real (non-pad)
    token of each right-padded row.

    Runs the decoder, then the output layer on one position per row only: the full-vocabulary logits of every
    position would cost rows x length x vocabulary floats.
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wrappers
    last = (attention_mask.sum(dim=1) - 1).clamp(min=0)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    try:
        decoder = base.get_decoder()
    except (AttributeError, NotImplementedError):
        decoder = None
    if decoder is not None and decoder is not base:
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = base.get_output_embeddings()(hidden[rows, last])
        cap = getattr(base.config.get_text_config(), "final_logit_softcapping", None)  # Gemma-2
        if cap:
            logits = torch.tanh(logits / cap) * cap
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[rows, last]
    return (logits if label_token_ids is None else logits[:, list(label_token_ids)]).float()


def causal_label_score(model, label_token_ids: Sequence[int]):
    """score(input_ids, attention_mask) -> (rows, 3) label-token logits of a causal LM."""
    device = model_device(model)
    model.eval()
    ids = list(label_token_ids)

    def score(input_ids, attention_mask):
        return label_logits(model, input_ids.to(device), attention_mask.to(device), ids)

    return score


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

        torch.manual_seed(self.seed)
        quant = quantization_config(self.quantization, device)
        kwargs = {"quantization_config": quant, "device_map": {"": device}} if quant else {}
        model = AutoModelForSequenceClassification.from_pretrained(
            self.path, num_labels=self.num_labels, dtype=device_dtype(device, self.precision), local_files_only=True, **kwargs)
        if not quant:
            model.to(device)
        return sequence_classifier_score(model)


@dataclass
class SavedModelFactory(ScorerFactory):
    """Any saved arenapref model directory whose model has `score_function(device, quantization)`: workers and
    Ray actors load the directory themselves."""

    model_dir: str
    quantization: str | None = None
    outputs = "logits"

    def build(self, device: str):
        from arenapref.models import load_model

        return load_model(self.model_dir).score_function(device, self.quantization)
