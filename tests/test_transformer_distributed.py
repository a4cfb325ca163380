"""Data-parallel training on CPU: two processes under torchrun with the gloo backend (what a multi-GPU run does
with nccl). Each process trains on its own batches, every batch still holds each pair next to its A/B swap,
the step count is shared, and one process writes the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")


RUNNER = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import numpy as np
    import arenapref.train.trainer as trainer_module
    from arenapref.config import TransformerConfig
    from arenapref.data.io import read_pairs
    from arenapref.data.record import swap_labels
    from arenapref.models import build_model

    out = Path({out!r})
    rank = int(os.environ["RANK"])
    records = read_pairs([Path({data!r}) / "pandalm"])[0][:16]
    real_train = trainer_module.train
    seen = {{}}

    def spy(*args, **kwargs):
        trainer = real_train(*args, **kwargs)
        targets = [b["targets"].numpy() for b in trainer.get_train_dataloader()]
        seen["batches"] = len(targets)
        seen["pairs_together"] = all(np.allclose(t[1::2], swap_labels(t[0::2])) for t in targets)
        seen["world_size"] = trainer.args.world_size
        seen["distributed"] = str(trainer.accelerator.distributed_type)
        return trainer

    trainer_module.train = spy
    config = TransformerConfig(model_path={model!r}, finetune="{finetune}", learning_rate=1e-2, max_length=64, batch_size=4, max_steps=3,
                               logging_steps=1, save_steps=2, checkpoint_dir=str(out / "checkpoints"))
    model = build_model(config).fit(records, progress=False)
    model.save(out / "model")
    seen["global_step"] = model.train_report_["global_step"]
    seen["probs"] = model.predict_proba(records[:4]).tolist()
    seen["checksum"] = float(sum(p.double().abs().sum() for p in model.model_.parameters()))
    (out / f"rank{{rank}}.json").write_text(json.dumps(seen))
''')


@pytest.mark.slow
@pytest.mark.parametrize("arch,finetune", [("bert", "full"), ("llama", "lora")])
def test_two_processes_train_one_model_with_pairs_and_swaps_together(arch, finetune, tiny_checkpoints, shared_data, tmp_path):
    from arenapref.data.io import read_pairs
    from arenapref.models import load_model

    script = tmp_path / "run.py"
    script.write_text(RUNNER.format(tests=str(Path(__file__).parent), out=str(tmp_path), data=str(shared_data),
                                    model=str(tiny_checkpoints(arch)), finetune=finetune))
    env = os.environ | {"OMP_NUM_THREADS": "1", "ARENAPREF_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for seen in ranks:
        assert seen["world_size"] == 2 and seen["distributed"].endswith("MULTI_CPU")
        assert seen["global_step"] == 3 and seen["pairs_together"]
        assert seen["batches"] == 4  # 32 rows (16 pairs and their swaps) / 4 per batch / 2 processes
    # gradients were averaged across processes: both hold the same model, and so does the one written once
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    np.testing.assert_allclose(ranks[0]["probs"], ranks[1]["probs"], atol=1e-6)
    rows = read_pairs([shared_data / "pandalm"])[0][:4]
    np.testing.assert_allclose(load_model(tmp_path / "model").predict_proba(rows), ranks[0]["probs"], atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
