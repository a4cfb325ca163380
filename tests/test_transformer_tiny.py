"""Tiny randomly initialised checkpoints (hidden size 32, 2 layers) and tokenizers trained here with the
`tokenizers` library, saved as local directories the way real checkpoints are. Used by the transformer tests;
the tests in this file check that every architecture loads as a 3-way sequence classifier."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from engine_helpers import bpe_tokenizer  # noqa: E402

DECODERS = ("llama", "gemma2", "qwen2", "mistral", "phi")
ENCODERS = ("bert", "deberta-v2")
ARCHS = DECODERS + ENCODERS

CORPUS = [
    "Which answer is better? Response A says hello world. Response B explains the steps in detail.",
    "Write a poem about the sea. The sea is blue and deep, its waves never sleep.",
    "def add(a, b): return a + b  # a code answer with numbers 1 2 3 4 5",
    "I'm sorry, I cannot help with that request. As an AI language model I do not have opinions.",
    "Rewrite the sentence to be clearer. If you have any questions, please let me know.",
]
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def decoder_tokenizer(chat: bool = True):
    return bpe_tokenizer(CORPUS, CHAT_TEMPLATE if chat else None)


def encoder_tokenizer():
    """WordPiece with [CLS] ... [SEP], like BERT."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS * 10, trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def build_tiny(arch: str, directory: Path) -> Path:
    """A random checkpoint of `arch` saved with its tokenizer in `directory` (decoders as *ForCausalLM, as
    published checkpoints are; encoders as bare encoders)."""
    import transformers as tf

    torch.manual_seed(0)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=512)
    tokenizer = encoder_tokenizer() if arch in ENCODERS else decoder_tokenizer()
    v = len(tokenizer)
    if arch in DECODERS:
        dec = dict(small, num_key_value_heads=2, vocab_size=v, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        model = {
            "llama": lambda: tf.LlamaForCausalLM(tf.LlamaConfig(**dec)),
            "gemma2": lambda: tf.Gemma2ForCausalLM(tf.Gemma2Config(head_dim=8, sliding_window=64, **dec)),
            "qwen2": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(**dec)),
            "mistral": lambda: tf.MistralForCausalLM(tf.MistralConfig(sliding_window=None, **dec)),
            "phi": lambda: tf.PhiForCausalLM(tf.PhiConfig(**dec)),
        }[arch]()
    elif arch == "bert":
        model = tf.BertModel(tf.BertConfig(vocab_size=v, pad_token_id=tokenizer.pad_token_id, **small))
    else:
        model = tf.DebertaV2Model(tf.DebertaV2Config(vocab_size=v, pad_token_id=tokenizer.pad_token_id, pooler_hidden_size=32,
                                                     relative_attention=True, position_buckets=32, pos_att_type=["p2c", "c2p"], **small))
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """arch -> directory of a tiny checkpoint, built on first use and shared by the session."""
    root = tmp_path_factory.mktemp("tiny-checkpoints")
    cache: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in cache:
            cache[arch] = build_tiny(arch, root / arch)
        return cache[arch]

    return get


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_loads_as_a_three_way_classifier_with_winner_labels(arch, tiny_checkpoints):
    from arenapref.config import TransformerConfig
    from arenapref.data.record import LABELS
    from arenapref.models.transformer import load_classifier, load_tokenizer

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
