"""LoRA fine-tuning of a judge with the Hugging Face Trainer: the loss is read at the answer position only."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import Sequence

import numpy as np
import torch
from transformers import Trainer, TrainingArguments, set_seed

from arenapref.data.record import swap_labels
from arenapref.infer.scorers import label_logits
from arenapref.train.trainer import GroupedSampler, PairCollator, PairDataset, interleave, mixed_precision, soft_cross_entropy


class JudgeTrainer(Trainer):
    """`loss: labels`: cross-entropy of the targets against the softmax over the three label tokens (what prediction
    reads); `loss: vocab`: against the label tokens' probabilities under the whole vocabulary."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean: the Trainer divides it for accumulation

    def __init__(self, *args, label_token_ids: Sequence[int], loss: str = "labels", group_size: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_token_ids, self.loss_kind, self.group_size = list(label_token_ids), loss, group_size

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids, mask, targets = inputs["input_ids"], inputs["attention_mask"], inputs["targets"]
        if self.loss_kind == "labels":
            logits = label_logits(model, ids, mask, self.label_token_ids)
            loss = soft_cross_entropy(logits, targets)
        else:
            logits = torch.log_softmax(label_logits(model, ids, mask), dim=-1)[:, self.label_token_ids]
            loss = -(targets * logits).sum(-1).mean()
        return (loss, {"logits": logits}) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return GroupedSampler(len(dataset), self.group_size, self.args.seed)


def train_lora(base, forward: Sequence[Sequence[int]], swapped: Sequence[Sequence[int]] | None, y: np.ndarray, config,
               formatter, progress=None):
    """LoRA adapters on `base` trained on token ids of each pair (and its swap, in the same step); returns the
    PEFT model in eval mode and a short training report."""
    try:
        import peft
    except ImportError:
        raise ImportError("LoRA fine-tuning needs peft: pip install 'arenapref[transformer]'") from None
    from arenapref.progress import interactive

    if config.swap_augment and config.batch_size % 2:
        raise ValueError(f"batch_size={config.batch_size}: a pair and its swap share a step, so use an even batch size")
    set_seed(config.seed)
    if config.quantization != "none":
        base = peft.prepare_model_for_kbit_training(base, use_gradient_checkpointing=config.gradient_checkpointing)
    lora = peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
                           lora_dropout=config.lora_dropout, target_modules=config.target_modules)
    model = peft.get_peft_model(base, lora)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()  # trainable weights in fp32 over a half-precision base
    if swapped is not None:
        data = PairDataset(interleave(forward, swapped), np.asarray(interleave(list(y), list(swap_labels(y)))))
    else:
        data = PairDataset(forward, y)
    show = interactive() if progress is None else bool(progress)
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    with tempfile.TemporaryDirectory(prefix="arenapref-judge-") as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=config.batch_size,
            gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
            weight_decay=config.weight_decay, num_train_epochs=config.epochs, max_steps=config.max_steps,
            lr_scheduler_type=config.scheduler,
            warmup_steps=float(config.warmup_ratio) if config.warmup_ratio < 1 else int(config.warmup_ratio),
            logging_steps=config.logging_steps, save_strategy="no", report_to="none", disable_tqdm=not show,
            seed=config.seed, data_seed=config.seed, remove_unused_columns=False, label_names=["targets"],
            dataloader_pin_memory=torch.cuda.is_available(), **{checkpointing: config.gradient_checkpointing},
            **mixed_precision(config.precision))
        trainer = JudgeTrainer(model=model, args=args, train_dataset=data,
                               data_collator=PairCollator(formatter.tokenizer.pad_token_id),
                               label_token_ids=formatter.label_token_ids, loss=config.loss,
                               group_size=2 if swapped is not None else 1)
        start = time.perf_counter()
        trainer.train()
    report = {"global_step": trainer.state.global_step, "train_rows": len(data), "seconds": time.perf_counter() - start,
              "log_history": trainer.state.log_history}
    return trainer.model.eval(), report
