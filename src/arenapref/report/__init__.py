"""`arenapref report`: one self-contained HTML page about a data set and the predictions made on it.

Sections (ids): overview, cv, reliability, confusion, breakdown, swap, length-bias, ranking. Every section is
always on the page; one that lacks what it needs (oof files, a model, model names) says so instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from arenapref._version import __version__
from arenapref.data.record import TIE, PairRecord, hard_labels, is_labelled
from arenapref.errors import UsageError
from arenapref.report import analysis, figures
from arenapref.report.analysis import parse_oof_arg
from arenapref.report.html import render, table_html

__all__ = ["ExtraSection", "Report", "SECTION_IDS", "build_report", "parse_oof_arg"]

SECTION_IDS = ("overview", "cv", "reliability", "confusion", "breakdown", "swap", "length-bias", "ranking", "agreement")


@dataclass
class ExtraSection:
    """A section a caller adds to the page (the demo's transfer and leaderboard results): tables under a title."""

    id: str
    title: str
    explain: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)


@dataclass
class Report:
    html: str
    sections: list[str]
    figures: list[str]  # ids of the figures on the page
    notes: list[str] = field(default_factory=list)  # what was left out, and why


class _Page:
    def __init__(self):
        self.sections: list[dict] = []
        self.figures: list[str] = []
        self.notes: list[str] = []

    def section(self, id_: str, title: str, explain: str = "") -> dict:
        s = {"id": id_, "title": title, "explain": explain, "notes": [], "blocks": []}
        self.sections.append(s)
        return s

    def note(self, s: dict, text: str) -> None:
        s["notes"].append(text)
        self.notes.append(f"{s['title']}: {text}")

    def table(self, s: dict, df: pd.DataFrame, title: str = "", **kw) -> None:
        s["blocks"].append({"kind": "table", "title": title, "html": table_html(df, **kw)})

    def figure(self, s: dict, key: str, fig, caption: str) -> None:
        fig_id = f"fig-{key}"
        s["blocks"].append({"kind": "figure", "id": fig_id, "svg": figures.to_svg(fig, fig_id), "caption": caption})
        self.figures.append(fig_id)


def build_report(records: Sequence[PairRecord], oof: Sequence[tuple[str, Path]] = (), model=None,
                 model_dir: Path | None = None, n_bootstrap: int = 200, seed: int = 0, title: str = "arenapref report",
                 inputs: Sequence[str] = (), agreements: Sequence[tuple[str, object]] = (),
                 extra_sections: Sequence[ExtraSection] = ()) -> Report:
    """The report page for labelled `records`: the oof files' scores beside the baselines, and with a loaded
    `model` (from `model_dir`) its swap consistency and length bias; `agreements` (name, leaderboard.Agreement)
    put judge-made rankings beside people's; `extra_sections` are added at the end.

    >>> page = build_report(records, [("features", Path("runs/cv/oof.csv"))]); Path("r.html").write_text(page.html)  # doctest: +SKIP
    """
    records = list(records)
    if not records:
        raise UsageError("the data has no rows")
    if not is_labelled(records):
        raise UsageError("the report needs labelled data (winner columns): the input has rows without labels")
    page = _Page()
    scored = analysis.align_oof(records, oof)
    if model is None and model_dir is not None:
        from arenapref.models import load_model

        model = load_model(model_dir)

    _overview(page, records)
    _cv(page, scored)
    _reliability(page, scored)
    _confusion(page, scored)
    _breakdown(page, scored)
    swap = _swap(page, records, model, model_dir)
    _length_bias(page, records, scored, swap)
    _ranking(page, records, n_bootstrap, seed)
    _agreement(page, agreements)
    for extra in extra_sections:
        s = page.section(extra.id, extra.title, extra.explain)
        for table_title, df in extra.tables:
            page.table(s, df, table_title)

    meta = (f"{len(records)} rows from {', '.join(inputs) or 'the given records'}; "
            f"{len(scored.models) if scored else 0} oof file(s){'; model ' + str(model_dir) if model_dir else ''}; "
            f"arenapref {__version__}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    html = render(title, meta, page.sections)
    return Report(html, [s["id"] for s in page.sections], page.figures, page.notes)


def _overview(page: _Page, records: list[PairRecord]) -> None:
    s = page.section("overview", "Data overview")
    d = analysis.overview(records)
    share = d["label_share"]
    kv = pd.DataFrame([
        ("rows", d["rows"]), ("A wins", f"{share['winner_model_a']:.1%}"), ("B wins", f"{share['winner_model_b']:.1%}"),
        ("tie rate", f"{d['tie_rate']:.1%}"), ("soft-labelled rows", d["soft_labelled"]),
        ("turns: mean / max", f"{d['turns']['mean']:.2f} / {d['turns']['max']}"),
        ("multi-turn share", f"{d['turns']['multi_turn_share']:.1%}"),
        ("prompt chars p50 / p90 / p99", " / ".join(str(d["chars"]["prompt"][f"p{q}"]) for q in (50, 90, 99))),
        ("response chars p50 / p90 / p99", " / ".join(str(d["chars"]["response"][f"p{q}"]) for q in (50, 90, 99))),
        ("identical responses", d["identical_responses"]), ("empty responses", d["empty_responses"]),
        ("models named", len(d["models"])),
    ], columns=["", "value"])
    page.table(s, kv)
    labels, sources = hard_labels(records), np.array([r.source for r in records])
    by_source = pd.DataFrame([{"source": src or "-", "rows": n, "tie rate": float(np.mean(labels[sources == src] == TIE))}
                              for src, n in sorted(d["sources"].items())])
    turns = pd.DataFrame({"turns": list(d["turn_counts"]), "rows": list(d["turn_counts"].values())})
    page.table(s, by_source, "sources", percent=["tie rate"])
    page.table(s, turns, "turns per pair")
    lengths = {}
    for src in sorted(d["sources"]):
        rs = [r for r in records if r.source == src]
        resp = np.array([sum(map(len, t)) for r in rs for t in (r.response_a, r.response_b)], dtype=float)
        prompt = np.array([sum(map(len, r.prompt)) for r in rs], dtype=float)
        lengths[src or "-"] = (resp, prompt)
    page.figure(s, "lengths", figures.length_distribution(lengths),
                "Length distributions (characters over all turns), one line per source.")


CV_EXPLAIN = ("Out-of-fold log loss (lower is better; uniform guessing scores ln 3 = 1.0986) and accuracy, pooled, "
              "per fold and per source. The prior baseline predicts the class shares of the other folds.")


def _cv(page: _Page, scored) -> None:
    s = page.section("cv", "Cross-validation scores", CV_EXPLAIN)
    if scored is None:
        page.note(s, "no oof file given (--oof oof.csv from `arenapref cv`): no scores")
        return
    for n in scored.notes:
        page.note(s, n)
    table = analysis.cv_table(scored)
    losses = [c for c in table.columns if c.endswith(" logloss")]
    page.table(s, table, best_lowest=losses, percent=[c for c in table.columns if c.endswith(" acc")])


def _reliability(page: _Page, scored) -> None:
    s = page.section("reliability", "Reliability",
                     "Observed frequency of each outcome against the mean predicted probability, in ten equal-width "
                     "bins; a calibrated model lies on the diagonal. ECE: the rows-weighted mean gap.")
    if scored is None:
        page.note(s, "needs an oof file")
        return
    y = scored.y
    names = ["prior", *scored.models]
    tables = {n: analysis.reliability(y, scored.probs[n]) for n in names}
    ece = pd.DataFrame([{"model": n, **{f"ECE {k}": v for k, v in analysis.expected_calibration_error(y, scored.probs[n]).items()}}
                        for n in names])
    page.table(s, ece)
    page.figure(s, "reliability", figures.reliability_diagram(tables), "Reliability per class (prior baseline in grey); bins of fewer than 10 rows are not drawn.")


def _confusion(page: _Page, scored) -> None:
    s = page.section("confusion", "Confusion matrix",
                     "True label by row, the most probable predicted label by column: counts and row shares.")
    if scored is None:
        page.note(s, "needs an oof file")
        return
    mats = {n: analysis.confusion(scored.y, scored.probs[n]) for n in scored.models}
    page.figure(s, "confusion", figures.confusion_matrices(mats), "Confusion matrices of the oof predictions.")


def _breakdown(page: _Page, scored) -> None:
    s = page.section("breakdown", "Log loss by length, source and turns",
                     "Where the models lose: out-of-fold log loss per slice beside the baselines (dotted line: ln 3). "
                     "Length buckets are quintiles of the total response length.")
    if scored is None:
        page.note(s, "needs an oof file")
        return
    tables = analysis.breakdowns(scored)
    names = list(scored.probs)
    for title, df in tables.items():
        page.table(s, df, f"by {title}", best_lowest=names, percent=["tie rate"])
    page.figure(s, "breakdown", figures.loss_breakdowns(tables, ["prior", *scored.models]),
                "Log loss per slice (uniform omitted; it is the dotted line).")


def _swap(page: _Page, records: list[PairRecord], model, model_dir) -> analysis.SwapCheck | None:
    s = page.section("swap", "Swap consistency (position bias)",
                     "The model predicts every pair as given and with A and B swapped (no test-time averaging). "
                     "A consistent model gives the same answer the second time, mirrored; a model with position bias "
                     "favours whichever answer is shown first (or second). The log losses are on the data given: "
                     "in-sample if the model was trained on it.")
    if model is None:
        page.note(s, "skipped: no model given (--model MODEL_DIR)")
        return None
    check = analysis.swap_check(model, records)
    summary = check.summary()
    values = [f"{v:.1%}" if k == "verdict changes on swap" else f"{v:.4f}" if isinstance(v, float) else str(v)
              for k, v in summary.items()]
    page.table(s, pd.DataFrame({"": list(summary), "value": values}))
    page.figure(s, "swap", figures.swap_scatter(check.original, check.swapped_back),
                f"Model {model_dir} ({model.family}): points on the diagonal are swap-consistent.")
    return check


def _length_bias(page: _Page, records: list[PairRecord], scored, swap) -> None:
    s = page.section("length-bias", "Length bias",
                     "The share of decisive outcomes (ties left out) that go to the longer answer, in the labels and "
                     "as expected under each model's predictions; pairs of equal length are left out.")
    preds: dict[str, np.ndarray] = {}
    if swap is not None:
        preds["model (swap-TTA)"] = swap.tta
    # Labels, the --model and the oof files are compared on the same rows: those the oof files cover.
    rows = records
    if scored is not None:
        index = {r.id: i for i, r in enumerate(records)}
        keep = np.array([index[r.id] for r in scored.records])
        rows = scored.records
        preds = {k: v[keep] for k, v in preds.items()} | {n: scored.probs[n] for n in scored.models}
        if len(rows) < len(records):
            page.note(s, f"on the {len(rows)} rows every oof file covers")
    overall, by_ratio = analysis.length_bias(rows, preds)
    page.table(s, overall, percent=["longer answer's share of wins", "tie share"])
    page.table(s, by_ratio, "by length ratio", percent=[c for c in by_ratio.columns if c not in ("length ratio", "pairs")])
    page.figure(s, "length-bias", figures.length_bias_lines(by_ratio, ["data labels", *preds]),
                "Longer answer's share of wins by how much longer it is (0.5: no length preference).")


def _ranking(page: _Page, records: list[PairRecord], n_bootstrap: int, seed: int) -> None:
    from arenapref.rank import rank

    s = page.section("ranking", "Model ranking",
                     f"Bradley-Terry ratings from the battles in the data (mean 1000, 400 points = 10x odds, a tie half "
                     f"a win each way) with {n_bootstrap}-resample bootstrap intervals.")
    try:
        result = rank(records, n_bootstrap=n_bootstrap, seed=seed)
    except ValueError as e:
        page.note(s, f"skipped: {e}")
        return
    if result.skipped:
        page.note(s, f"{result.skipped} row(s) without two different model names were left out")
    if result.groups > 1:
        page.note(s, f"the models fall into {result.groups} groups that never met: ratings compare only within a group")
    table = result.table()
    page.table(s, table)
    page.figure(s, "ranking", figures.ranking_intervals(table, result.ci), "Ratings with bootstrap intervals.")


def _agreement(page: _Page, agreements: Sequence[tuple[str, object]]) -> None:
    s = page.section("agreement", "Judge-made rankings against people's",
                     "The same battles ranked twice: from people's votes, and from a judge's P(A), P(B), P(tie) as "
                     "fractional outcomes (`arenapref rank --judge`). Spearman and Kendall correlation, the share of "
                     "model pairs in the same order, and the rating differences, with intervals from paired resamples.")
    if not agreements:
        page.note(s, "no judge ranking given (`arenapref rank BATTLES --judge MODEL_DIR --cross-fit K`)")
        return
    for key, (name, agreement) in enumerate(agreements):
        summary = agreement.summary()
        page.table(s, summary, f"{name}: agreement")
        table = agreement.table()
        page.table(s, table, f"{name}: per model, in the people's order")
        page.figure(s, f"agreement-{key}", figures.agreement_scatter(table, name),
                    f"{name}: one point per model; on the dashed line the judge rates a model as people do.")
