"""Tiny random checkpoints (hidden size 32, 2 layers) of every supported architecture, tokenizers trained here
with the `tokenizers` library, and an exact fake score function: the helpers the engine, judge and transformer
tests share (the `tiny_checkpoints` fixture in conftest.py builds the checkpoints once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CORPUS = [
    "Which assistant answered better? Reply with one word: A, B, or tie.",
    "Response A says hello world. Response B explains the steps in detail. It is a tie.",
    "Write a poem about the sea. The sea is blue and deep, its waves never sleep.",
    "def add(a, b): return a + b  # a code answer with numbers 1 2 3 4 5",
    "I'm sorry, I cannot help with that request. As an AI language model I do not have opinions.",
    "Rewrite the sentence to be clearer. If you have any questions, please let me know. A B tie A B tie",
]
JUDGE_CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def bpe_tokenizer(corpus, chat_template: str | None):
    """Byte-level BPE trained on `corpus`, with <s> prepended and no pad token, like many decoder checkpoints."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(corpus) * 10, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>", "<unk>"],
                                                                   initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


def tiny_tokenizer(chat: bool = True):
    return bpe_tokenizer(CORPUS, JUDGE_CHAT_TEMPLATE if chat else None)


def _llama_config(tokenizer, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=1024, vocab_size=len(tokenizer),
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **extra)


def tiny_causal_lm(directory: Path, chat: bool = True, seed: int = 0) -> Path:
    """A random LlamaForCausalLM (hidden size 32, 2 layers) saved with its tokenizer, as a local checkpoint."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(chat)
    model = LlamaForCausalLM(_llama_config(tokenizer))
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_classifier(directory: Path, seed: int = 0) -> tuple[Path, int]:
    """A random 3-way LlamaForSequenceClassification saved with its tokenizer; returns (path, pad token id)."""
    import torch
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    pad = tokenizer.eos_token_id
    model = LlamaForSequenceClassification(_llama_config(tokenizer, num_labels=3, pad_token_id=pad))
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory, pad


def exact_score(input_ids, attention_mask):
    """A fake model whose output for a row depends on that row's tokens only, computed exactly (integers in
    float64), whatever the batch and its padding: results can be compared with ==."""
    import torch

    ids = input_ids.to(torch.float64) * attention_mask
    n = attention_mask.sum(dim=1).to(torch.float64)
    first = input_ids[:, 0].to(torch.float64)
    return torch.stack([ids.sum(dim=1) % 97 / 8, n / 4, first % 13 / 2], dim=1)


def random_sequences(n: int, seed: int = 0, low: int = 1, high: int = 60, vocab: int = 300) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(3, vocab, size=int(rng.integers(low, high))).tolist() for _ in range(n)]


# --- one tiny checkpoint per architecture (the transformer family's tests) -----------------------------
DECODERS = ("llama", "gemma2", "qwen2", "mistral", "phi")
ENCODERS = ("bert", "deberta-v2")
ARCHS = DECODERS + ENCODERS

CLASSIFIER_CORPUS = [
    "Which answer is better? Response A says hello world. Response B explains the steps in detail.",
    "Write a poem about the sea. The sea is blue and deep, its waves never sleep.",
    "def add(a, b): return a + b  # a code answer with numbers 1 2 3 4 5",
    "I'm sorry, I cannot help with that request. As an AI language model I do not have opinions.",
    "Rewrite the sentence to be clearer. If you have any questions, please let me know.",
]
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def decoder_tokenizer(chat: bool = True):
    return bpe_tokenizer(CLASSIFIER_CORPUS, CHAT_TEMPLATE if chat else None)


def encoder_tokenizer():
    """WordPiece with [CLS] ... [SEP], like BERT."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CLASSIFIER_CORPUS * 10, trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")


def build_tiny(arch: str, directory: Path) -> Path:
    """A random checkpoint of `arch` saved with its tokenizer in `directory` (decoders as *ForCausalLM, as
    published checkpoints are; encoders as bare encoders)."""
    import torch
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
