"""Model families behind one protocol: fit, predict_proba, save, load. A trained model is a directory."""

from arenapref.models.base import PairModel, build_model, load_model

__all__ = ["PairModel", "build_model", "load_model"]
