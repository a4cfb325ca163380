"""The `vllm` back-end (optional; vLLM pins its own torch, so it lives in its own environment: docs/vllm.md).

- mode "classify": a sequence-classification checkpoint (e.g. a merged `transformer` model) through vLLM's
  pooling runner, `LLM.classify`; the outputs are class probabilities.
- mode "judge": a causal LM generates one token, restricted to the label tokens, with their log-probabilities;
  P(A), P(B), P(tie) is the softmax over those three.

The engine hands over token ids, so vLLM never tokenizes (skip_tokenizer_init). vLLM schedules its own batches
(continuous batching); rows are sent in chunks so each chunk's results reach the work dir as it finishes.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from arenapref.errors import MissingExtraError
from arenapref.infer.batching import length_order
from arenapref.infer.options import EngineOptions

MODES = ("judge", "classify")


def need_vllm():
    try:
        import vllm
    except ImportError:
        raise MissingExtraError("the vllm back-end needs vLLM, which pins its own torch: install it in a separate "
                          "environment as docs/vllm.md describes") from None
    return vllm


def _logprob_value(entry: Any) -> float:
    """vLLM returns Logprob objects (with .logprob); plain floats are accepted too."""
    return float(getattr(entry, "logprob", entry))


def label_logprobs(step_logprobs: Sequence[dict | None], label_token_ids: Sequence[int]) -> np.ndarray:
    """(rows, labels) log-probabilities from one generated step per row (`{token_id: Logprob}` dicts).

    A label token missing from a row's dict is given the smallest log-probability the row has: vLLM returns the
    top tokens, so a missing one is at most that likely. A row with none of them is uniform.
    """
    out = np.empty((len(step_logprobs), len(label_token_ids)))
    for i, step in enumerate(step_logprobs):
        values = {int(t): _logprob_value(v) for t, v in (step or {}).items()}
        finite = [v for v in values.values() if math.isfinite(v)]
        floor = min(finite) if finite else 0.0
        for k, tok in enumerate(label_token_ids):
            v = values.get(int(tok))
            out[i, k] = v if v is not None and math.isfinite(v) else floor
    return out


def first_step_logprobs(request_outputs) -> list[dict | None]:
    """The logprob dict of the first generated token of each `RequestOutput` from `LLM.generate`."""
    steps = []
    for req in request_outputs:
        completion = req.outputs[0]
        steps.append(completion.logprobs[0] if completion.logprobs else None)
    return steps


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, mode: str = "judge", label_token_ids: Sequence[int] | None = None,
                 options: EngineOptions | None = None, lora_path: str | None = None, chunk_rows: int = 2048,
                 llm: Any = None, sampling_params: Callable | None = None, **llm_kwargs):
        if mode not in MODES:
            raise ValueError(f"vllm mode {mode!r}: choose one of {MODES}")
        if mode == "judge" and not label_token_ids:
            raise ValueError("a judge on vllm needs the label token ids")
        self.model, self.mode = model, mode
        self.label_token_ids = [int(t) for t in (label_token_ids or [])]
        self.options = options or EngineOptions(backend="vllm")
        self.lora_path, self.chunk_rows = lora_path, chunk_rows
        self.llm_kwargs = llm_kwargs
        self._llm = llm  # tests pass stand-ins for vllm.LLM and vllm.SamplingParams
        self._sampling_params = sampling_params
        self.outputs = "logprobs" if mode == "judge" else "probs"

    def llm(self):
        if self._llm is None:
            vllm = need_vllm()
            kwargs = dict(model=self.model, skip_tokenizer_init=True, max_num_batched_tokens=self.options.token_budget)
            if self.mode == "classify":
                kwargs["runner"] = "pooling"
            else:
                # log-probabilities after the allowed-token mask: exactly the three label tokens, renormalised
                kwargs |= dict(logprobs_mode="processed_logprobs", max_logprobs=max(len(self.label_token_ids), 20))
            if self.options.quantization in ("8bit", "4bit"):
                kwargs["quantization"] = "bitsandbytes"
            if self.lora_path:
                kwargs["enable_lora"] = True
            self._llm = vllm.LLM(**(kwargs | self.llm_kwargs))
        return self._llm

    def _sampling(self):
        make = self._sampling_params
        if make is None:
            from vllm import SamplingParams as make
        return make(max_tokens=1, temperature=0.0, logprobs=len(self.label_token_ids),
                    allowed_token_ids=self.label_token_ids, detokenize=False)

    def _lora_request(self):
        if not self.lora_path:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest("arenapref-judge", 1, self.lora_path)

    def score_chunk(self, prompts: list[dict]) -> np.ndarray:
        llm = self.llm()
        if self.mode == "classify":
            outs = llm.classify(prompts, use_tqdm=False)
            return np.array([o.outputs.probs for o in outs], dtype=np.float64)
        sampling = self._sampling()
        kwargs = {"use_tqdm": False}
        if self.lora_path:
            kwargs["lora_request"] = self._lora_request()
        outs = llm.generate(prompts, sampling, **kwargs)
        return label_logprobs(first_step_logprobs(outs), self.label_token_ids)

    def run(self, sequences: Sequence[Sequence[int]], rows: np.ndarray, sink: Callable) -> None:
        order = length_order(sequences, rows.tolist())  # similar lengths together help vLLM's scheduler a little
        for start in range(0, len(order), self.chunk_rows):
            chunk = order[start:start + self.chunk_rows]
            prompts = [{"prompt_token_ids": [int(t) for t in sequences[i]]} for i in chunk]
            sink(chunk, self.score_chunk(prompts))
