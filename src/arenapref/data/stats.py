"""Summary numbers of a set of records: what `arenapref data stats` prints."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from arenapref.data.record import LABELS, PairRecord, split_textless


def describe(records: Sequence[PairRecord]) -> dict:
    """Counts, label shares and text statistics. Battle-log records (no texts) count in rows, labels, sources
    and models, and are listed as `textless`; the turn, length, identical and empty figures describe the
    records with text only."""
    n = len(records)
    labelled = [r for r in records if r.label is not None]
    labels = Counter(r.label for r in labelled)
    texts, textless = split_textless(records)
    turns = np.array([r.n_turns for r in texts]) if texts else np.zeros(1)
    chars = {
        "prompt": np.array([sum(map(len, r.prompt)) for r in texts]),
        "response": np.array([sum(map(len, t)) for r in texts for t in (r.response_a, r.response_b)]),
    }
    models = Counter(m for r in records for m in (r.model_a, r.model_b) if m)
    pct = (50, 90, 99)
    return {
        "rows": n,
        "labelled": len(labelled),
        "soft_labelled": sum(r.soft_label is not None for r in records),
        "label_share": {LABELS[k]: labels.get(k, 0) / len(labelled) if labelled else 0.0 for k in range(3)},
        "tie_rate": labels.get(2, 0) / len(labelled) if labelled else 0.0,
        "turns": {"mean": float(turns.mean()), "max": int(turns.max()), "multi_turn_share": float((turns > 1).mean())},
        "chars": {k: {f"p{q}": int(np.percentile(v, q)) if len(v) else 0 for q in pct} | {"max": int(v.max()) if len(v) else 0}
                  for k, v in chars.items()},
        "identical_responses": sum(r.response_a == r.response_b for r in texts),
        "empty_responses": sum(not "".join(t).strip() for r in texts for t in (r.response_a, r.response_b)),
        "textless": len(textless),
        "sources": dict(Counter(r.source for r in records)),
        "models": dict(models.most_common()),
    }
