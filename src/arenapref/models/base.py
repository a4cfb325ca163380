"""The model protocol: one for every family, in two kinds.

    model = build_model(FeaturesConfig())        # or TransformerConfig(...), JudgeConfig(...), ...
    model.fit(records)                           # every pair (and its A/B swap) with its label
    probs = model.predict_proba(test_records)    # (n, 3): P(A wins), P(B wins), P(tie), in input order
    model.save("models/features"); model = load_model("models/features")

- `TabularModel` (prior, features, embed) encodes each pair into columns of A, of B and of the pair
  (`PairFeatures`); swap augmentation and swap TTA are done once here, on those columns.
- `SequenceModel` (transformer, judge) turns each pair into token ids and scores them on the inference engine
  (arenapref/infer): token-budget batches, both A/B orders in one pass, every back-end (transformers, ray,
  vllm), `--resume`, and `arenapref estimate`.

Both end in one `predict_proba`: both orders averaged (swap TTA), the model's calibration applied once, and the
output checked (one finite row per input, summing to 1). A model is saved as a self-describing directory
(arenapref.json, config.yaml, weights), written whole to a temporary sibling and swapped into place.
"""

from __future__ import annotations

import importlib
import json
import platform
import shutil
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from arenapref._version import __version__
from arenapref.config import config_dict, config_yaml, model_config
from arenapref.data.record import LABELS, PairRecord, swap_average, swap_labels, targets
from arenapref.errors import ConfigError, ModelDirError, NotFittedError, UsageError
from arenapref.files import atomic_directory, write_json
from arenapref.infer.engine import make_backend, score_orders
from arenapref.infer.options import (
    EngineOptions,
    ScoreFn,
    ScorerFactory,
    resolve_devices,
)
from arenapref.metrics import check_probabilities, prior
from arenapref.models.calibration import Calibrator

MODEL_FILE = "arenapref.json"
CALIBRATION_FILE = "calibration.json"
FAMILIES = {
    "prior": "arenapref.models.prior:PriorModel",
    "features": "arenapref.models.features:FeaturesModel",
    "embed": "arenapref.models.embed:EmbedModel",
    "transformer": "arenapref.models.transformer:TransformerModel",
    "judge": "arenapref.models.judge:JudgeModel",
}


class PairModel(ABC):
    """fit(records) -> self; predict_proba(records) -> (n, 3) in LABELS order; save(dir); load_model(dir)."""

    family: ClassVar[str]
    kind: ClassVar[str]  # "tabular" or "sequence"
    classes_: tuple[str, ...] = LABELS

    def __init__(self, config):
        self.config = config
        self.calibration: Calibrator | None = None  # applied last in predict_proba; set by load_model or `calibrate`
        self.n_train_: int | None = None
        # the swap-symmetric class shares the model was fitted under (weighted as its training rows were): what
        # --tie-rate and --adapt-prior shift away from (arenapref/adapt.py); None for a model saved before
        self.train_prior_: np.ndarray | None = None
        self.train_sources_: dict[str, int] | None = None  # training rows per source
        self.directory_: Path | None = None  # where the model was loaded from or last saved to

    # --- what a kind or family implements -----------------------------------------------------------------
    @abstractmethod
    def _fit(self, records: list[PairRecord], progress, **options) -> None: ...

    @abstractmethod
    def _predict_orders(self, records: list[PairRecord], swap_tta: bool, options) -> tuple[np.ndarray, np.ndarray | None]:
        """(n, 3) probabilities of the pairs as given and, with swap_tta, of the pairs with A and B exchanged
        (in the swapped pairs' own columns), before calibration."""

    @abstractmethod
    def _is_fitted(self) -> bool: ...

    @abstractmethod
    def _save_state(self, directory: Path) -> None: ...

    @abstractmethod
    def _load_state(self, directory: Path, trust_pickle: bool = False) -> None: ...

    def _after_save(self, directory: Path) -> None:
        """Runs once the directory is complete and in place (a family points at it, drops its checkpoints)."""

    def count_tokens(self, records: Sequence[PairRecord]) -> list[int] | None:
        """Tokens per pair as the model sees them, or None for a model without a tokenizer."""
        return None

    def training_weights(self, records: Sequence[PairRecord]) -> np.ndarray | None:
        """Training weight of each row (None: all alike); the training prior is weighted the same way."""
        return None

    def training_priors(self, records: Sequence[PairRecord]) -> np.ndarray:
        """(n, 3): the prior each row's prediction is a posterior under (the training prior; a source-aware model
        gives a row of a known source that source's own). What --tie-rate and --adapt-prior shift from."""
        if self.train_prior_ is None:
            raise UsageError(f"this {self.family} model was saved without its training prior (by an older arenapref): "
                             "train it again to shift its predictions to another prior")
        return np.tile(self.train_prior_, (len(records), 1))

    # --- the protocol ---------------------------------------------------------------------------------------
    def fit(self, records: Sequence[PairRecord], progress: bool | None = None, **options) -> "PairModel":
        """Trains on `records` (each with a hard or soft label) and, with `swap_augment`, on their A/B swaps.

        Args:
            records: labelled pairs (`read_pairs` output).
            progress: show progress bars (None: when stderr is a terminal).
            **options: family-specific (transformer: `eval_records`, `callbacks`).
        Returns:
            self, fitted.
        """
        records = list(records)
        if not records:
            raise UsageError("cannot fit on zero rows")
        y = targets(records)  # names the first unlabelled row, if any, before any training starts
        self._fit(records, progress, **options)
        self.n_train_ = len(records)
        self.train_prior_ = prior(y, 1, weights=self.training_weights(records))[0]
        self.train_sources_ = dict(sorted(Counter(r.source for r in records).items()))
        return self

    def predict_proba(self, records: Sequence[PairRecord], swap_tta: bool | None = None,
                      options: EngineOptions | None = None) -> np.ndarray:
        """P(A wins), P(B wins), P(tie) per record, in input order.

        Args:
            records: pairs, labelled or not.
            swap_tta: average both A/B orders (None: the model's `swap_tta` setting).
            options: how a sequence model runs on the engine (token budget, work dir, back-end); tabular
                models take none.
        Returns:
            (n, 3) finite rows summing to 1, calibrated when the model has a calibration.

        >>> probs = load_model("models/features").predict_proba(records)  # doctest: +SKIP
        """
        if not self._is_fitted():
            raise NotFittedError(f"this {self.family} model is not fitted: call fit(records) or load_model(directory) first")
        records = list(records)
        if not records:
            return np.zeros((0, 3))
        tta = self.config.swap_tta if swap_tta is None else bool(swap_tta)
        forward, swapped = self._predict_orders(records, tta, options)
        probs = forward if swapped is None else swap_average(forward, swapped)
        if self.calibration is not None:
            probs = self.calibration.transform(probs)
        return check_probabilities(probs, len(records), f"{self.family} model")

    def save(self, directory: str | Path, extra_files: dict[str, str] | None = None) -> Path:
        """Writes the model directory whole: built in a temporary sibling, then swapped into place, so an
        earlier model at `directory` survives a failed save intact. `extra_files` (name -> text) go in too."""
        if not self._is_fitted():
            raise NotFittedError(f"this {self.family} model is not fitted: nothing to save")
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            self._save_state(tmp)
            (tmp / "config.yaml").write_text(config_yaml(self.config), encoding="utf-8")
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text, encoding="utf-8")
            meta = {
                "family": self.family, "kind": self.kind, "labels": list(LABELS), "arenapref_version": __version__,
                "config": config_dict(self.config), "n_train": self.n_train_,
                "train_prior": None if self.train_prior_ is None else [float(p) for p in self.train_prior_],
                "train_sources": self.train_sources_,
                "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
            }
            if self.calibration is not None:
                meta["calibration"] = self.calibration.to_dict()
                (tmp / CALIBRATION_FILE).write_text(json.dumps(self.calibration.to_dict(), indent=2), encoding="utf-8")
            (tmp / MODEL_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")  # last: marks it complete
        self.directory_ = directory
        self._after_save(directory)
        return directory


@dataclass
class PairFeatures:
    """Columns of A, columns of B (same layout), and columns that do not depend on the order; optionally sparse
    columns of A and of B (TF-IDF n-grams, scipy CSR, same layout), which the design puts last."""

    a: np.ndarray
    b: np.ndarray
    pair: np.ndarray
    sparse_a: object | None = None  # scipy.sparse CSR, or None
    sparse_b: object | None = None

    def swapped(self) -> "PairFeatures":
        return PairFeatures(self.b, self.a, self.pair, self.sparse_b, self.sparse_a)

    def design(self):
        """[A, B, A - B, pair] (and [sparse A, sparse B, sparse A - sparse B]): a dense float32 array, or a CSR
        matrix when there are sparse columns. Swapping A and B permutes and negates columns, nothing else."""
        dense = np.hstack([self.a, self.b, self.a - self.b, self.pair]).astype(np.float32)
        if self.sparse_a is None:
            return dense
        from scipy import sparse

        return sparse.hstack([sparse.csr_matrix(dense), self.sparse_a, self.sparse_b, self.sparse_a - self.sparse_b],
                             format="csr", dtype=np.float32)

    def take(self, rows) -> "PairFeatures":
        """The given rows (an index array)."""
        pick = (lambda m: None if m is None else m[rows])
        return PairFeatures(self.a[rows], self.b[rows], self.pair[rows], pick(self.sparse_a), pick(self.sparse_b))

    def with_pair(self, extra: np.ndarray) -> "PairFeatures":
        """The same columns with `extra` appended to the order-free ones."""
        return PairFeatures(self.a, self.b, np.hstack([self.pair, extra]), self.sparse_a, self.sparse_b)

    def __len__(self) -> int:
        return len(self.pair)


def stack_rows(top, bottom):
    """Design rows on top of design rows, dense or sparse."""
    if isinstance(top, np.ndarray):
        return np.vstack([top, bottom])
    from scipy import sparse

    return sparse.vstack([top, bottom], format="csr")


class TabularModel(PairModel):
    """A family that encodes pairs into feature columns; this class trains on both orders and predicts both."""

    kind = "tabular"

    @abstractmethod
    def encode(self, records: Sequence[PairRecord], fitting: bool = False) -> PairFeatures: ...

    @abstractmethod
    def _fit_design(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        """X: design rows; y: (n, 3) target probabilities; weights: per row (None: all alike)."""

    @abstractmethod
    def _predict_design(self, X: np.ndarray) -> np.ndarray: ...

    def _fit(self, records, progress, **options) -> None:
        if options:
            raise UsageError(f"the {self.family} model takes no fit options ({', '.join(options)})")
        y = targets(records)
        enc = self.encode(records, fitting=True)
        w = self.training_weights(records)  # after encode, which may learn what the weights depend on
        X = enc.design()
        if self.config.swap_augment:
            X = stack_rows(X, enc.swapped().design())
            y = np.vstack([y, swap_labels(y)])
            w = None if w is None else np.concatenate([w, w])
        self._fit_design(X, y, w)

    def _predict_orders(self, records, swap_tta, options):
        if options is not None:
            raise UsageError(f"the {self.family} model predicts directly, not on the inference engine: engine options "
                             "(token budget, work dir, resume, back-end, quantization) do not apply to it")
        enc = self.encode(records)
        forward = self._predict_design(enc.design())
        return forward, (self._predict_design(enc.swapped().design()) if swap_tta else None)


@dataclass
class SavedModelFactory(ScorerFactory):
    """A saved sequence model's score function, built where it runs: worker processes and Ray actors load the
    model directory themselves (a loaded model cannot be sent to them)."""

    model_dir: str
    quantization: str | None = None
    outputs = "logits"

    def build(self, device: str):
        return load_model(self.model_dir).score_function(device, self.quantization)


class SequenceModel(PairModel):
    """A family that scores token sequences: each pair (and its swap) becomes token ids, scored on the engine."""

    kind = "sequence"

    @abstractmethod
    def sequences(self, records: Sequence[PairRecord], swap: bool) -> tuple[list[list[int]], list[list[int]] | None]:
        """Token ids of each pair and, with `swap`, of each pair with A and B exchanged."""

    @property
    @abstractmethod
    def pad_token_id(self) -> int: ...

    @abstractmethod
    def score_function(self, device: str | None = None, quantization: str | None = None) -> ScoreFn:
        """score(input_ids, attention_mask) -> (rows, 3) logits, with the weights on `device`."""

    @abstractmethod
    def fingerprint_key(self) -> str:
        """What, besides the token ids, decides the scores (so --resume never mixes two models' results)."""

    @abstractmethod
    def vllm_spec(self) -> dict:
        """How the vllm back-end loads this model: dict(model=..., mode="classify" | "judge", ...)."""

    def engine_options(self, **overrides) -> EngineOptions:
        """The engine settings of this model (config.token_budget, config.max_batch_rows), with overrides."""
        return EngineOptions(**({"token_budget": self.config.token_budget, "max_batch_rows": self.config.max_batch_rows,
                                 "description": f"predict {self.family}"} | overrides))

    def scorer_factory(self, quantization: str | None = None) -> ScorerFactory | None:
        """A recipe other processes can build the score function from: the saved directory (None if unsaved)."""
        if self.directory_ is None:
            return None
        return SavedModelFactory(str(self.directory_), quantization)

    def engine_backend(self, options: EngineOptions):
        """The back-end `options.backend` names, for this model: transformers (in this process, or one worker
        per GPU), ray (actors load the saved directory) or vllm."""
        quantization = options.quantization or self.config.quantization
        quantization = None if quantization == "none" else quantization
        if options.backend == "vllm":
            return make_backend(options, self.pad_token_id, vllm=self.vllm_spec())
        devices = resolve_devices(options.devices)
        if options.backend == "ray" or len(devices) > 1:
            factory = self.scorer_factory(quantization)
            if factory is None:
                raise UsageError(f"save the {self.family} model first (`arenapref train`, or model.save(dir)): Ray "
                                 "actors and GPU workers load it from its directory")
            return make_backend(options, self.pad_token_id, factory=factory)
        return make_backend(options, self.pad_token_id, score=self.score_function(devices[0], quantization))

    def _predict_orders(self, records, swap_tta, options):
        forward, swapped = self.sequences(records, swap_tta)
        options = options or self.engine_options(progress=False)
        return score_orders(forward, swapped, self.engine_backend(options), options, key=self.fingerprint_key())

    def count_tokens(self, records: Sequence[PairRecord]) -> list[int]:
        forward, _ = self.sequences(records, False)
        return [len(s) for s in forward]

    def _after_save(self, directory: Path) -> None:
        # checkpoints of a default (cache) folder are deleted only now that the model they produced is on disk
        run = getattr(self, "checkpoints_", None)
        if run is not None and run.owns_checkpoints:
            from arenapref.train.trainer import is_main_process

            if is_main_process():
                shutil.rmtree(run.checkpoint_dir, ignore_errors=True)
            self.checkpoints_ = None


# --- building, loading ----------------------------------------------------------------------------------------
def _family_class(family: str) -> type[PairModel]:
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    module, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), name)


def build_model(config) -> PairModel:
    """An unfitted model of the family the config names.

    Args:
        config: a family config (PriorConfig, FeaturesConfig, EmbedConfig, TransformerConfig, JudgeConfig).
    Returns:
        The family's PairModel, ready for `fit`.

    >>> model = build_model(FeaturesConfig(n_estimators=200)).fit(records)  # doctest: +SKIP
    """
    return _family_class(config.family)(config)


def read_model_meta(directory: str | Path) -> dict:
    directory = Path(directory)
    meta_path = directory / MODEL_FILE
    if not directory.is_dir():
        raise ModelDirError(f"model directory {directory} not found; train one with `arenapref train ... -o {directory}`")
    if not meta_path.exists():
        raise ModelDirError(f"{directory} is not an arenapref model directory (no {MODEL_FILE}); train one with "
                            "`arenapref train`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelDirError(f"{meta_path}: unreadable ({e}); the model directory is damaged, train it again") from None
    if tuple(meta.get("labels", LABELS)) != LABELS:
        raise ModelDirError(f"{directory}: saved label order {meta['labels']} differs from {list(LABELS)}")
    return meta


def load_model(directory: str | Path, trust_pickle: bool = False) -> PairModel:
    """The model saved in `directory`, with its calibration. Loading reads data only (JSON, NumPy arrays,
    LightGBM text, safetensors); a directory from an older arenapref that holds a pickle is refused unless
    `trust_pickle` says its author is trusted, because unpickling can run any code.

    >>> model = load_model("models/features"); probs = model.predict_proba(records)  # doctest: +SKIP
    """
    directory = Path(directory)
    meta = read_model_meta(directory)
    try:
        config = model_config(meta["config"])
    except (KeyError, ConfigError) as e:
        raise ModelDirError(f"{directory}: its {MODEL_FILE} has no valid config ({e})") from None
    model = build_model(config)
    model._load_state(directory, trust_pickle=trust_pickle)
    model.n_train_ = meta.get("n_train")
    model.train_prior_ = None if meta.get("train_prior") is None else np.asarray(meta["train_prior"], dtype=float)
    model.train_sources_ = meta.get("train_sources")
    model.calibration = load_calibration(directory)
    model.directory_ = directory
    return model


def load_calibration(directory: str | Path) -> Calibrator | None:
    path = Path(directory) / CALIBRATION_FILE
    if not path.exists():
        return None
    try:
        return Calibrator.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as e:
        raise ModelDirError(f"{path}: {e}; delete it or rerun `arenapref calibrate`") from None


def save_calibration(directory: str | Path, calibrator: Calibrator | None) -> None:
    """Writes (or, for None, removes) calibration.json and mirrors it in the model's arenapref.json, each file
    atomically."""
    directory = Path(directory)
    meta = read_model_meta(directory)
    path = directory / CALIBRATION_FILE
    meta.pop("calibration", None)
    if calibrator is None:
        path.unlink(missing_ok=True)
    else:
        write_json(path, calibrator.to_dict(), "calibration")
        meta["calibration"] = calibrator.to_dict()
    write_json(directory / MODEL_FILE, meta, "model metadata")
