"""Effect of calibration and ensembling on the shared sets; writes the `calibration` block of BENCHMARKS.md.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_calibration.py [--data ../shared/data] [--output BENCHMARKS.md]

1. In-domain: 5-fold grouped CV of uniform, prior and `features` on PandaLM + LLMBar; calibration of the
   features OOF predictions and blends of the three, every figure cross-fitted by fold.
2. Transfer: `features` trained on tie-free sets (LLMBar + hh-rlhf helpful-base), predicting PandaLM
   (human ties); calibrated on PandaLM rows it is then not scored on.
Only the block between the markers is replaced; other scripts own the rest of the file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from arenapref.calibrate import Calibrator, cross_fit as calibrate_cross_fit  # noqa: E402
from arenapref.config import FeaturesConfig, RunConfig  # noqa: E402
from arenapref.cv import cross_validate, score_targets  # noqa: E402
from arenapref.data.folds import GroupedFolds  # noqa: E402
from arenapref.data.io import read_pairs  # noqa: E402
from arenapref.data.record import TIE  # noqa: E402
from arenapref.ensemble import cross_fit as blend_cross_fit, fit_weights  # noqa: E402
from arenapref.metrics import accuracy, log_loss, prior  # noqa: E402
from arenapref.models import build_model  # noqa: E402
from benchblock import machine_summary, replace_block  # scripts/ is on sys.path when a script runs

# The 2-core dev machine is shared with other runs: one LightGBM thread keeps this one from starving them.
CONFIG = FeaturesConfig(n_jobs=1)


def machine() -> str:
    return machine_summary()


def markdown(df: pd.DataFrame) -> str:
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def score_row(name: str, y: np.ndarray, p: np.ndarray, **extra) -> dict:
    return {"predictions": name, "log loss": log_loss(y, p), "accuracy": accuracy(y, p),
            "mean P(tie)": float(p[:, TIE].mean()), **extra}


def in_domain(data: Path) -> tuple[list[str], dict]:
    records = read_pairs([data / "pandalm", data / "llmbar"])[0]
    start = time.perf_counter()
    cv = cross_validate(records, RunConfig(model=CONFIG), show_progress=False)
    cv_secs = time.perf_counter() - start
    y, folds = score_targets(records), cv.fold_ids
    sources = np.array([r.source for r in records])
    feats = cv.oof["features"]
    calibrated = calibrate_cross_fit(feats, y, folds)
    full = Calibrator().fit(feats, y)

    rows = []
    for name, mask in [("all", np.ones(len(y), bool)), *[(s, sources == s) for s in sorted(set(sources))]]:
        rows.append({"rows": f"{name} ({mask.sum()}, tie rate {y[mask, TIE].mean():.3f})",
                     "prior": log_loss(y[mask], cv.oof["prior"][mask]),
                     "features": log_loss(y[mask], feats[mask]), "features calibrated": log_loss(y[mask], calibrated[mask]),
                     "P(tie) before": float(feats[mask, TIE].mean()), "P(tie) after": float(calibrated[mask, TIE].mean())})
    cal_table = pd.DataFrame(rows)

    # the calibrated OOF predictions are left out of the blend: their calibrators saw the other folds' labels,
    # so blending them cross-fitted would no longer be honest
    probs = [cv.oof["uniform"], cv.oof["prior"], feats]
    names = ["uniform", "prior", "features"]
    start = time.perf_counter()
    weights = fit_weights(probs, y)
    blended = blend_cross_fit(probs, y, folds)
    stacked = blend_cross_fit(probs, y, folds, stack=True)
    ens_secs = time.perf_counter() - start
    ens_rows = [score_row(n, y, p, weight=f"{w:.3f}") for n, p, w in zip(names, probs, weights)]
    ens_rows += [score_row("features calibrated (cross-fitted, for comparison)", y, calibrated, weight="")]
    ens_rows += [score_row("blend, weights fitted on the other folds", y, blended, weight=""),
                 score_row("stack (logistic on log-probabilities), fitted on the other folds", y, stacked, weight="")]
    lines = [
        f"### In-domain: 5-fold grouped CV on PandaLM + LLMBar ({len(records)} rows)",
        "",
        f"`features` with default settings ({CONFIG.n_estimators} trees, {CONFIG.tfidf_max_features} TF-IDF terms, "
        f"{CONFIG.svd_components} SVD components, 1 thread); CV took {cv_secs:.0f} s. Calibration is cross-fitted: each "
        "fold's rows are transformed by a calibrator fitted on the other four folds. Fitted on all rows: "
        f"temperature {full.temperature:.3f}, tie bias {full.bias[TIE]:+.3f}.",
        "",
        markdown(cal_table),
        "",
        "One calibration fitted on mixed sources moves each of them toward the pooled tie rate (the per-source "
        "rows); to serve one distribution, fit on rows of it (`arenapref calibrate MODEL --target DATA`).",
        "",
        f"Blending the out-of-fold predictions (weights: SLSQP on the simplex, fitted on all rows and shown in the "
        f"weight column; the blend and stack rows are cross-fitted by fold; {ens_secs:.1f} s):",
        "",
        markdown(pd.DataFrame(ens_rows)[["predictions", "weight", "log loss", "accuracy", "mean P(tie)"]]),
    ]
    return lines, {"cv_secs": cv_secs}


def transfer(data: Path) -> list[str]:
    llmbar = read_pairs(data / "llmbar")[0]
    hh = read_pairs(data / "hh-rlhf" / "helpful-base_test.jsonl.gz")[0]
    target = read_pairs(data / "pandalm")[0]
    train = list(llmbar) + list(hh)
    start = time.perf_counter()
    model = build_model(CONFIG).fit(train)
    raw = model.predict_proba(target)
    secs = time.perf_counter() - start
    y = score_targets(target)
    non_tie = y[:, TIE] == 0
    ab_acc = float(((raw[non_tie, 0] > raw[non_tie, 1]) == (y[non_tie, 0] == 1)).mean())

    rows = [score_row("uncalibrated", y, raw, **{"fitted on": "-", "scored on": f"all {len(y)}"})]
    folds = GroupedFolds(5, seed=0).fold_ids(target)
    cross = calibrate_cross_fit(raw, y, folds)
    rows.append(score_row("calibrated, cross-fitted", y, cross,
                          **{"fitted on": "4 of 5 folds", "scored on": "the 5th, all folds pooled"}))
    prior_cross = np.empty_like(raw)
    for k in np.unique(folds):
        prior_cross[folds == k] = prior(y[folds != k], int((folds == k).sum()))
    rows.append(score_row("PandaLM class prior, cross-fitted (reference)", y, prior_cross,
                          **{"fitted on": "4 of 5 folds", "scored on": "the 5th, all folds pooled"}))
    full = Calibrator().fit(raw, y)
    halves = GroupedFolds(2, seed=0).fold_ids(target)
    fit, held = halves == 0, halves == 1
    for symmetric in (True, False):
        cal = Calibrator(symmetric).fit(raw[fit], y[fit])
        rows.append(score_row(f"calibrated, {'symmetric' if symmetric else 'asymmetric'} (T {cal.temperature:.1f}, "
                              f"bias {', '.join(f'{b:+.2f}' for b in cal.bias)})", y[held], cal.transform(raw[held]),
                              **{"fitted on": f"half ({fit.sum()})", "scored on": f"other half ({held.sum()})"}))
    rows.append(score_row("PandaLM class prior (reference)", y[held], prior(y[fit], int(held.sum())),
                          **{"fitted on": f"half ({fit.sum()})", "scored on": f"other half ({held.sum()})"}))
    rng = np.random.default_rng(0)
    small = rng.choice(len(y), 100, replace=False)
    rest = np.setdiff1d(np.arange(len(y)), small)
    cal = Calibrator().fit(raw[small], y[small])
    rows.append(score_row("calibrated on a 100-row labelled sample", y[rest], cal.transform(raw[rest]),
                          **{"fitted on": "100 random rows", "scored on": f"the other {len(rest)}"}))
    table = pd.DataFrame(rows)[["predictions", "fitted on", "scored on", "log loss", "accuracy", "mean P(tie)"]]
    return [
        f"### Transfer: tie-free training sets -> PandaLM (tie rate {y[:, TIE].mean():.3f})",
        "",
        f"`features` (same settings) trained on LLMBar + hh-rlhf helpful-base ({len(train)} pairs, no ties) and "
        f"predicting the {len(target)} PandaLM pairs: {secs:.0f} s. Calibration is `arenapref calibrate --target`: "
        "fitted on labelled target rows, never scored on them.",
        "",
        markdown(table),
        "",
        f"Uncalibrated, the model's mean P(tie) is {raw[:, TIE].mean():.1e}, so each PandaLM tie costs about "
        f"{-np.log(np.clip(raw[y[:, TIE] == 1, TIE], 1e-15, 1)).mean():.0f} nats. Calibrated on all PandaLM rows: "
        f"temperature {full.temperature:.2f}, tie bias {full.bias[TIE]:+.2f}. Calibration repairs the tie rate, "
        f"not the ranking: on PandaLM's non-tie rows this model picks the winner {ab_acc:.1%} of the time, so "
        f"the calibrated model ({log_loss(y, cross):.4f}) lands next to the class prior ({log_loss(y, prior_cross):.4f}).",
    ]


def write_block(path: Path, body: str) -> None:
    replace_block(path, "calibration", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    start = time.perf_counter()
    lines, _ = in_domain(args.data)
    lines += [""] + transfer(args.data)
    total = time.perf_counter() - start
    body = "\n".join([
        "## Calibration and ensembling",
        "",
        f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python scripts/bench_calibration.py` ({total:.0f} s in all). "
        f"Machine: {machine()}. Log loss is on hard labels (PandaLM: annotator majority); lower is better; "
        "uniform scores 1.0986.",
        "",
        *lines,
    ])
    write_block(args.output, body)
    print(body)
    print(f"\nwrote the calibration block of {args.output}")


if __name__ == "__main__":
    main()
