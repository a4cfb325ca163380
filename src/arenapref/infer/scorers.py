"""Score functions for the engine over loaded torch models: a sequence classifier's logits, or a causal LM's logits
of label tokens at the last real position. Loading weights is the models' job (models/hf.py)."""

from __future__ import annotations

from typing import Sequence


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
