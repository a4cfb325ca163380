"""The inference engine: token-budget batching, row order, swap TTA, out-of-memory back-off, resumable results,
worker processes, and the Ray and vLLM back-ends (vLLM through stand-ins: it is not installable here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import exact_score, random_sequences, tiny_classifier  # noqa: E402

from arenapref.data.record import swap_labels  # noqa: E402
from arenapref.errors import SingleRowOutOfMemory  # noqa: E402
from arenapref.infer import (  # noqa: E402
    EngineOptions,
    TransformersBackend,
    engine_predict,
    plan_batches,
    run_engine,
)
from arenapref.infer.store import ResumeMismatch, ShardStore, WorkDirBusy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run(sequences, score=exact_score, pad=0, **options):
    opts = EngineOptions(progress=False, **options)
    return run_engine(TransformersBackend(score, pad_token_id=pad, options=opts), sequences, opts), opts


def one_by_one(sequences, score=exact_score):
    with torch.inference_mode():
        return np.vstack([score(torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long)).double().numpy() for s in sequences])


# --- batching ---------------------------------------------------------------------------------------------
def test_no_batch_exceeds_the_token_budget_unless_a_single_row_does():
    seqs = random_sequences(300, seed=1, high=120) + [[5] * 400, [6] * 250]  # two rows longer than the budget
    budget, max_rows = 200, 16
    batches = plan_batches(seqs, budget, max_rows)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(seqs)))  # every row exactly once
    for b in batches:
        lengths = [len(seqs[i]) for i in b]
        assert lengths == sorted(lengths, reverse=True)
        assert len(b) <= max_rows
        assert len(b) * max(lengths) <= budget or len(b) == 1
    assert [len(b) for b in batches if len(seqs[b[0]]) > budget] == [1, 1]
    widths = [len(seqs[b[0]]) for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest first: the batch most likely to run out of memory runs first


def test_rows_come_back_in_input_order_although_batches_are_sorted_by_length():
    seqs = random_sequences(200, seed=2)
    out, opts = run(seqs, token_budget=256)
    assert opts.stats["batches"] > 5
    np.testing.assert_array_equal(out, one_by_one(seqs))


def test_token_budget_batches_match_rows_scored_alone_on_a_real_model(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from arenapref.infer.scorers import sequence_classifier_score

    path, pad = tiny_classifier(tmp_path / "clf")
    model = AutoModelForSequenceClassification.from_pretrained(path)
    score = sequence_classifier_score(model)
    seqs = random_sequences(40, seed=3, vocab=390)
    out, _ = run(seqs, score=score, pad=pad, token_budget=300)
    np.testing.assert_allclose(out, one_by_one(seqs, score), atol=2e-5)


# --- swap TTA ---------------------------------------------------------------------------------------------
def test_swap_tta_is_exactly_equivariant_on_a_real_model(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from arenapref.infer.scorers import sequence_classifier_score

    path, pad = tiny_classifier(tmp_path / "clf")
    score = sequence_classifier_score(AutoModelForSequenceClassification.from_pretrained(path))
    rng = np.random.default_rng(4)
    prompts, a, b = (random_sequences(30, seed=s, vocab=390) for s in (5, 6, 7))
    a[3] = b[3]  # identical answers
    forward = [p + x + y for p, x, y in zip(prompts, a, b)]
    swapped = [p + y + x for p, x, y in zip(prompts, a, b)]
    opts = EngineOptions(token_budget=int(rng.integers(100, 400)), progress=False)
    p = engine_predict(forward, swapped, score, pad, opts)
    q = engine_predict(swapped, forward, score, pad, opts)
    np.testing.assert_array_equal(q, swap_labels(p))  # exact, not approximate
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[3, 0], p[3, 1], rtol=0, atol=1e-12)  # identical answers: A and B equally likely


# --- out-of-memory back-off -------------------------------------------------------------------------------
@pytest.mark.parametrize("error", [torch.OutOfMemoryError, lambda m: RuntimeError("CUDA error: out of memory " + m)])
def test_a_batch_that_runs_out_of_memory_is_halved_and_retried(error):
    limit = 150  # padded tokens this fake device can hold
    calls = []

    def score(ids, mask):
        calls.append(ids.numel())
        if ids.numel() > limit:
            raise error(f"tried {ids.numel()} tokens")
        return exact_score(ids, mask)

    seqs = random_sequences(120, seed=8, high=50)
    out, opts = run(seqs, score=score, token_budget=1000)
    np.testing.assert_array_equal(out, one_by_one(seqs))
    failed = [c for c in calls if c > limit]
    assert opts.stats["oom_splits"] == len(failed) >= 1
    # after the first failure, batches that large are split before they run instead of failing again
    assert len(failed) <= 4


def test_one_row_too_long_for_memory_is_a_clear_error():
    def score(ids, mask):
        if ids.shape[1] > 30:
            raise torch.OutOfMemoryError("fake")
        return exact_score(ids, mask)

    with pytest.raises(SingleRowOutOfMemory, match="max_length"):
        run([[1] * 10, [2] * 40], score=score)


def test_other_errors_are_not_mistaken_for_out_of_memory():
    def score(ids, mask):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run([[1, 2, 3]], score=score)


# --- resumable results ------------------------------------------------------------------------------------
class Crash(Exception):
    pass


def test_resume_after_a_crash_computes_only_the_missing_rows(tmp_path):
    seqs = random_sequences(150, seed=9)
    clean, _ = run(seqs, token_budget=200)
    batches = []

    def crashing(ids, mask):
        if len(batches) == 4:
            raise Crash()
        batches.append(ids.shape[0])
        return exact_score(ids, mask)

    with pytest.raises(Crash):
        run(seqs, score=crashing, token_budget=200, work_dir=tmp_path / "w")
    stored = _stored_rows(tmp_path / "w")
    assert len(stored) == sum(batches)  # every finished batch is on disk, nothing else
    rows_seen = []

    def counting(ids, mask):
        rows_seen.extend(ids[:, 0].tolist())
        return exact_score(ids, mask)

    out, opts = run(seqs, score=counting, token_budget=200, work_dir=tmp_path / "w", resume=True)
    np.testing.assert_array_equal(out, clean)
    assert len(rows_seen) == len(seqs) - len(stored)  # no stored row was computed again
    assert opts.stats["resumed_rows"] == len(stored)


def _stored_rows(work_dir: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    files = sorted((work_dir / "shards").rglob("*.parquet"))
    return np.concatenate([pq.read_table(f).column("row").to_numpy() for f in files]) if files else np.zeros(0, int)


KILLED_RUN = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from tiny_models import exact_score, random_sequences
    from arenapref.infer import EngineOptions, TransformersBackend, run_engine

    def slow(ids, mask):
        time.sleep(0.3)
        return exact_score(ids, mask)

    opts = EngineOptions(token_budget=200, work_dir={work!r}, progress=False)
    run_engine(TransformersBackend(slow, 0, opts), random_sequences(150, seed=9), opts)
    print("finished")
""")


def test_resume_after_kill_finishes_the_run_with_identical_results(tmp_path):
    """SIGKILL a run in another process after a few batches; --resume computes exactly the rest."""
    seqs = random_sequences(150, seed=9)
    clean, _ = run(seqs, token_budget=200)
    work = tmp_path / "w"
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), work=str(work))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=os.environ | {"OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while len(list((work / "shards").glob("*.parquet"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run wrote no results in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    stored = _stored_rows(work)
    assert 0 < len(stored) < len(seqs)
    recomputed = []

    def counting(ids, mask):
        recomputed.extend(ids[:, 0].tolist())
        return exact_score(ids, mask)

    out, opts = run(seqs, score=counting, token_budget=200, work_dir=work, resume=True)
    np.testing.assert_array_equal(out, clean)
    assert len(recomputed) == len(seqs) - len(stored)
    assert opts.stats["resumed_rows"] == len(stored)


def test_resume_refuses_results_of_another_run(tmp_path):
    run(random_sequences(20, seed=1), work_dir=tmp_path / "w")
    with pytest.raises(ResumeMismatch, match="different run"):
        run(random_sequences(20, seed=2), work_dir=tmp_path / "w", resume=True)


def test_two_runs_cannot_share_a_work_dir(tmp_path):
    first = ShardStore(tmp_path / "w", "x", 10, 3, resume=False)
    with pytest.raises(WorkDirBusy, match="another run"):
        ShardStore(tmp_path / "w", "x", 10, 3, resume=True)
    first.close()
    ShardStore(tmp_path / "w", "x", 10, 3, resume=True).close()


def test_without_resume_old_results_are_replaced(tmp_path):
    seqs = random_sequences(20, seed=1)
    run(seqs, work_dir=tmp_path / "w")
    calls = []

    def counting(ids, mask):
        calls.append(len(ids))
        return exact_score(ids, mask)

    run(seqs, score=counting, work_dir=tmp_path / "w")
    assert sum(calls) == len(seqs)


# --- one worker per device --------------------------------------------------------------------------------
@pytest.mark.slow
def test_worker_processes_give_the_same_results_as_one_process(tmp_path):
    """The multi-GPU path (one spawned worker per device), run with two CPU 'devices'."""
    from arenapref.models.hf import SequenceClassifierFactory

    path, pad = tiny_classifier(tmp_path / "clf")
    factory = SequenceClassifierFactory(str(path))
    seqs = random_sequences(60, seed=11, vocab=390)
    local = EngineOptions(token_budget=400, progress=False, devices=["cpu"])
    expected = run_engine(TransformersBackend(factory, pad, local), seqs, local)
    multi = EngineOptions(token_budget=400, progress=False, devices=["cpu", "cpu"])
    got = run_engine(TransformersBackend(factory, pad, multi), seqs, multi)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert multi.stats["batches"] >= 2


# --- Ray ----------------------------------------------------------------------------------------------------
# The ray back-end is checked end to end, on a saved transformer model through `arenapref predict --backend ray`
# (one Ray start for the suite): tests/test_transformer_tiny.py::test_a_transformer_model_predicts_on_ray_...


# --- vLLM, through stand-ins ------------------------------------------------------------------------------
class FakeLogprob:
    def __init__(self, logprob):
        self.logprob = logprob


class FakeLLM:
    """Answers generate() like vLLM: one completion per prompt, the first step's top log-probabilities."""

    def __init__(self, table, drop=()):
        self.table, self.drop, self.calls = table, set(drop), []

    def generate(self, prompts, sampling, use_tqdm=False, **kwargs):
        from types import SimpleNamespace as NS

        self.calls.append((len(prompts), sampling))
        outs = []
        for p in prompts:
            ids = p["prompt_token_ids"]
            logits = self.table(ids)
            logp = logits - np.log(np.exp(logits).sum())
            step = {tok: FakeLogprob(float(v)) for tok, v in zip((7, 8, 9), logp) if (ids[0], tok) not in self.drop}
            outs.append(NS(outputs=[NS(logprobs=[step])]))
        return outs

    def classify(self, prompts, use_tqdm=False):
        from types import SimpleNamespace as NS

        return [NS(outputs=NS(probs=list(np.exp(self.table(p["prompt_token_ids"])) / np.exp(self.table(p["prompt_token_ids"])).sum())))
                for p in prompts]


def _table(ids):
    return np.array([len(ids) / 10, sum(ids) % 7 / 3, 0.5])


def test_label_logprobs_map_to_probabilities_with_missing_tokens_floored():
    from arenapref.infer.vllm_backend import label_logprobs

    steps = [{7: FakeLogprob(-0.1), 8: FakeLogprob(-2.5), 9: FakeLogprob(-4.0), 3: FakeLogprob(-9.0)},
             {8: -0.2, 7: -1.9},  # tie token not among the returned ones: at most as likely as the least likely
             None]
    lp = label_logprobs(steps, [7, 8, 9])
    np.testing.assert_allclose(lp[0], [-0.1, -2.5, -4.0])
    np.testing.assert_allclose(lp[1], [-1.9, -0.2, -1.9])
    np.testing.assert_allclose(lp[2], [0, 0, 0])


def test_vllm_judge_backend_gives_the_softmax_over_label_logprobs_in_input_order(tmp_path):
    from arenapref.infer import predict_pairs
    from arenapref.infer.vllm_backend import VLLMBackend

    forward = random_sequences(25, seed=13)
    swapped = random_sequences(25, seed=14)
    llm = FakeLLM(_table)
    opts = EngineOptions(backend="vllm", progress=False, work_dir=tmp_path / "w")
    backend = VLLMBackend("unused", mode="judge", label_token_ids=[7, 8, 9], options=opts, llm=llm, chunk_rows=16,
                          sampling_params=dict)
    probs = predict_pairs(forward, swapped, backend, opts)

    def softmax(x):
        return np.exp(x) / np.exp(x).sum()

    expected = np.array([(softmax(_table(f)) + swap_labels(softmax(_table(s)))) / 2 for f, s in zip(forward, swapped)])
    np.testing.assert_allclose(probs, expected, atol=1e-12)
    assert [n for n, _ in llm.calls] == [16, 16, 16, 2]  # chunks reach the work dir one by one
    assert llm.calls[0][1] == dict(max_tokens=1, temperature=0.0, logprobs=3, allowed_token_ids=[7, 8, 9], detokenize=False)


def test_vllm_classify_backend_returns_its_probabilities(tmp_path):
    from arenapref.infer import predict_pairs
    from arenapref.infer.vllm_backend import VLLMBackend

    seqs = random_sequences(10, seed=15)
    opts = EngineOptions(backend="vllm", progress=False)
    probs = predict_pairs(seqs, None, VLLMBackend("unused", mode="classify", options=opts, llm=FakeLLM(_table)), opts)
    expected = np.array([np.exp(_table(s)) / np.exp(_table(s)).sum() for s in seqs])
    np.testing.assert_allclose(probs, expected, atol=1e-12)


def test_vllm_missing_is_a_clear_error():
    try:
        import vllm  # noqa: F401
    except ImportError:
        from arenapref.infer.vllm_backend import VLLMBackend

        with pytest.raises(ImportError, match="docs/vllm.md"):
            VLLMBackend("m", mode="judge", label_token_ids=[1, 2, 3]).llm()
    else:  # pragma: no cover
        pytest.skip("vllm is installed")


def test_quantization_is_refused_clearly_without_cuda():
    from arenapref.models.hf import quantization_config

    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("has CUDA")
    with pytest.raises(RuntimeError, match="CUDA"):
        quantization_config("4bit", "cpu")
    assert quantization_config("none", "cpu") is None
