"""The HTML report: every section, the numbers behind it, and the page rendered in headless Chromium.

Data: PandaLM (999 rows, 5 named models, ties) plus the arena-format quirks.csv (a second source, multi-turn
rows), with out-of-fold predictions of a small features model and a trained model for the swap check.
"""

from __future__ import annotations

import os
import re
import struct
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from arenapref.cli import app
from arenapref.config import FeaturesConfig, FoldsConfig, PriorConfig, RunConfig
from arenapref.cv import cross_validate
from arenapref.data.io import read_pairs
from arenapref.data.record import LABELS, hard_labels, swap_labels
from arenapref.metrics import log_loss
from arenapref.models import build_model, load_model
from arenapref.report import SECTION_IDS, analysis, build_report, parse_oof_arg
from arenapref.report.chromium import find_chromium, render

SMALL = dict(n_estimators=40, tfidf_max_features=2000, svd_components=6, n_jobs=1)
ALL_FIGURES = ["fig-lengths", "fig-reliability", "fig-confusion", "fig-breakdown", "fig-swap", "fig-length-bias",
               "fig-ranking"]


@pytest.fixture(scope="module")
def data(shared_data):
    records, _ = read_pairs([shared_data / "pandalm", shared_data / "arena-format" / "quirks.csv"])
    return records


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """oof.csv of a features model (folder `features/`) and of the prior model, and a trained model directory."""
    root = tmp_path_factory.mktemp("runs")
    (root / "features").mkdir()
    features = cross_validate(data, RunConfig(model=FeaturesConfig(**SMALL), folds=FoldsConfig(n_splits=4)), show_progress=False)
    features.predictions_frame().to_csv(root / "features" / "oof.csv", index=False)
    prior = cross_validate(data, RunConfig(model=PriorConfig(), folds=FoldsConfig(n_splits=4)), show_progress=False)
    prior.predictions_frame().to_csv(root / "prior-oof.csv", index=False)
    build_model(FeaturesConfig(**SMALL)).fit(data).save(root / "model")
    return root


@pytest.fixture(scope="module")
def oof_args(runs):
    return [parse_oof_arg(str(runs / "features" / "oof.csv")), parse_oof_arg(f"prior model={runs / 'prior-oof.csv'}")]


@pytest.fixture(scope="module")
def full_report(data, runs, oof_args):
    return build_report(data, oof_args, model_dir=runs / "model", n_bootstrap=20, inputs=["pandalm", "quirks.csv"])


def section_html(html: str, id_: str) -> str:
    return re.search(rf'<section id="{id_}">(.*?)</section>', html, re.S).group(1)


def test_oof_names_come_from_the_file_or_name_equals_path():
    assert parse_oof_arg("runs/features/oof.csv") == ("features", Path("runs/features/oof.csv"))
    assert parse_oof_arg("runs/small-oof.csv") == ("small-oof", Path("runs/small-oof.csv"))
    assert parse_oof_arg("gemma=runs/cv/oof.csv") == ("gemma", Path("runs/cv/oof.csv"))


def test_report_has_every_section_and_figure(full_report):
    html = full_report.html
    assert full_report.sections == list(SECTION_IDS)
    for id_ in SECTION_IDS:
        assert f'<section id="{id_}">' in html
    assert full_report.figures == ALL_FIGURES
    assert html.count('<figure class="fig"') == len(ALL_FIGURES)
    assert not [n for n in full_report.notes if "skipped" in n or "needs" in n]


def test_report_is_self_contained(full_report):
    html = full_report.html
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)="(https?:)?//', html)
    assert "Content-Security-Policy" in html and "default-src 'none'" in unescape(html)
    # figure ids are prefixed per figure, so no id appears twice on the page
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_cv_table_sits_beside_the_baselines_on_the_same_folds(data, oof_args, runs):
    scored = analysis.align_oof(data, oof_args)
    assert scored.models == ["features", "prior model"]
    table = analysis.cv_table(scored).set_index("slice")
    assert table.loc["pooled", "rows"] == len(data)
    assert table.loc["pooled", "uniform logloss"] == pytest.approx(np.log(3))
    oof = pd.read_csv(runs / "features" / "oof.csv", dtype={"id": str}).set_index("id").loc[[r.id for r in data]]
    y = np.eye(3)[hard_labels(data)]
    assert table.loc["pooled", "features logloss"] == pytest.approx(log_loss(y, oof[list(LABELS)].to_numpy()))
    # the prior baseline predicts, for each fold, the label shares of the other folds, swap-symmetric (as cv's)
    folds = oof["fold"].to_numpy()
    test = folds == 0
    expected = (y[~test].mean(0) + y[~test][:, [1, 0, 2]].mean(0)) / 2 + 1e-3
    np.testing.assert_allclose(scored.probs["prior"][test][0], expected / expected.sum())
    assert {"source pandalm", "source quirks", "fold 0", "fold 3"} <= set(table.index)
    assert table.loc["pooled", "features logloss"] < table.loc["pooled", "prior logloss"] < np.log(3)


def test_oof_that_covers_other_rows_is_refused(data, tmp_path):
    bad = pd.DataFrame({"id": ["nope-1", "nope-2"], **{c: [1 / 3, 1 / 3] for c in LABELS}})
    bad.to_csv(tmp_path / "oof.csv", index=False)
    with pytest.raises(ValueError, match="none of its 2 ids is in the data"):
        analysis.align_oof(data, [("x", tmp_path / "oof.csv")])


def test_breakdowns_cover_every_row(data, oof_args):
    scored = analysis.align_oof(data, oof_args)
    for name, table in analysis.breakdowns(scored).items():
        assert table["rows"].sum() == len(data), name
    turns = analysis.breakdowns(scored)["turns"].set_index("group")
    assert turns.loc["1 turn", "rows"] == sum(r.n_turns == 1 for r in data)


def test_reliability_and_confusion_count_every_row(data, oof_args):
    scored = analysis.align_oof(data, oof_args)
    y, p = scored.y, scored.probs["features"]
    rel = analysis.reliability(y, p)
    assert (rel.groupby("class")["rows"].sum() == len(data)).all()
    m = analysis.confusion(y, p)
    assert m.sum() == len(data)
    np.testing.assert_array_equal(m.sum(1), y.sum(0))


def test_swap_check_matches_the_models_own_swap_tta(data, runs):
    model = load_model(runs / "model")
    check = analysis.swap_check(model, data)
    np.testing.assert_allclose(check.tta, model.predict_proba(data, swap_tta=True), atol=1e-9)
    summary = check.summary()
    one = model.predict_proba(data, swap_tta=False)
    back = swap_labels(model.predict_proba([r.swapped() for r in data], swap_tta=False))
    assert summary["verdict changes on swap"] == pytest.approx(np.mean(one.argmax(1) != back.argmax(1)))
    assert 0 < summary["verdict changes on swap"] < 0.5  # one order alone is not swap-consistent, but mostly
    # trained on both orders, the model has next to no position bias
    assert abs(summary["position bias: mean P(first wins) - P(second wins)"]) < 0.05


def test_length_bias_from_labels(data):
    overall, by_ratio = analysis.length_bias(data, {"perfect": np.eye(3)[hard_labels(data)]})
    la = np.array([sum(map(len, r.response_a)) for r in data])
    lb = np.array([sum(map(len, r.response_b)) for r in data])
    y = hard_labels(data)
    longer_won = ((la > lb) & (y == 0)) | ((lb > la) & (y == 1))
    shorter_won = ((la > lb) & (y == 1)) | ((lb > la) & (y == 0))
    by = overall.set_index("from")
    assert by.loc["data labels", "longer answer's share of wins"] == pytest.approx(longer_won.sum() / (longer_won | shorter_won).sum())
    assert by.loc["perfect", "longer answer's share of wins"] == pytest.approx(by.loc["data labels", "longer answer's share of wins"])
    assert by_ratio["pairs"].sum() == (la != lb).sum()


def test_sections_without_their_inputs_say_why(shared_data):
    llmbar, _ = read_pairs(shared_data / "llmbar" / "LLMBar_Natural")
    report = build_report(llmbar, n_bootstrap=5)
    assert report.sections == list(SECTION_IDS)
    assert report.figures == ["fig-lengths", "fig-length-bias"]
    html = report.html
    assert "no oof file given" in section_html(html, "cv")
    assert "skipped: no model given" in section_html(html, "swap")
    assert "skipped: ranking needs battles between at least two named models" in section_html(html, "ranking")


def test_cli_report_writes_the_page(shared_data, runs, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(shared_data / "pandalm"), "--oof", str(runs / "features" / "oof.csv"),
                                      "--model", str(runs / "model"), "--bootstrap", "5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert all(f'<section id="{s}">' in html for s in SECTION_IDS)
    assert "oof rows have ids not in the data" in html  # the oof also covers quirks.csv, which this run leaves out


def test_cli_report_refuses_unlabelled_data(shared_data, tmp_path):
    test_csv = tmp_path / "test.csv"
    pd.read_csv(shared_data / "arena-format" / "quirks.csv").drop(columns=list(LABELS)).to_csv(test_csv, index=False)
    result = CliRunner().invoke(app, ["report", str(test_csv), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "labelled data" in result.output


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_renders_in_headless_chromium(full_report, tmp_path):
    if find_chromium() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no Chromium is installed: .ci/run installs it with apt-get")
        pytest.skip("Chromium not installed (Debian: apt-get install chromium); this test runs under CI=true")
    page = tmp_path / "report.html"
    page.write_text(full_report.html, encoding="utf-8")
    shot = tmp_path / "report.png"
    rendered = render(page, screenshot=shot)
    assert rendered.console_errors == []
    assert rendered.body.get("ok") == "true", rendered.body.get("bad-figures")
    assert rendered.body.get("figures") == str(len(ALL_FIGURES))
    for id_ in SECTION_IDS:
        assert f'id="{id_}"' in rendered.dom
    width, height = _png_size(shot)
    assert width == 1280 and height > 3000  # the whole page, not one screen


def test_a_judge_ranking_sits_beside_the_peoples_in_the_report(data):
    """`agreements` put a judge-made ranking beside people's: the summary, the per-model table and a scatter."""
    from arenapref.leaderboard import agreement
    from arenapref.rank import battles_from_records, rank
    from arenapref.report import ExtraSection

    battles = [r for r in data if r.model_a and r.model_b]
    probs = np.tile([0.5, 0.3, 0.2], (len(battles), 1))
    human = rank(battles, n_bootstrap=20, seed=1)
    judge = rank(battles_from_records(battles, probs=probs), n_bootstrap=20, seed=1)
    extra = ExtraSection("transfer", "Transfer", "a table", [("held out", pd.DataFrame({"set": ["x"], "log loss": [1.0]}))])
    page = build_report(data, n_bootstrap=0, agreements=[("PandaLM", agreement(human, judge))], extra_sections=[extra])
    assert page.sections == [*SECTION_IDS, "transfer"]
    section = section_html(page.html, "agreement")
    assert "PandaLM: agreement" in section and "Spearman" in section and "fig-agreement-0" in page.figures
    assert "held out" in section_html(page.html, "transfer")
