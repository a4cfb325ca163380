"""Matplotlib figures rendered to inline SVG: the page needs no files and no network to show them."""

from __future__ import annotations

import io
import re
from typing import Sequence

import numpy as np
import pandas as pd

from arenapref.report.analysis import SHORT

COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]
BASELINE_COLORS = {"uniform": "#bbbbbb", "prior": "#888888", "data labels": "#222222"}
RC = {"svg.hashsalt": "arenapref", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
      "axes.titlesize": 10, "legend.fontsize": 8, "legend.frameon": False}


def _figure(ncols: int = 1, width: float = 4.2, height: float = 3.2):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def color_of(name: str, names: Sequence[str]) -> str:
    if name in BASELINE_COLORS:
        return BASELINE_COLORS[name]
    models = [n for n in names if n not in BASELINE_COLORS]
    return COLORS[models.index(name) % len(COLORS)] if name in models else COLORS[0]


def to_svg(fig, key: str) -> str:
    """The figure as an <svg> element whose ids are prefixed with `key`, so that several figures can share a page
    (matplotlib names glyphs and clip paths the same way in every file)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    if ids:
        pattern = re.compile(r'(\bid="|href="#|url\(#)(' + "|".join(map(re.escape, sorted(ids, key=len, reverse=True))) + r')(?=[")])')
        svg = pattern.sub(lambda m: f"{m.group(1)}{key}-{m.group(2)}", svg)
    return svg


def _with_rc(fn):
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(RC):
            return fn(*args, **kwargs)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_with_rc
def length_distribution(records_by_source: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Histograms of response and prompt length (characters, log scale), one line per source."""
    fig, (ax_r, ax_p) = _figure(2)
    every = np.concatenate([np.r_[r, p] for r, p in records_by_source.values()]) + 1
    bins = np.logspace(0, np.log10(max(every.max(), 10)) + 0.05, 40)
    names = list(records_by_source)
    for i, (name, (resp, prompt)) in enumerate(records_by_source.items()):
        color = COLORS[i % len(COLORS)]
        ax_r.hist(resp + 1, bins=bins, histtype="step", color=color, label=name, density=False)
        ax_p.hist(prompt + 1, bins=bins, histtype="step", color=color, label=name, density=False)
    for ax, what in ((ax_r, "response"), (ax_p, "prompt (all turns)")):
        ax.set_xscale("log")
        ax.set_xlabel(f"{what} length, characters + 1")
        ax.set_ylabel("count")
    ax_r.set_title("response length")
    ax_p.set_title("prompt length")
    if len(names) > 1:
        ax_r.legend()
    return fig


@_with_rc
def reliability_diagram(tables: dict[str, pd.DataFrame], min_rows: int = 10):
    """One panel per class: observed frequency against mean predicted probability per bin, one line per model;
    bins with fewer than `min_rows` rows are left out (their frequency is noise)."""
    fig, axes = _figure(3, width=3.3, height=3.3)
    names = list(tables)
    for k, ax in enumerate(axes):
        ax.plot([0, 1], [0, 1], color="#cccccc", lw=1, ls="--")
        for name, rel in tables.items():
            g = rel[(rel["class"] == SHORT[k]) & (rel["rows"] >= min_rows)]
            ax.plot(g["predicted"], g["observed"], marker="o", ms=3, lw=1.2, color=color_of(name, names), label=name)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_title(f"P({SHORT[k]})")
        ax.set_xlabel("mean predicted")
    axes[0].set_ylabel("observed frequency")
    axes[0].legend(loc="upper left")
    return fig


@_with_rc
def confusion_matrices(matrices: dict[str, np.ndarray]):
    """Row-normalised confusion matrices (true label by row), counts in the cells."""
    fig, axes = _figure(len(matrices), width=3.0, height=2.9)
    for ax, (name, m) in zip(axes, matrices.items()):
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(3):
            for j in range(3):
                ax.text(j, i, f"{m[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(3), SHORT)
        ax.set_yticks(range(3), SHORT)
        ax.set_xlabel("predicted")
        ax.set_title(name)
        for side in ("top", "right"):
            ax.spines[side].set_visible(True)
    axes[0].set_ylabel("true")
    return fig


@_with_rc
def loss_breakdowns(tables: dict[str, pd.DataFrame], models: Sequence[str]):
    """Grouped bars: log loss of every model and baseline per group, one panel per breakdown."""
    fig, axes = _figure(len(tables), width=4.0, height=3.2)
    for ax, (title, df) in zip(axes, tables.items()):
        x = np.arange(len(df))
        width = 0.8 / len(models)
        for i, name in enumerate(models):
            ax.bar(x - 0.4 + width * (i + 0.5), df[name], width, color=color_of(name, models), label=name)
        ax.set_xticks(x, [str(g) for g in df["group"]], rotation=30, ha="right")
        ax.set_title(f"by {title}")
        ax.set_ylabel("log loss")
        ax.axhline(np.log(3), color="#bbbbbb", lw=0.8, ls=":")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=len(models))
    return fig


@_with_rc
def swap_scatter(original: np.ndarray, swapped_back: np.ndarray):
    """P(A wins) as shown against P(A wins) when the answers are swapped, and the histogram of the change."""
    fig, (ax, ax_h) = _figure(2, width=3.6, height=3.3)
    ax.plot([0, 1], [0, 1], color="#cccccc", lw=1, ls="--")
    ax.scatter(original[:, 0], swapped_back[:, 0], s=4, alpha=0.4, color=COLORS[0], rasterized=True)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("P(A wins), A shown first")
    ax.set_ylabel("P(A wins), A shown second")
    ax.set_title("the same pair in both orders")
    ax_h.hist(swapped_back[:, 0] - original[:, 0], bins=40, color=COLORS[0])
    ax_h.set_xlabel("change of P(A wins) on swap")
    ax_h.set_ylabel("pairs")
    ax_h.set_title("change on swap")
    return fig


@_with_rc
def length_bias_lines(by_ratio: pd.DataFrame, sources: Sequence[str]):
    """Share of wins going to the longer answer per length-ratio bucket: labels and each model."""
    fig, axes = _figure(1, width=5.2, height=3.2)
    ax = axes[0]
    x = np.arange(len(by_ratio))
    for name in sources:
        ax.plot(x, by_ratio[name], marker="o", ms=4, color=color_of(name, sources), label=name,
                lw=2 if name == "data labels" else 1.2)
    ax.axhline(0.5, color="#cccccc", lw=1, ls="--")
    ax.set_xticks(x, [f"{r}\n({n} pairs)" for r, n in zip(by_ratio["length ratio"], by_ratio["pairs"])])
    ax.set_ylim(0, 1)
    ax.set_xlabel("longer answer's length / shorter answer's length")
    ax.set_ylabel("longer answer's share of wins")
    ax.legend()
    return fig


@_with_rc
def ranking_intervals(table: pd.DataFrame, ci: float):
    """Ratings with their bootstrap intervals, best at the top."""
    n = len(table)
    fig, axes = _figure(1, width=6.0, height=max(1.6, 0.28 * n + 0.9))
    ax = axes[0]
    y = np.arange(n)[::-1]
    rating = table["rating"].to_numpy(float)
    low = table["ci_low"].to_numpy(float)
    high = table["ci_high"].to_numpy(float)
    err = np.vstack([np.nan_to_num(rating - low), np.nan_to_num(high - rating)])
    ax.errorbar(rating, y, xerr=np.clip(err, 0, None), fmt="o", ms=4, color=COLORS[0], ecolor="#9bb0d3", capsize=2)
    ax.set_yticks(y, table["model"])
    ax.axvline(1000, color="#cccccc", lw=1, ls="--")
    ax.set_xlabel(f"rating (Bradley-Terry, mean 1000; {ci:.0%} bootstrap interval)")
    return fig


@_with_rc
def agreement_scatter(table: pd.DataFrame, title: str):
    """People's rating against the judge's, one point per model (agreement.table()); the diagonal is agreement."""
    fig, axes = _figure(1, width=4.6, height=4.0)
    ax = axes[0]
    x, y = table["human rating"].to_numpy(float), table["judge rating"].to_numpy(float)
    ax.scatter(x, y, s=18, color=COLORS[0])
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="#cccccc", lw=1, ls="--")
    if len(table) <= 12:
        for name, a, b in zip(table["model"], x, y):
            ax.annotate(str(name), (a, b), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("people's rating")
    ax.set_ylabel("judge's rating")
    ax.set_title(title, fontsize=9)
    return fig
