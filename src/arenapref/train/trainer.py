"""The Hugging Face Trainer, fitted to pair classification.

- targets are probability vectors (soft labels, one-hot otherwise) under the key `targets`, and the loss is soft
  cross-entropy (with optional label smoothing while training); eval reports log loss and accuracy;
- "full swap": row 2i is a pair and row 2i+1 its A/B swap; `GroupedSampler` shuffles whole groups, so with an
  even batch size both orders always share a batch, hence an optimizer step;
- the sampler's order depends only on (seed, epoch), so a resumed run skips exactly the batches it already did;
- a checkpoint counts only once it is complete: a marker file is written after the Trainer has saved everything,
  and `--resume` takes the newest checkpoint with a marker (one cut short by a kill is removed, not resumed).

Both sequence families train here: the cross-encoder reads the head's logits, the judge the logits of its label
tokens (`loss_fn`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from transformers import (
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from arenapref.errors import ConfigError, DeviceError
from arenapref.metrics import accuracy, log_loss


class PairDataset(Dataset):
    """Token ids and a target probability vector per row."""

    def __init__(self, input_ids: Sequence[Sequence[int]], targets: np.ndarray):
        if len(input_ids) != len(targets):
            raise ValueError(f"{len(input_ids)} inputs but {len(targets)} targets")
        self.input_ids = [list(x) for x in input_ids]
        self.targets = np.asarray(targets, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "targets": self.targets[i]}

    def n_tokens(self) -> int:
        return sum(map(len, self.input_ids))


def interleave(first: Sequence, second: Sequence) -> list:
    """[first[0], second[0], first[1], second[1], ...]: a pair followed by its swap."""
    if len(first) != len(second):
        raise ValueError("both orders need the same number of rows")
    return [x for both in zip(first, second) for x in both]


class GroupedSampler(Sampler[int]):
    """Shuffles groups of `group_size` adjacent rows and keeps each group's rows together and in order.

    The permutation depends only on seed and epoch (the Trainer calls `set_epoch`), which makes a resumed run
    see the same order and skip exactly the batches that were already trained on.
    """

    def __init__(self, n_rows: int, group_size: int = 1, seed: int = 0):
        if n_rows % group_size:
            raise ValueError(f"{n_rows} rows do not split into groups of {group_size}")
        self.n_rows, self.group_size, self.seed, self.epoch = n_rows, group_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        for group in torch.randperm(self.n_rows // self.group_size, generator=g).tolist():
            yield from range(group * self.group_size, (group + 1) * self.group_size)

    def __len__(self) -> int:
        return self.n_rows


class PairCollator:
    """Right-pads a batch to its longest row; targets become a float tensor."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r["input_ids"])] = torch.as_tensor(r["input_ids"], dtype=torch.long)
            mask[i, :len(r["input_ids"])] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if "targets" in rows[0]:
            batch["targets"] = torch.as_tensor(np.stack([r["targets"] for r in rows]), dtype=torch.float32)
        return batch


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean over rows of -sum_k t_k log p_k, for targets that are probability vectors."""
    if smoothing:
        targets = (1 - smoothing) * targets + smoothing / targets.shape[-1]
    return -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def eval_metrics(prediction) -> dict[str, float]:
    logits = np.asarray(prediction.predictions, dtype=np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    targets = np.asarray(prediction.label_ids, dtype=np.float64)
    return {"log_loss": log_loss(targets, probs), "accuracy": accuracy(targets, probs)}


def classifier_logits(model, inputs) -> torch.Tensor:
    """A sequence classifier's 3 logits per row (the cross-encoder's loss input)."""
    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits


class PairTrainer(Trainer):
    """The Trainer with soft cross-entropy on `logits_fn(model, inputs)` (default: a classifier's head), and a
    sampler that keeps each pair next to its swap."""

    # compute_loss returns a per-batch mean, so the Trainer divides it for gradient accumulation
    loss_is_scaled_for_ga = False

    def __init__(self, *args, group_size: int = 1, label_smoothing: float = 0.0,
                 logits_fn: Callable = classifier_logits, log_probs: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_size = group_size
        self.label_smoothing = label_smoothing
        self.logits_fn = logits_fn
        self.log_probs = log_probs  # logits_fn returns log-probabilities already (not renormalised over the labels)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logits = self.logits_fn(model, inputs).float()
        smoothing = self.label_smoothing if model.training else 0.0
        if self.log_probs:
            targets = inputs["targets"]
            if smoothing:
                targets = (1 - smoothing) * targets + smoothing / targets.shape[-1]
            loss = -(targets * logits).sum(-1).mean()
        else:
            loss = soft_cross_entropy(logits, inputs["targets"], smoothing)
        return (loss, {"logits": logits}) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return GroupedSampler(len(dataset), self.group_size, self.args.seed)


# --- complete checkpoints -------------------------------------------------------------------------------------
COMPLETE = "arenapref-complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class MarkCompleteCheckpoints(TrainerCallback):
    """Writes a marker into each checkpoint after the Trainer has saved all of it (on_save runs last)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                tmp = folder / (COMPLETE + ".tmp")
                tmp.write_text(json.dumps({"global_step": state.global_step}), encoding="utf-8")
                os.replace(tmp, folder / COMPLETE)
        return control


def checkpoints(directory: Path) -> list[tuple[int, Path, bool]]:
    """(step, folder, complete) of every checkpoint-N folder, newest first."""
    found = []
    for folder in Path(directory).glob("checkpoint-*"):
        m = _CHECKPOINT.match(folder.name)
        if m and folder.is_dir():
            found.append((int(m.group(1)), folder, (folder / COMPLETE).is_file()))
    return sorted(found, reverse=True)


def last_complete_checkpoint(directory: Path) -> Path | None:
    return next((folder for _, folder, complete in checkpoints(directory) if complete), None)


def world_size() -> int:
    """Processes launched together (torchrun / accelerate launch set WORLD_SIZE); 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def mixed_precision(choice: str) -> dict[str, bool]:
    """fp16/bf16 autocast flags for the Trainer: bf16 where the GPU has it, else fp16; none on CPU."""
    if not torch.cuda.is_available():
        if choice in ("fp16", "bf16"):
            raise DeviceError(f"precision {choice!r} needs a CUDA GPU; on CPU use precision: auto or fp32")
        return {}
    if choice == "auto":
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"fp16": choice == "fp16", "bf16": choice == "bf16"}


def training_arguments(config, output_dir: Path, has_eval: bool, progress: bool) -> TrainingArguments:
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    early = config.early_stopping_patience is not None and has_eval
    kwargs = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        lr_scheduler_type=config.scheduler,
        warmup_steps=float(config.warmup_ratio) if config.warmup_ratio < 1 else int(config.warmup_ratio),
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps if has_eval else None,
        save_strategy="steps",
        save_steps=config.save_steps,  # with early stopping a multiple of eval_steps (config.TrainingFields checks)
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=early,
        metric_for_best_model="log_loss" if early else None,
        greater_is_better=False if early else None,
        label_names=["targets"],
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=not progress,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),  # without it, processes under torchrun on CPU train unsynchronised
        ddp_backend=None if torch.cuda.is_available() or world_size() == 1 else "gloo",
        **{checkpointing: config.gradient_checkpointing},
        **mixed_precision(config.precision),
    )
    if config.gradient_checkpointing:
        kwargs[checkpointing + "_kwargs"] = {"use_reentrant": False}
    return TrainingArguments(**kwargs)


def train(model, train_data: PairDataset, eval_data: PairDataset | None, config, output_dir: Path, pad_token_id: int,
          resume: bool = False, callbacks: Sequence = (), progress: bool = False,
          logits_fn: Callable = classifier_logits, log_probs: bool = False) -> PairTrainer:
    """Runs the Trainer; `resume` continues from the newest complete checkpoint in `output_dir` (a fresh start if
    none; incomplete ones, cut short by a kill, are removed), otherwise old checkpoints there are removed so they
    cannot be mistaken for this run's. `trainer.resumed_from` names the checkpoint used, or is None."""
    output_dir = Path(output_dir)
    group_size = 2 if config.swap_augment else 1
    if group_size == 2 and config.batch_size % 2:
        raise ConfigError(f"batch_size={config.batch_size}: full swap puts a pair and its swap in one batch, so use an even batch size")
    last = last_complete_checkpoint(output_dir) if resume and output_dir.is_dir() else None
    if is_main_process() and output_dir.is_dir():
        for _, folder, complete in checkpoints(output_dir):
            if not resume or not complete:
                shutil.rmtree(folder, ignore_errors=True)
    args = training_arguments(config, output_dir, eval_data is not None, progress)
    cbs = [MarkCompleteCheckpoints(), *callbacks]
    if args.load_best_model_at_end:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = PairTrainer(
        model=model, args=args, data_collator=PairCollator(pad_token_id), train_dataset=train_data,
        eval_dataset=eval_data, compute_metrics=eval_metrics if eval_data is not None else None, callbacks=cbs,
        group_size=group_size, label_smoothing=config.label_smoothing, logits_fn=logits_fn, log_probs=log_probs,
    )
    trainer.resumed_from = str(last) if last else None
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    return trainer
