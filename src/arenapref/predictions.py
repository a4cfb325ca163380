"""Prediction files (an oof.csv from `arenapref cv`, a submission): one reader for every command that takes
them (calibrate, ensemble, report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from arenapref.data.record import LABELS
from arenapref.errors import PredictionFileError


def read_prediction_file(path: str | Path, need_labels: bool = False) -> pd.DataFrame:
    """A CSV with id and the three winner columns (an oof.csv or a submission), checked and indexed by id."""
    path = Path(path)
    if not path.is_file():
        raise PredictionFileError(f"{path}: no such prediction file" + (" (a folder: name the oof.csv inside it)" if path.is_dir() else ""))
    try:
        # every cell as text: ids keep their leading zeros, "NA" stays an id; probabilities are parsed below
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise PredictionFileError(f"{path}: cannot read as CSV ({e})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("id", *LABELS) if c not in df.columns]
    if missing:
        raise PredictionFileError(f"{path}: missing column(s) {missing}; a prediction file has id,{','.join(LABELS)}")
    if need_labels and "label" not in df.columns:
        raise PredictionFileError(f"{path}: no `label` column; out-of-fold files come from `arenapref cv` (runs/cv/oof.csv)")
    df["id"] = df["id"].str.strip()
    dup = df["id"][df["id"].duplicated()].tolist()
    if dup:
        raise PredictionFileError(f"{path}: repeated id(s) {dup[:5]}")
    values = df[list(LABELS)].apply(lambda c: pd.to_numeric(c.str.strip(), errors="coerce")).to_numpy(dtype=float)
    bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise PredictionFileError(f"{path}: row {first + 1} (id {df['id'].iloc[first]}): empty, non-numeric, negative or "
                                  f"non-finite probabilities ({int(bad.sum())} such row(s))")
    df[list(LABELS)] = values
    if "fold" in df.columns:
        folds = pd.to_numeric(df["fold"], errors="coerce")
        if folds.isna().any() or (folds % 1 != 0).any():
            raise PredictionFileError(f"{path}: the fold column must hold integers")
        df["fold"] = folds.astype(int)
    if "label" in df.columns:
        unknown = sorted(set(df["label"]) - set(LABELS))
        if unknown:
            raise PredictionFileError(f"{path}: label values {unknown[:5]} are not in {list(LABELS)}")
    return df.set_index("id", drop=False)
