"""Judge-made leaderboards and how far they agree with people's.

A judge (any arenapref model) predicts P(A wins), P(B wins), P(tie) for every battle, with swap TTA; the
ratings are fitted from those probabilities as fractional outcomes (`rank.battles_from_records(probs=...)`),
with the same tie model, style control and bootstrap as a ranking of votes.

For a fair comparison with the human ranking of the same battles, the judge must not have seen them:
`cross_fit_judge` trains K judges on folds grouped by prompt and lets each score only the prompts it was not
trained on (the same folds as `arenapref cv`).

`agreement(human, judge)` compares two rankings of the same models: Spearman and Kendall correlation of the
ratings, the share of model pairs put in the same order, the largest and mean rating difference, the ratio of
the two rankings' spreads (a judge whose probabilities stay near 0.5 orders models right on a compressed
scale: its rating differences then say more about that scale than about the order), and which models moved. When both rankings drew the same bootstrap resamples (same battles, unit and seed:
`Ranking.paired_with`), each figure gets a percentile interval from the resamples, pair by pair.

    scores = cross_fit_judge(records, FeaturesConfig(), k=5)
    judge = rank(battles_from_records(records, probs=scores.probs), bootstrap_by="prompt")
    human = rank(battles_from_records(records), bootstrap_by="prompt")
    print(agreement(human, judge).summary())
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr

from arenapref.cv import first_unlabelled
from arenapref.data.folds import GroupedFolds
from arenapref.data.record import PairRecord
from arenapref.errors import UsageError
from arenapref.models import build_model
from arenapref.progress import progress_bar
from arenapref.rank import Ranking


# --- scoring battles with a judge -------------------------------------------------------------------------------
@dataclass
class JudgeScores:
    """A judge's probabilities for each battle, and (cross-fitted) which fold's judge scored it."""

    probs: np.ndarray  # (n, 3) P(A wins), P(B wins), P(tie), in record order
    family: str
    seconds: float = 0.0
    fold_ids: np.ndarray | None = None  # the fold each record is in; its judge was trained on the other folds
    trained_prompts: list[frozenset[str]] | None = field(default=None, repr=False)  # prompt keys per fold's judge

    @property
    def cross_fitted(self) -> bool:
        return self.fold_ids is not None

    def frame(self, records: Sequence[PairRecord]) -> pd.DataFrame:
        """One row per battle: id, model_a, model_b, fold (cross-fitted), and the three probabilities."""
        df = pd.DataFrame({"id": [r.id for r in records], "model_a": [r.model_a for r in records],
                           "model_b": [r.model_b for r in records]})
        if self.fold_ids is not None:
            df["fold"] = self.fold_ids
        for k, col in enumerate(("p_a", "p_b", "p_tie")):
            df[col] = self.probs[:, k]
        return df


def cross_fit_judge(records: Sequence[PairRecord], model_config, k: int = 5, seed: int = 0,
                    progress: bool | None = None, extra_train: Sequence[PairRecord] = ()) -> JudgeScores:
    """Trains `k` judges of `model_config`, each on the records of k - 1 folds grouped by prompt, and scores every
    record with the judge that did not see its prompt (swap TTA on).

    Args:
        records: labelled battles (texts and labels; the judges learn from them).
        model_config: the judge's model config (e.g. FeaturesConfig()).
        k: folds (>= 2).
        seed: seed of the folds.
        progress: a progress bar per fold (None: on a terminal).
        extra_train: labelled pairs from elsewhere that every judge also trains on (a judge's general
            experience); a pair whose prompt is among the prompts a fold's judge scores is left out of that
            judge's training, so no judge ever saw a prompt it scores.

    Returns:
        JudgeScores with `fold_ids` and, per fold, the prompt keys its judge was trained on.
    """
    records = list(records)
    if k < 2:
        raise UsageError(f"--cross-fit {k}: use at least 2 folds")
    extra_train = list(extra_train)
    where = first_unlabelled(records) or first_unlabelled(extra_train)
    if where is not None:
        raise UsageError(f"--cross-fit trains the judge on the battles' own votes, but {where} has none; give "
                         "labelled battles, or a trained judge without --cross-fit")
    try:
        fold_ids = GroupedFolds(k, seed).fold_ids(records)
    except ValueError as e:
        raise UsageError(f"--cross-fit {k}: {e}") from None
    probs = np.zeros((len(records), 3))
    trained: list[frozenset[str]] = []
    start = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task(f"cross-fit {model_config.family} judge, {k} folds", total=k)
        for fold in range(k):
            test_idx = np.flatnonzero(fold_ids == fold)
            scored = {records[i].prompt_key for i in test_idx}
            train = [r for r, f in zip(records, fold_ids) if f != fold]
            train += [r for r in extra_train if r.prompt_key not in scored]
            judge = build_model(model_config).fit(train, progress=False)
            probs[test_idx] = judge.predict_proba([records[i] for i in test_idx], swap_tta=True)
            trained.append(frozenset(r.prompt_key for r in train))
            bar.advance(task)
    return JudgeScores(probs, model_config.family, time.perf_counter() - start, fold_ids, trained)


# --- agreement between two rankings ------------------------------------------------------------------------------
def _aligned(human: Ranking, judge: Ranking) -> list[str]:
    common = [m for m in human.models if m in set(judge.models)]
    if len(common) < 2:
        raise UsageError(f"the two rankings share {len(common)} model(s); agreement needs at least two")
    return common


def _pick(ranking: Ranking, models: list[str], values: np.ndarray | None = None) -> np.ndarray:
    values = ranking.ratings if values is None else values
    index = {m: i for i, m in enumerate(ranking.models)}
    return np.array([values[index[m]] for m in models], dtype=float)


def pairwise_agreement(x: np.ndarray, y: np.ndarray) -> float:
    """Share of model pairs that x and y put in the same order (a pair tied in one but not the other disagrees)."""
    i, j = np.triu_indices(len(x), 1)
    return float(np.mean(np.sign(x[i] - x[j]) == np.sign(y[i] - y[j]))) if len(i) else float("nan")


def _metrics(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    constant = len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0
    return {"spearman": float("nan") if constant else float(spearmanr(x, y).statistic),
            "kendall": float("nan") if constant else float(kendalltau(x, y).statistic),
            "pairwise": pairwise_agreement(x, y),
            "max_abs_diff": float(np.max(np.abs(x - y))) if len(x) else float("nan"),
            "mean_abs_diff": float(np.mean(np.abs(x - y))) if len(x) else float("nan"),
            "spread_ratio": float(np.std(y) / np.std(x)) if len(x) > 1 and np.std(x) > 0 else float("nan")}


METRIC_NAMES = {"spearman": "Spearman correlation", "kendall": "Kendall tau", "pairwise": "pairs in the same order",
                "max_abs_diff": "max |rating difference|", "mean_abs_diff": "mean |rating difference|",
                "spread_ratio": "rating spread, judge / people"}


@dataclass
class Agreement:
    """How a judge's ranking compares with people's on the same battles (see the module docstring)."""

    models: list[str]
    human_ratings: np.ndarray
    judge_ratings: np.ndarray
    values: dict[str, float]
    intervals: dict[str, tuple[float, float]] | None = None  # percentile intervals from paired resamples
    ci: float = 0.95
    n_bootstrap: int = 0
    human_stability: float | None = None  # median Spearman of the human ranking with its own resamples
    notes: list[str] = field(default_factory=list)

    spearman = property(lambda self: self.values["spearman"])
    kendall = property(lambda self: self.values["kendall"])
    pairwise = property(lambda self: self.values["pairwise"])
    max_abs_diff = property(lambda self: self.values["max_abs_diff"])
    mean_abs_diff = property(lambda self: self.values["mean_abs_diff"])
    spread_ratio = property(lambda self: self.values["spread_ratio"])  # std of judge ratings / std of human ratings

    @property
    def human_rank(self) -> np.ndarray:
        return _ranks(self.human_ratings)

    @property
    def judge_rank(self) -> np.ndarray:
        return _ranks(self.judge_ratings)

    def table(self) -> pd.DataFrame:
        """One row per model, in the human order: model, human rank, judge rank, moved (judge rank - human rank;
        negative: the judge ranks it higher), human rating, judge rating, difference (judge - human)."""
        df = pd.DataFrame({"model": self.models, "human rank": self.human_rank, "judge rank": self.judge_rank,
                           "human rating": self.human_ratings, "judge rating": self.judge_ratings})
        df.insert(3, "moved", df["judge rank"] - df["human rank"])
        df["difference"] = df["judge rating"] - df["human rating"]
        return df.sort_values(["human rank", "model"]).reset_index(drop=True)

    def moved(self) -> pd.DataFrame:
        """The models whose rank differs between the two rankings, largest move first."""
        t = self.table()
        t = t[t["moved"] != 0]
        return t.reindex(t["moved"].abs().sort_values(ascending=False, kind="stable").index).reset_index(drop=True)

    def summary(self) -> pd.DataFrame:
        """One row per figure: metric, value, ci_low, ci_high (NaN without paired resamples)."""
        rows = []
        for key, name in METRIC_NAMES.items():
            low, high = (self.intervals or {}).get(key, (np.nan, np.nan))
            rows.append({"metric": name, "value": self.values[key], "ci_low": low, "ci_high": high})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {"models": len(self.models), **self.values,
                **{f"{k}_ci": list(v) for k, v in (self.intervals or {}).items()},
                "ci": self.ci, "n_bootstrap": self.n_bootstrap, "human_stability": self.human_stability,
                "moved": self.moved()[["model", "human rank", "judge rank"]].to_dict("records")}


def _ranks(ratings: np.ndarray) -> np.ndarray:
    """1 = best; equal ratings share the better rank."""
    r = np.asarray(ratings, dtype=float)
    return np.array([1 + int(np.sum(r > v)) for v in r])


def agreement(human: Ranking, judge: Ranking) -> Agreement:
    """Spearman, Kendall, pairwise order agreement and rating differences between two rankings of the same models
    (human first), with intervals when their bootstrap resamples are paired (`Ranking.paired_with`).

    >>> a = agreement(rank(records, bootstrap_by="prompt"), rank(judge_battles, bootstrap_by="prompt"))  # doctest: +SKIP
    >>> a.spearman, a.summary(), a.moved()  # doctest: +SKIP
    """
    models = _aligned(human, judge)
    h, j = _pick(human, models), _pick(judge, models)
    result = Agreement(models, h, j, _metrics(h, j), ci=human.ci, n_bootstrap=min(human.n_bootstrap, judge.n_bootstrap))
    if set(models) != set(human.models) | set(judge.models):
        result.notes.append(f"compared on the {len(models)} models both rankings rate")
    if human.n_bootstrap and judge.n_bootstrap:
        if human.paired_with(judge):
            draws = [_metrics(_pick(human, models, hb), _pick(judge, models, jb))
                     for hb, jb in zip(human.bootstrap_ratings, judge.bootstrap_ratings)]
            q = 100 * np.array([(1 - human.ci) / 2, (1 + human.ci) / 2])
            result.intervals = {}
            for key in METRIC_NAMES:
                values = np.array([d[key] for d in draws])
                values = values[np.isfinite(values)]
                if len(values):
                    result.intervals[key] = tuple(float(v) for v in np.percentile(values, q))
        else:
            result.notes.append("the two rankings did not draw the same resamples (different battles, unit or seed): "
                                "no intervals for the agreement")
        stability = [_metrics(h, _pick(human, models, hb))["spearman"] for hb in human.bootstrap_ratings]
        stability = [s for s in stability if np.isfinite(s)]
        result.human_stability = float(np.median(stability)) if stability else None
    return result
