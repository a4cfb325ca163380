"""Bradley-Terry ratings of models from their battles, on the Elo-like arena scale.

The fit is LMSYS's: a logistic regression with one column per model (+1 for model A, -1 for model B), no
intercept, a tie counted as half a win each way (two half-weighted rows), ratings = 1000 + 400/ln(10) * the
coefficients centred on their mean. Intervals come from resampling battles (percentile bootstrap).
With style control the log-ratio of the two answers' lengths is an extra column, so a model's rating is what
it would earn against an opponent answering at the same length.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from sklearn.linear_model import LogisticRegression

from arenapref.data.record import A_WINS, B_WINS, TIE, PairRecord, hard_labels
from arenapref.errors import UsageError
from arenapref.text.features import response_chars

SCALE = 400 / np.log(10)  # rating points per unit of log-odds: 400 points = a factor of 10 in odds
INIT_RATING = 1000.0
# Weak L2: negligible beside the evidence when every rating is identified, but it keeps the ratings finite
# when they are not (a model that wins every battle, or two groups of models that never met).
C = 1e3


@dataclass
class Battles:
    """One row per battle: model indices into `models`, outcome for A (1 win, 0.5 tie, 0 loss), and the
    log-ratio of the lengths (characters over all turns) of A's and B's answers."""

    models: list[str]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    log_length_ratio: np.ndarray
    skipped: int = 0  # records without two different model names or without a label

    def __len__(self) -> int:
        return len(self.a)

    def groups(self) -> int:
        """How many groups of models never met, directly or through others (1 = all comparable)."""
        m = len(self.models)
        graph = sparse.coo_matrix((np.ones(len(self.a)), (self.a, self.b)), shape=(m, m))
        return int(connected_components(graph, directed=False)[0])

    def counts(self) -> pd.DataFrame:
        """Battles, wins, ties and losses per model."""
        m = len(self.models)
        battles = np.bincount(self.a, minlength=m) + np.bincount(self.b, minlength=m)
        wins = np.bincount(self.a, self.outcome == 1, m) + np.bincount(self.b, self.outcome == 0, m)
        ties = np.bincount(self.a, self.outcome == 0.5, m) + np.bincount(self.b, self.outcome == 0.5, m)
        return pd.DataFrame({"model": self.models, "battles": battles.astype(int), "wins": wins.astype(int),
                             "ties": ties.astype(int), "losses": (battles - wins - ties).astype(int)})


def battles_from_records(records: Sequence[PairRecord]) -> Battles:
    usable = [r for r in records if r.model_a and r.model_b and r.model_a != r.model_b
              and (r.label is not None or r.soft_label is not None)]
    models = sorted({m for r in usable for m in (r.model_a, r.model_b)})
    index = {m: i for i, m in enumerate(models)}
    labels = hard_labels(usable) if usable else np.zeros(0, int)
    outcome = np.select([labels == A_WINS, labels == B_WINS, labels == TIE], [1.0, 0.0, 0.5], np.nan)
    return Battles(
        models=models,
        a=np.array([index[r.model_a] for r in usable], dtype=int),
        b=np.array([index[r.model_b] for r in usable], dtype=int),
        outcome=outcome.astype(float),
        log_length_ratio=np.array([np.log((response_chars(r.response_a) + 1) / (response_chars(r.response_b) + 1))
                                   for r in usable], dtype=float),
        skipped=len(records) - len(usable),
    )


def fit_bt(battles: Battles, weights: np.ndarray | None = None, style_control: bool = False) -> tuple[np.ndarray, float | None]:
    """Coefficients (log-odds, uncentred; NaN for a model with no weighted battle) and the style coefficient."""
    m = len(battles.models)
    w = np.ones(len(battles)) if weights is None else np.asarray(weights, dtype=float)
    keep = w > 0
    a, b, y, w, s = battles.a[keep], battles.b[keep], battles.outcome[keep], w[keep], battles.log_length_ratio[keep]
    present = np.bincount(a, minlength=m) + np.bincount(b, minlength=m) > 0
    # A tie is a half win for A plus a half win for B: two rows, each with half the battle's weight.
    tie = y == 0.5
    a, b, s = np.r_[a, a[tie]], np.r_[b, b[tie]], np.r_[s, s[tie]]
    w = np.r_[np.where(tie, w / 2, w), w[tie] / 2]
    y = np.r_[np.where(tie, 1.0, y), np.zeros(tie.sum())]
    if not style_control:
        # Without a continuous column, battles of the same pair and result are one row with summed weight.
        key = (a * m + b) * 2 + y.astype(int)
        uniq, inverse = np.unique(key, return_inverse=True)
        w = np.bincount(inverse, w)
        a, b, y = uniq // 2 // m, uniq // 2 % m, (uniq % 2).astype(float)
        s = np.zeros(len(uniq))
    # Each row also enters mirrored (B's view, half the weight each): the likelihood is unchanged (there is no
    # intercept), and the regression always sees both classes, even when A happens to win every battle.
    n = len(a)
    rows = np.r_[np.arange(n), np.arange(n), np.arange(n, 2 * n), np.arange(n, 2 * n)]
    cols = np.r_[a, b, a, b]
    vals = np.r_[np.ones(n), -np.ones(n), -np.ones(n), np.ones(n)]
    X = sparse.csr_matrix((vals, (rows, cols)), shape=(2 * n, m))
    if style_control:
        X = sparse.hstack([X, sparse.csr_matrix(np.r_[s, -s][:, None])], format="csr")
    lr = LogisticRegression(C=C, fit_intercept=False, solver="newton-cholesky", tol=1e-10, max_iter=1000)
    lr.fit(X, np.r_[y, 1 - y], sample_weight=np.r_[w, w] / 2)
    coef = lr.coef_[0]
    beta = np.where(present, coef[:m], np.nan)
    return beta, (float(coef[m]) if style_control else None)


def to_ratings(beta: np.ndarray) -> np.ndarray:
    """Log-odds coefficients -> arena scale, mean 1000 over the models that have a coefficient."""
    return INIT_RATING + SCALE * (beta - np.nanmean(beta))


def win_rates(ratings: np.ndarray) -> np.ndarray:
    """P(row model beats column model), a tie counted as half: 1 / (1 + 10^((R_col - R_row) / 400))."""
    r = np.asarray(ratings, dtype=float)
    p = 1 / (1 + 10 ** ((r[None, :] - r[:, None]) / 400))
    np.fill_diagonal(p, np.nan)
    return p


@dataclass
class Ranking:
    models: list[str]
    ratings: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    counts: pd.DataFrame
    style_coef: float | None = None  # log-odds per unit of log(len A / len B)
    style_ci: tuple[float, float] | None = None
    n_bootstrap: int = 0
    ci: float = 0.95
    n_battles: int = 0
    skipped: int = 0
    groups: int = 1  # connected groups of models in the battle graph; ratings compare only within one
    bootstrap_ratings: np.ndarray = field(default=None, repr=False)  # (n_bootstrap, n_models)

    def table(self) -> pd.DataFrame:
        """One row per model, best first: rank, model, rating, ci_low, ci_high, battles, wins, ties, losses."""
        df = pd.DataFrame({"model": self.models, "rating": self.ratings, "ci_low": self.ci_low, "ci_high": self.ci_high})
        df = df.merge(self.counts, on="model").sort_values(["rating", "model"], ascending=[False, True])
        df.insert(0, "rank", np.arange(1, len(df) + 1))
        return df.reset_index(drop=True)

    def win_rate_matrix(self) -> pd.DataFrame:
        """Predicted win rates between every pair, rows and columns in rank order."""
        order = self.table()["model"].tolist()
        idx = [self.models.index(m) for m in order]
        return pd.DataFrame(win_rates(self.ratings[idx]), index=pd.Index(order, name="model"), columns=order)

    @property
    def style_points_per_doubling(self) -> float | None:
        """The style coefficient in rating points: what answering twice as long as the opponent is worth."""
        return None if self.style_coef is None else self.style_coef * np.log(2) * SCALE


def rank(records_or_battles: Sequence[PairRecord] | Battles, n_bootstrap: int = 200, seed: int = 0,
         style_control: bool = False, ci: float = 0.95) -> Ranking:
    """Bradley-Terry ratings of the models in `records_or_battles` (records with model names and labels).

    Args:
        records_or_battles: PairRecords (battle logs, arena files, PandaLM, ...) or a prepared `Battles`.
        n_bootstrap: resamples of the battles for the intervals (0: none).
        seed: of the bootstrap.
        style_control: add log(len A / len B) as a covariate (ratings at equal answer length).
        ci: interval coverage.
    Returns:
        Ranking: `.table()` (rank, model, rating, ci_low, ci_high, battles, ...), `.win_rate_matrix()`.

    >>> print(rank(read_pairs("arena_votes_2023.csv")[0], n_bootstrap=100).table().head())  # doctest: +SKIP
    """
    battles = records_or_battles if isinstance(records_or_battles, Battles) else battles_from_records(records_or_battles)
    if len(battles.models) < 2:
        raise UsageError(f"ranking needs battles between at least two named models; found {len(battles.models)} model(s) "
                         f"in {len(battles)} usable rows ({battles.skipped} rows lack model names or a label)")
    beta, style = fit_bt(battles, style_control=style_control)
    ratings = to_ratings(beta)
    rng = np.random.default_rng(seed)
    n = len(battles)
    boot = np.full((n_bootstrap, len(battles.models)), np.nan)
    boot_style = np.full(n_bootstrap, np.nan)
    for k in range(n_bootstrap):
        weights = rng.multinomial(n, np.full(n, 1 / n))  # resampling battles with replacement, as counts
        beta_k, style_k = fit_bt(battles, weights, style_control)
        boot[k] = to_ratings(beta_k)
        boot_style[k] = np.nan if style_k is None else style_k
    q = 100 * np.array([(1 - ci) / 2, (1 + ci) / 2])
    low = high = np.full(len(ratings), np.nan)
    style_ci = None
    if n_bootstrap:
        with warnings.catch_warnings():  # a model absent from every resample keeps a NaN interval
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanpercentile(boot, q, axis=0)
        if style_control:
            style_ci = tuple(float(v) for v in np.nanpercentile(boot_style, q))
    return Ranking(models=list(battles.models), ratings=ratings, ci_low=low, ci_high=high, counts=battles.counts(),
                   style_coef=style, style_ci=style_ci, n_bootstrap=n_bootstrap, ci=ci, n_battles=len(battles),
                   skipped=battles.skipped, groups=battles.groups(), bootstrap_ratings=boot)
