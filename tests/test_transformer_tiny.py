"""Every architecture's tiny checkpoint (tests/tiny_models.py) loads as a 3-way sequence classifier, and the
transformer family predicts through the inference engine."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import ARCHS  # noqa: E402


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_loads_as_a_three_way_classifier_with_winner_labels(arch, tiny_checkpoints):
    from arenapref.config import TransformerConfig
    from arenapref.data.record import LABELS
    from arenapref.models.hf import load_tokenizer
    from arenapref.models.transformer import load_classifier

    path = tiny_checkpoints(arch)
    tokenizer = load_tokenizer(path)
    assert tokenizer.pad_token_id is not None  # decoders here ship without one
    model, head = load_classifier(str(path), TransformerConfig(model_path=str(path)), tokenizer, torch.float32)
    assert model.config.num_labels == 3
    assert [model.config.id2label[i] for i in range(3)] == list(LABELS)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    first = tokenizer.encode("hello world which answer")
    ids = torch.tensor([first, first[:2] + [tokenizer.pad_token_id] * (len(first) - 2)])
    mask = (ids != tokenizer.pad_token_id).long()
    mask[0] = 1
    assert model(input_ids=ids, attention_mask=mask).logits.shape == (2, 3)


def test_transformer_predictions_run_through_the_engine_and_resume(tmp_path, shared_data, tiny_checkpoints):
    """The transformer family predicts through arenapref.infer: results land batch by batch in a work dir, a
    resumed run reuses them, and a smaller token budget (more, smaller batches) gives the same probabilities."""
    from arenapref.config import TransformerConfig
    from arenapref.data.io import read_pairs
    from arenapref.models import build_model

    records, _ = read_pairs(shared_data / "arena-format" / "quirks.csv")
    import numpy as np

    model_dir = tiny_checkpoints("llama")
    model = build_model(TransformerConfig(model_path=str(model_dir), max_length=96, max_prompt_tokens=32, batch_size=4,
                                          max_steps=1, finetune="full", checkpoint_dir=str(tmp_path / "ck")))
    model.fit(records)
    work = tmp_path / "work"
    first = model.predict_proba(records, options=model.engine_options(work_dir=work, token_budget=512, progress=False))
    assert (work / "manifest.json").exists()
    again = model.predict_proba(records, options=model.engine_options(work_dir=work, resume=True, progress=False))
    np.testing.assert_allclose(again, first, atol=1e-6)
    small = model.predict_proba(records, options=model.engine_options(token_budget=96, progress=False))
    np.testing.assert_allclose(small, first, atol=1e-5)
    assert first.shape == (len(records), 3)


def test_a_transformer_model_predicts_on_ray_and_is_estimated_on_the_engine(tmp_path, shared_data, tiny_checkpoints):
    """Every sequence family runs on every back-end through the same code: a saved transformer model predicts
    on the ray back-end (actors load its directory) exactly as locally, and `estimate` plans its run batch by
    batch on the engine instead of falling back to timing predict_proba."""
    import json
    import os

    import numpy as np
    import pandas as pd
    from typer.testing import CliRunner

    from arenapref.cli import app

    pytest.importorskip("ray", reason="the ray back-end needs `pip install 'arenapref[ray]'`")
    quirks = shared_data / "arena-format" / "quirks.csv"
    model_dir = tmp_path / "model"
    runner = CliRunner()
    settings = [f"model.model_path={tiny_checkpoints('llama')}", "model.max_length=96", "model.max_prompt_tokens=32",
                "model.batch_size=4", "model.max_steps=1", "model.finetune=full", f"model.checkpoint_dir={tmp_path / 'ck'}"]
    result = runner.invoke(app, ["train", str(quirks), "-m", "transformer", "-o", str(model_dir),
                                 *[x for s in settings for x in ("--set", s)]])
    assert result.exit_code == 0, result.output
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert runner.invoke(app, ["predict", str(model_dir), str(quirks), "-o", str(local)]).exit_code == 0
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    result = runner.invoke(app, ["predict", str(model_dir), str(quirks), "-o", str(on_ray), "--backend", "ray",
                                 "--work-dir", str(tmp_path / "ray-parts"), "--token-budget", "200"])
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    stored = np.concatenate([pq.read_table(f).column("row").to_numpy()
                             for f in sorted((tmp_path / "ray-parts" / "shards").rglob("*.parquet"))])
    assert len(np.unique(stored)) == len(stored) > 0  # the actors' results went to the work dir, each row once
    a, b = pd.read_csv(local), pd.read_csv(on_ray)
    assert a["id"].tolist() == b["id"].tolist()
    np.testing.assert_allclose(b.iloc[:, 1:].to_numpy(), a.iloc[:, 1:].to_numpy(), atol=1e-6)
    result = runner.invoke(app, ["estimate", str(model_dir), str(quirks), "--timed-rows", "4", "--json"])
    assert result.exit_code == 0, result.output
    est = json.loads(result.stdout)
    assert est["batches"] > 0 and est["padded_tokens"] > 0 and est["tokens_per_second"] > 0
    assert not any("does not use the engine" in n or "predicts directly" in n for n in est["notes"])
