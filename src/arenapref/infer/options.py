"""What a prediction run on the engine is asked to do (`EngineOptions`), and the picklable recipe a worker
process or Ray actor uses to build a score function (`ScorerFactory`). No model code here."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from arenapref.errors import UsageError

BACKENDS = ("transformers", "vllm", "ray")
QUANTIZATION = ("none", "8bit", "4bit")


@dataclass
class EngineOptions:
    """How a prediction run is executed; none of these change the predictions (up to float rounding)."""

    token_budget: int = 16384  # padded tokens per batch: rows x longest row
    max_batch_rows: int = 256
    work_dir: str | Path | None = None  # results written here batch by batch; None: kept in memory only
    resume: bool = False  # continue from the results in work_dir instead of starting over
    backend: str = "transformers"
    devices: list[str] | None = None  # None: every CUDA GPU, else the CPU
    quantization: str | None = None  # "8bit" / "4bit" weights (CUDA + bitsandbytes); None: the model's setting
    progress: bool | None = None  # None: when stderr is a terminal
    description: str = "predict"
    ray_address: str | None = None  # None: a local Ray cluster on 127.0.0.1 (or the one already initialised)
    ray_workers: int | None = None  # actors; None: one per GPU, or one on CPU
    ray_rows_per_block: int = 256
    stats: dict = field(default_factory=dict)  # filled by the run: batches, oom_splits, seconds

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise UsageError(f"backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.token_budget < 1 or self.max_batch_rows < 1:
            raise UsageError("token_budget and max_batch_rows must be positive")
        if self.quantization not in (None, *QUANTIZATION):
            raise UsageError(f"quantization {self.quantization!r}: choose one of {', '.join(QUANTIZATION)}")
        if self.resume and self.work_dir is None:
            raise UsageError("resume needs a work dir: the results of the earlier run are read from there")


ScoreFn = Callable[..., "object"]  # (input_ids, attention_mask) int64 CPU tensors -> (rows, k) tensor


class ScorerFactory(ABC):
    """A picklable recipe for a score function on one device, for worker processes and Ray actors, which
    cannot receive a loaded model. Subclasses set `outputs` and implement `build`."""

    outputs = "logits"

    @abstractmethod
    def build(self, device: str) -> ScoreFn: ...


def resolve_devices(devices: Sequence[str] | None) -> list[str]:
    if devices:
        return list(devices)
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


