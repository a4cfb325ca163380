"""A checkpoint directory without weights (`write_random_checkpoint`): the transformer family builds its architecture
with the same random weights at every load, so a LoRA model trained on it saves, reloads and merges like one trained
on a real checkpoint (what scripts/bench_gpu_train.py relies on at 9B size)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from arenapref.data.record import PairRecord  # noqa: E402


def tiny_random_dir(tmp_path, seed=0):
    from tiny_models import decoder_tokenizer
    from transformers import LlamaConfig

    from arenapref.models.transformer import write_random_checkpoint

    tokenizer = decoder_tokenizer(chat=False)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, vocab_size=len(tokenizer),
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return write_random_checkpoint(tmp_path / "random", config, tokenizer, seed=seed)


def pairs(n=8):
    words = "the sea is blue and deep its waves never sleep write a poem about code numbers".split()
    rng = np.random.default_rng(0)
    text = lambda k: " ".join(rng.choice(words, size=k))  # noqa: E731
    return [PairRecord(id=f"r{i}", prompt=(text(6),), response_a=(text(10 + i),), response_b=(text(4 + 2 * i),),
                       label=i % 3) for i in range(n)]


def lora_config(path, **extra):
    from arenapref.config import TransformerConfig

    return TransformerConfig(**({"model_path": str(path), "finetune": "lora", "lora_r": 4, "max_length": 64,
                                 "max_prompt_tokens": 16, "batch_size": 4, "max_steps": 2, "learning_rate": 1e-2,
                                 "save_steps": 1000, "checkpoint_dir": str(path.parent / "ck")} | extra))


def test_a_random_checkpoint_has_no_weights_and_builds_the_same_model_at_every_load(tmp_path):
    from arenapref.config import TransformerConfig
    from arenapref.models.hf import load_tokenizer
    from arenapref.models.transformer import RANDOM_INIT_FILE, load_classifier

    path = tiny_random_dir(tmp_path, seed=3)
    assert not list(path.glob("*.safetensors")) and json.loads((path / RANDOM_INIT_FILE).read_text())["seed"] == 3
    tokenizer = load_tokenizer(path)
    config = TransformerConfig(model_path=str(path))
    torch.manual_seed(123)
    first, head = load_classifier(str(path), config, tokenizer, torch.float32, device="cpu")
    torch.manual_seed(456)  # the caller's random state does not matter
    second, _ = load_classifier(str(path), config, tokenizer, torch.float32, device="cpu")
    assert head == "score" and first.config.num_labels == 3
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert first.model.layers[0].self_attn.q_proj.weight.std() > 0  # initialised, not zeros


def test_lora_on_a_random_checkpoint_saves_reloads_and_merges_with_the_same_predictions(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from arenapref.models import build_model, load_model
    from arenapref.models.merge import merge_model
    from arenapref.models.transformer import RANDOM_INIT_FILE

    path = tiny_random_dir(tmp_path)
    records = pairs()
    model = build_model(lora_config(path)).fit(records, progress=False)
    before = model.predict_proba(records)
    model.save(tmp_path / "lora")
    again = load_model(tmp_path / "lora").predict_proba(records)
    np.testing.assert_allclose(again, before, atol=1e-6)

    merged = merge_model([tmp_path / "lora"], tmp_path / "merged")
    assert list(merged.glob("*.safetensors")) and not (merged / RANDOM_INIT_FILE).exists()
    np.testing.assert_allclose(load_model(merged).predict_proba(records), before, atol=1e-5)
    plain = AutoModelForSequenceClassification.from_pretrained(str(merged))  # a plain checkpoint, without arenapref
    assert plain.config.num_labels == 3


def test_a_random_checkpoint_refuses_weights_beside_it_and_quantized_loading(tmp_path):
    from arenapref.errors import ConfigError, ModelDirError
    from arenapref.models.hf import load_tokenizer
    from arenapref.models.transformer import _random_classifier, load_classifier

    path = tiny_random_dir(tmp_path)
    tokenizer = load_tokenizer(path)
    kwargs = {"id2label": {}, "label2id": {}, "problem_type": "single_label_classification", "dtype": torch.float32}
    with pytest.raises(ConfigError, match="random-weight checkpoint"):
        _random_classifier(path, kwargs | {"quantization_config": object()}, "cpu")
    (path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelDirError, match="random_init.json"):
        load_classifier(str(path), lora_config(path), tokenizer, torch.float32, device="cpu")
