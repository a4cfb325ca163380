"""Bradley-Terry ratings of models from their battles, on the Elo-like arena scale.

The fit is LMSYS's: a logistic regression with one column per model (+1 for model A, -1 for model B), no
intercept, a tie counted as half a win each way (two half-weighted rows), ratings = 1000 + 400/ln(10) * the
coefficients centred on their mean. Intervals come from resampling battles (percentile bootstrap), or whole
prompts (`bootstrap_by="prompt"`: every battle on a prompt enters or leaves a resample together).
With style control the log-ratio of the two answers' lengths is an extra column, so a model's rating is what
it would earn against an opponent answering at the same length.

Outcomes may be fractional: a battle carries shares (A wins, B wins, tie) summing to 1, a one-hot vector for a
vote, the vote shares of several annotators, or a judge's probabilities. With the default tie model ("half")
a battle enters as A's score p_a + p_tie / 2, i.e. two rows weighted by that score and its complement, which
for a vote is exactly LMSYS's fit. Two tie models fit the tie share itself, by maximum likelihood (scipy):
- Davidson (1970): P(A) : P(B) : P(tie) = e^(d/2) : e^(-d/2) : nu, with d the rating difference in log-odds;
  nu is fitted (P(tie) of two equal models = nu / (2 + nu)).
- Rao-Kupper (1967): P(A) = sigmoid(d - eta), P(B) = sigmoid(-d - eta), P(tie) the rest, eta >= 0 fitted
  (P(tie) of two equal models = tanh(eta / 2)).
In all three, P(A) / P(B) grows with d, and 400 rating points are a factor of 10 in that ratio for Davidson
and "half" (approximately, for Rao-Kupper).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize
from scipy.sparse.csgraph import connected_components
from scipy.special import expit, log_expit, logsumexp
from sklearn.linear_model import LogisticRegression

from arenapref.data.record import A_WINS, B_WINS, TIE, PairRecord, hard_labels, has_text
from arenapref.errors import UsageError
from arenapref.text.features import response_chars

SCALE = 400 / np.log(10)  # rating points per unit of log-odds: 400 points = a factor of 10 in odds
INIT_RATING = 1000.0
# Weak L2: negligible beside the evidence when every rating is identified, but it keeps the ratings finite
# when they are not (a model that wins every battle, or two groups of models that never met).
C = 1e3
TIE_MODELS = ("half", "davidson", "rao-kupper")
BOOTSTRAP_UNITS = ("battle", "prompt")
ONE_HOT = np.eye(3)


@dataclass
class Battles:
    """One row per battle: model indices into `models`, outcome for A (1 win, 0.5 tie, 0 loss; fractional for
    shares), and the log-ratio of the lengths (characters over all turns) of A's and B's answers.

    `probs` holds each battle's shares (A wins, B wins, tie); `prompt_groups` the prompt each battle is on (the unit of
    `bootstrap_by="prompt"`; a battle without text is its own group); `row_ids` the records' ids."""

    models: list[str]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    log_length_ratio: np.ndarray
    skipped: int = 0  # records without two different model names or without a label
    probs: np.ndarray | None = None
    prompt_groups: np.ndarray | None = None
    row_ids: tuple[str, ...] | None = None
    textless: int = 0  # battles whose records carry no texts (battle logs): no lengths for style control

    def __post_init__(self):
        if self.probs is None:
            y = np.asarray(self.outcome, dtype=float)
            self.probs = np.where((y == 0.5)[:, None], ONE_HOT[TIE], np.c_[y, 1 - y, np.zeros(len(y))])
        self.probs = np.asarray(self.probs, dtype=float)
        if self.prompt_groups is None:
            self.prompt_groups = np.arange(len(self.a))

    def __len__(self) -> int:
        return len(self.a)

    def groups(self) -> int:
        """How many groups of models never met, directly or through others (1 = all comparable)."""
        m = len(self.models)
        graph = sparse.coo_matrix((np.ones(len(self.a)), (self.a, self.b)), shape=(m, m))
        return int(connected_components(graph, directed=False)[0])

    def counts(self) -> pd.DataFrame:
        """Battles, wins, ties and losses per model (expected counts, to 0.1, when outcomes are fractional)."""
        m = len(self.models)
        p = self.probs
        battles = np.bincount(self.a, minlength=m) + np.bincount(self.b, minlength=m)
        wins = np.bincount(self.a, p[:, A_WINS], m) + np.bincount(self.b, p[:, B_WINS], m)
        ties = np.bincount(self.a, p[:, TIE], m) + np.bincount(self.b, p[:, TIE], m)
        losses = battles - wins - ties
        whole = bool(np.isin(p, (0.0, 1.0)).all())
        cast = (lambda v: np.rint(v).astype(int)) if whole else (lambda v: np.round(v, 1))
        return pd.DataFrame({"model": self.models, "battles": battles.astype(int), "wins": cast(wins),
                             "ties": cast(ties), "losses": cast(losses)})


def battles_from_records(records: Sequence[PairRecord], probs: np.ndarray | None = None,
                         soft: bool = False) -> Battles:
    """Battles of the records that name two different models.

    Args:
        records: pairs with model names.
        probs: (len(records), 3) outcome shares to use instead of the labels (a judge's probabilities); then
            records need no labels.
        soft: use each record's soft label (annotators' vote shares) where it has one, instead of its hard label.

    Returns:
        Battles; records without two different model names (or, without `probs`, without a label) are counted
        in `skipped`.
    """
    if probs is not None:
        probs = np.asarray(probs, dtype=float)
        if probs.shape != (len(records), 3):
            raise ValueError(f"probs has shape {probs.shape}; expected ({len(records)}, 3), one row per record")
    keep = [i for i, r in enumerate(records) if r.model_a and r.model_b and r.model_a != r.model_b
            and (probs is not None or r.label is not None or r.soft_label is not None)]
    usable = [records[i] for i in keep]
    models = sorted({m for r in usable for m in (r.model_a, r.model_b)})
    index = {m: i for i, m in enumerate(models)}
    if probs is not None:
        shares = probs[keep] if keep else np.zeros((0, 3))
    elif soft:
        shares = np.array([r.soft_label if r.soft_label is not None else ONE_HOT[r.label] for r in usable]).reshape(-1, 3)
    else:
        shares = ONE_HOT[hard_labels(usable)] if usable else np.zeros((0, 3))
    texts = [has_text(r) for r in usable]
    prompt_index: dict[str, int] = {}
    groups = []
    for r, t in zip(usable, texts):  # a battle without text has no prompt to share: it is its own group
        key = r.prompt_key if t else f"\x00{r.id}"
        groups.append(prompt_index.setdefault(key, len(prompt_index)))
    return Battles(
        models=models,
        a=np.array([index[r.model_a] for r in usable], dtype=int),
        b=np.array([index[r.model_b] for r in usable], dtype=int),
        outcome=(shares[:, A_WINS] + shares[:, TIE] / 2).astype(float),
        log_length_ratio=np.array([np.log((response_chars(r.response_a) + 1) / (response_chars(r.response_b) + 1))
                                   for r in usable], dtype=float),
        skipped=len(records) - len(usable),
        probs=shares,
        prompt_groups=np.array(groups, dtype=int),
        row_ids=tuple(r.id for r in usable),
        textless=int(len(texts) - sum(texts)),
    )


def fit_bt(battles: Battles, weights: np.ndarray | None = None, style_control: bool = False) -> tuple[np.ndarray, float | None]:
    """Coefficients (log-odds, uncentred; NaN for a model with no weighted battle) and the style coefficient."""
    m = len(battles.models)
    w = np.ones(len(battles)) if weights is None else np.asarray(weights, dtype=float)
    keep = w > 0
    a, b, y, w, s = battles.a[keep], battles.b[keep], battles.outcome[keep], w[keep], battles.log_length_ratio[keep]
    present = np.bincount(a, minlength=m) + np.bincount(b, minlength=m) > 0
    # A battle with score y for A is a win for A weighted y plus a win for B weighted 1 - y: a tie is two
    # half-weighted rows, a vote one row (its zero-weight twin is dropped below).
    a, b, s = np.r_[a, a], np.r_[b, b], np.r_[s, s]
    w = np.r_[w * y, w * (1 - y)]
    y = np.r_[np.ones(len(y)), np.zeros(len(y))]
    nonzero = w > 0
    a, b, s, w, y = a[nonzero], b[nonzero], s[nonzero], w[nonzero], y[nonzero]
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


def _tie_model_loss(params, a, b, s, counts, m, tie_model, style_control):
    """Negative log-likelihood (+ the same weak L2 on the ratings as fit_bt) and its gradient."""
    beta = params[:m]
    tie = params[m]
    gamma = params[m + 1] if style_control else 0.0
    d = beta[a] - beta[b] + gamma * s
    ca, cb, ct = counts[:, 0], counts[:, 1], counts[:, 2]
    n = ca + cb + ct
    if tie_model == "davidson":
        # a softmax over (d/2, -d/2, log nu)
        z = np.c_[d / 2, -d / 2, np.full(len(d), tie)]
        logp = z - logsumexp(z, axis=1, keepdims=True)
        nll = -(counts * logp).sum()
        resid = n[:, None] * np.exp(logp) - counts  # d nll / d z
        g_d = (resid[:, 0] - resid[:, 1]) / 2
        g_tie = resid[:, 2].sum()
    else:  # rao-kupper, eta = tie >= 0
        eta = tie
        la, lb = log_expit(d - eta), log_expit(-d - eta)
        u, v = expit(eta - d), expit(-eta - d)  # P(tie) = u - v
        pt = np.maximum(u - v, 1e-300)
        lt = np.log(pt)
        nll = -(ca * la + cb * lb + np.where(ct > 0, ct * lt, 0.0)).sum()
        du, dv = u * (1 - u), v * (1 - v)
        dlt_dd = (-du + dv) / pt
        dlt_deta = (du + dv) / pt
        g_d = -(ca * expit(eta - d) - cb * expit(d + eta) + np.where(ct > 0, ct * dlt_dd, 0.0))
        g_tie = -(-ca * expit(eta - d) - cb * expit(d + eta) + np.where(ct > 0, ct * dlt_deta, 0.0)).sum()
    grad = np.zeros_like(params)
    np.add.at(grad, a, g_d)
    np.add.at(grad, b, -g_d)
    grad[m] = g_tie
    if style_control:
        grad[m + 1] = (g_d * s).sum()
    nll += (beta ** 2).sum() / (2 * C)
    grad[:m] += beta / C
    return nll, grad


def fit_tie_model(battles: Battles, weights: np.ndarray | None = None, style_control: bool = False,
                  tie_model: str = "davidson") -> tuple[np.ndarray, float | None, float]:
    """Davidson's or Rao-Kupper's model by maximum likelihood on the battles' (weighted) outcome shares.

    Returns:
        (coefficients as in fit_bt, style coefficient or None, tie parameter: log nu for Davidson, eta for
        Rao-Kupper).
    """
    if tie_model not in ("davidson", "rao-kupper"):
        raise UsageError(f"tie model {tie_model!r}: choose davidson or rao-kupper (or half, fitted by fit_bt)")
    m = len(battles.models)
    w = np.ones(len(battles)) if weights is None else np.asarray(weights, dtype=float)
    keep = w > 0
    a, b, s = battles.a[keep], battles.b[keep], battles.log_length_ratio[keep]
    counts = battles.probs[keep] * w[keep, None]
    present = np.bincount(a, minlength=m) + np.bincount(b, minlength=m) > 0
    if not style_control:  # one row per ordered pair, with summed expected counts
        key, inverse = np.unique(a * m + b, return_inverse=True)
        counts = np.stack([np.bincount(inverse, counts[:, k]) for k in range(3)], axis=1)
        a, b, s = key // m, key % m, np.zeros(len(key))
    tie_share = counts[:, 2].sum() / max(counts.sum(), 1e-12)
    share = min(max(tie_share, 1e-3), 0.99)
    # start from the tie parameter that gives the observed tie share between equal models
    start_tie = np.log(2 * share / (1 - share)) if tie_model == "davidson" else 2 * np.arctanh(share)
    x0 = np.r_[np.zeros(m), start_tie, [0.0] if style_control else []]
    bounds = [(None, None)] * m + [(None, None) if tie_model == "davidson" else (1e-8, None)]
    bounds += [(None, None)] if style_control else []
    result = minimize(_tie_model_loss, x0, args=(a, b, s, counts, m, tie_model, style_control), jac=True,
                      method="L-BFGS-B", bounds=bounds, options={"maxiter": 5000, "gtol": 1e-9, "ftol": 1e-15})
    x = result.x
    beta = np.where(present, x[:m], np.nan)
    return beta, (float(x[m + 1]) if style_control else None), float(x[m])


def fit(battles: Battles, weights: np.ndarray | None = None, style_control: bool = False,
        tie_model: str = "half") -> tuple[np.ndarray, float | None, float | None]:
    """(coefficients, style coefficient, tie parameter) of the chosen tie model; see the module docstring."""
    if tie_model == "half":
        beta, style = fit_bt(battles, weights, style_control)
        return beta, style, None
    return fit_tie_model(battles, weights, style_control, tie_model)


def to_ratings(beta: np.ndarray) -> np.ndarray:
    """Log-odds coefficients -> arena scale, mean 1000 over the models that have a coefficient."""
    return INIT_RATING + SCALE * (beta - np.nanmean(beta))


def outcome_probabilities(d: np.ndarray, tie_model: str = "half", tie_param: float | None = None) -> np.ndarray:
    """(..., 3) P(A wins), P(B wins), P(tie) for rating differences `d` in log-odds under a tie model
    ("half" has no tie class: its P(A) is the expected score, P(tie) 0)."""
    d = np.asarray(d, dtype=float)
    if tie_model == "half":
        p = expit(d)
        return np.stack([p, 1 - p, np.zeros_like(p)], axis=-1)
    if tie_model == "davidson":
        z = np.stack([d / 2, -d / 2, np.full_like(d, tie_param)], axis=-1)
        return np.exp(z - logsumexp(z, axis=-1, keepdims=True))
    if tie_model == "rao-kupper":
        pa, pb = expit(d - tie_param), expit(-d - tie_param)
        return np.stack([pa, pb, 1 - pa - pb], axis=-1)
    raise UsageError(f"tie model {tie_model!r}: choose one of {', '.join(TIE_MODELS)}")


def win_rates(ratings: np.ndarray, tie_model: str = "half", tie_param: float | None = None) -> np.ndarray:
    """P(row model beats column model), a tie counted as half: 1 / (1 + 10^((R_col - R_row) / 400)) for the
    default tie model, P(win) + P(tie) / 2 under Davidson's or Rao-Kupper's."""
    r = np.asarray(ratings, dtype=float)
    d = (r[:, None] - r[None, :]) / SCALE
    p = outcome_probabilities(d, tie_model, tie_param)
    w = p[..., A_WINS] + p[..., TIE] / 2
    np.fill_diagonal(w, np.nan)
    return w


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
    tie_model: str = "half"
    tie_param: float | None = None  # Davidson: log nu; Rao-Kupper: eta
    bootstrap_by: str = "battle"
    seed: int = 0
    bootstrap_units: np.ndarray = field(default=None, repr=False)  # the resampled unit of each battle
    row_ids: tuple[str, ...] | None = field(default=None, repr=False)

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
        return pd.DataFrame(win_rates(self.ratings[idx], self.tie_model, self.tie_param),
                            index=pd.Index(order, name="model"), columns=order)

    @property
    def style_points_per_doubling(self) -> float | None:
        """The style coefficient in rating points: what answering twice as long as the opponent is worth."""
        return None if self.style_coef is None else self.style_coef * np.log(2) * SCALE

    @property
    def tie_rate_between_equals(self) -> float | None:
        """P(tie) of two equally rated models under the fitted tie model (None for "half")."""
        if self.tie_param is None:
            return None
        return float(outcome_probabilities(np.array(0.0), self.tie_model, self.tie_param)[TIE])

    def paired_with(self, other: "Ranking") -> bool:
        """Whether the two rankings' bootstrap resamples drew the same units (same battles, unit, seed and count),
        so resample k of one and resample k of the other are the same data."""
        return (self.n_bootstrap == other.n_bootstrap and self.seed == other.seed
                and self.bootstrap_by == other.bootstrap_by and self.row_ids is not None
                and self.row_ids == other.row_ids and self.bootstrap_units is not None
                and other.bootstrap_units is not None and np.array_equal(self.bootstrap_units, other.bootstrap_units))


def bootstrap_weights(units: np.ndarray, n_bootstrap: int, seed: int):
    """Per resample, each battle's weight: how often its unit (battle or prompt) was drawn, with replacement."""
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(units, return_inverse=True)
    g = int(inverse.max()) + 1 if len(inverse) else 0
    for _ in range(n_bootstrap):
        yield rng.multinomial(g, np.full(g, 1 / g))[inverse]


def rank(records_or_battles: Sequence[PairRecord] | Battles, n_bootstrap: int = 200, seed: int = 0,
         style_control: bool = False, ci: float = 0.95, tie_model: str = "half", bootstrap_by: str = "battle") -> Ranking:
    """Ratings with bootstrap intervals.

    Args:
        records_or_battles: records with model names and labels, or Battles (e.g. with a judge's probabilities).
        n_bootstrap: resamples for the intervals (0: none).
        seed: seed of the resampling; two rankings of the same battles with the same seed and unit draw the same
            resamples (`Ranking.paired_with`), which is what agreement intervals rely on.
        style_control: add log(len A / len B) as a covariate (needs texts).
        ci: interval coverage.
        tie_model: "half" (ties half a win each way, LMSYS's), "davidson" or "rao-kupper".
        bootstrap_by: "battle" (resample battles) or "prompt" (resample prompts with all their battles).
    Returns:
        Ranking: `.table()` (rank, model, rating, ci_low, ci_high, battles, ...), `.win_rate_matrix()`.

    >>> print(rank(read_pairs("arena_votes_2023.csv")[0], n_bootstrap=100).table().head())  # doctest: +SKIP
    """
    if tie_model not in TIE_MODELS:
        raise UsageError(f"tie model {tie_model!r}: choose one of {', '.join(TIE_MODELS)}")
    if bootstrap_by not in BOOTSTRAP_UNITS:
        raise UsageError(f"bootstrap unit {bootstrap_by!r}: choose one of {', '.join(BOOTSTRAP_UNITS)}")
    battles = records_or_battles if isinstance(records_or_battles, Battles) else battles_from_records(records_or_battles)
    if len(battles.models) < 2:
        raise UsageError(f"ranking needs battles between at least two named models; found {len(battles.models)} model(s) "
                         f"in {len(battles)} usable rows ({battles.skipped} rows lack model names or a label)")
    if style_control and battles.textless:
        raise UsageError(f"--style-control needs the answers' lengths, but {battles.textless} of {len(battles)} battles "
                         "come from a battle log without texts; rank them without style control, or give battles "
                         "with texts (prompt, response_a, response_b)")
    beta, style, tie_param = fit(battles, style_control=style_control, tie_model=tie_model)
    ratings = to_ratings(beta)
    units = battles.prompt_groups if bootstrap_by == "prompt" else np.arange(len(battles))
    boot = np.full((n_bootstrap, len(battles.models)), np.nan)
    boot_style = np.full(n_bootstrap, np.nan)
    for k, weights in enumerate(bootstrap_weights(units, n_bootstrap, seed)):
        beta_k, style_k, _ = fit(battles, weights, style_control, tie_model)
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
                   skipped=battles.skipped, groups=battles.groups(), bootstrap_ratings=boot,
                   tie_model=tie_model, tie_param=tie_param, bootstrap_by=bootstrap_by, seed=seed,
                   bootstrap_units=units, row_ids=battles.row_ids)
