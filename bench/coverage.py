"""Coverage of the served 95 % intervals against the synthetic cohort's known truth.

For each training size and seed: simulate a cohort, let the product fit it exactly as
``netprog train`` would (relaxed Cox intervals; the primary family chosen by cross-validated
Harrell C unless ``--primary`` fixes it), predict 1,000 new patients under every modality, and
count the patients whose interval holds the true value: survival at 12/24/36/60 months per
endpoint x modality, the medians, the cumulative incidence of hepatic progression, and the
paired differences between each modality and the patient's received one (survival at the
horizons and RMST to 60 months). Beside it, the oracle-structure reference: unpenalised Cox
models on the true design (the two cause-specific models for HPFS) with delta-method
intervals. Writes the "coverage" section of RESULTS.md and its figures (``coverage.json``).

    .venv/bin/python -m bench.coverage [--sizes 2000 500] [--seeds 30] [--no-write]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from bench.common import TARGETS, command_line, markdown_table, write_section
from model.bundle import MONTH_GRID
from model.cox_inference import CoxCurves, fit_breslow_inference, fit_cox_coefficients
from model.estimators import RELAXED_RIDGE
from model.intervals import analytic_comparison, incidence_summary
from model.modality import HORIZONS_MONTHS, NOT_REACHED, RMST_HORIZON_MONTHS
from model.predictor import Predictor
from model.schema import ENDPOINTS, MODALITIES, encode
from training.fit import component_targets, fit_bundle
from training.synthetic import (
    CohortSpec,
    simulate_cohort,
    true_cif_progression,
    true_hpfs_survival,
    true_median,
    true_survival,
)
from training.validate import validate_cohort

N_TEST = 1000
FINE_MONTHS = np.linspace(0.0, RMST_HORIZON_MONTHS, 1201)


def _truth(test: pd.DataFrame, spec: CohortSpec) -> dict:
    """True survival, medians, RMST and incidence per endpoint and modality."""
    truth: dict = {}
    for modality in MODALITIES:
        progression = test[f"true_lp_hpfs_{modality}"].to_numpy()
        death = test[f"true_lp_os_{modality}"].to_numpy()
        fine = {
            "hpfs": true_hpfs_survival(progression, death, FINE_MONTHS, spec),
            "os": true_survival(death, FINE_MONTHS, "os", spec),
        }
        for endpoint in ENDPOINTS:
            at = np.searchsorted(FINE_MONTHS, HORIZONS_MONTHS)
            truth[endpoint, modality, "survival"] = fine[endpoint][:, at]
            truth[endpoint, modality, "rmst"] = np.trapezoid(fine[endpoint], FINE_MONTHS, axis=1)
        truth["hpfs", modality, "median"] = true_median(progression, "hpfs", spec, death)
        truth["os", modality, "median"] = true_median(death, "os", spec)
        truth["cif", modality] = true_cif_progression(progression, death, HORIZONS_MONTHS, spec)
    return truth


def truth_with_planned(test: pd.DataFrame, spec: CohortSpec, planned: np.ndarray) -> dict:
    """:func:`_truth`, plus each patient's truth under the planned modality (``"planned"``)."""
    truth = _truth(test, spec)
    for endpoint in ENDPOINTS:
        for kind in ("survival", "rmst", "median"):
            per_modality = np.stack([truth[endpoint, m, kind] for m in MODALITIES])
            truth[endpoint, "planned", kind] = per_modality[planned, np.arange(planned.size)]
    return truth


def _oracle_curves(train: pd.DataFrame) -> dict[str, CoxCurves]:
    """Unpenalised Cox models on the true design, every term in: the oracle structure."""
    design = encode(train).to_numpy()
    curves = {}
    for endpoint, targets in component_targets(train).items():
        components = []
        for target in targets:
            event, months = target["event"], target["months"]
            coef = fit_cox_coefficients(design, event, months, ridge=RELAXED_RIDGE)
            components.append(
                fit_breslow_inference(
                    design,
                    event,
                    months,
                    coef,
                    MONTH_GRID,
                    ridge=RELAXED_RIDGE,
                    selected=np.ones(coef.size, bool),
                )
            )
        curves[endpoint] = CoxCurves(components)
    return curves


def _inside(lower, value, upper):
    return (lower <= value) & (value <= upper)


def _cell(method, endpoint, quantity, modality, month, followed, lower, true, upper, keep=None):
    """One coverage row: the share of patients whose interval holds the truth, mean width."""
    keep = np.ones(true.shape, bool) if keep is None else keep
    inside = _inside(lower, true, upper)[keep].mean()
    return (
        method,
        endpoint,
        quantity,
        modality,
        month,
        followed,
        inside,
        (upper - lower)[keep].mean(),
    )


def _score(rows, method, endpoint, comparison, incidence, truth, planned, followed):
    """Append coverage rows for one endpoint's predicted comparison."""
    summary = comparison.summary
    last = MONTH_GRID[-1]
    for m, modality in enumerate(MODALITIES):
        others = planned != m
        for h, month in enumerate(HORIZONS_MONTHS):
            cell = (method, endpoint)
            true = truth[endpoint, modality, "survival"][:, h]
            rows.append(
                _cell(
                    *cell,
                    "survival",
                    modality,
                    month,
                    followed[month],
                    summary.at_horizons_lower[m, :, h],
                    true,
                    summary.at_horizons_upper[m, :, h],
                )
            )
            rows.append(
                _cell(
                    *cell,
                    "difference",
                    modality,
                    month,
                    followed[month],
                    comparison.difference_at_horizons_lower[m, :, h],
                    true - truth[endpoint, "planned", "survival"][:, h],
                    comparison.difference_at_horizons_upper[m, :, h],
                    others,
                )
            )
            if incidence is not None:
                rows.append(
                    _cell(
                        method,
                        "hpfs",
                        "incidence",
                        modality,
                        month,
                        followed[month],
                        incidence.at_horizons_lower[m, :, h],
                        truth["cif", modality][:, h],
                        incidence.at_horizons_upper[m, :, h],
                    )
                )
        # A bound "not reached" within the grid only says the median lies beyond it.
        lower = np.where(summary.median_lower[m] >= NOT_REACHED, last, summary.median_lower[m])
        upper = np.where(summary.median_upper[m] >= NOT_REACHED, np.inf, summary.median_upper[m])
        median = _cell(
            method,
            endpoint,
            "median",
            modality,
            0,
            True,
            lower,
            truth[endpoint, modality, "median"],
            upper,
        )
        rows.append((*median[:-1], np.nan))
        rows.append(
            _cell(
                method,
                endpoint,
                "rmst difference",
                modality,
                60,
                True,
                comparison.difference_rmst_lower[m],
                truth[endpoint, modality, "rmst"] - truth[endpoint, "planned", "rmst"],
                comparison.difference_rmst_upper[m],
                others,
            )
        )


def _incidence_of(endpoint_predictor, design, planned):
    """The served incidence summary, unrounded (None for an endpoint without it)."""
    if endpoint_predictor.incidence is None:
        return None
    return incidence_summary(endpoint_predictor.incidence, design, planned)


def run_seed(n_patients: int, seed: int, primary: str | None, spec: CohortSpec) -> list[tuple]:
    """Coverage rows of one training cohort (product and oracle structure)."""
    train = validate_cohort(simulate_cohort(n_patients, seed, spec))
    test = simulate_cohort(N_TEST, 100_000 + seed, spec)
    chosen = dict.fromkeys(ENDPOINTS, primary) if primary else None
    if chosen is None:
        from training.pipeline import choose_primary, cross_validate

        chosen = choose_primary(cross_validate(train, seed=seed))
    bundle = fit_bundle(train, seed=seed, primary=chosen, primary_ensembles_only=True)
    predictor = Predictor(bundle)
    planned = np.array([MODALITIES.index(m) for m in test["modality"]])
    stacked = np.stack([encode(test, m).to_numpy() for m in MODALITIES])
    truth = truth_with_planned(test, spec, planned)
    rows: list[tuple] = []
    oracle = _oracle_curves(train)
    for endpoint in ENDPOINTS:
        followed = {h: h <= bundle.max_follow_up_months[endpoint] for h in HORIZONS_MONTHS}
        arrays = predictor.endpoints[endpoint].compute(stacked, planned)
        method = f"ours ({bundle.primary[endpoint]})"
        _score(
            rows,
            method,
            endpoint,
            arrays.comparison,
            _incidence_of(predictor.endpoints[endpoint], stacked, planned),
            truth,
            planned,
            followed,
        )
        reference = analytic_comparison(oracle[endpoint], stacked, planned)
        incidence = (
            incidence_summary(oracle[endpoint], stacked, planned) if endpoint == "hpfs" else None
        )
        _score(rows, "oracle structure", endpoint, reference, incidence, truth, planned, followed)
    return [(n_patients, seed, *row) for row in rows]


def summarise(frame: pd.DataFrame) -> dict:
    """Mean coverage and width per cell over seeds, and the figures the targets judge."""
    frame = frame.assign(method=frame["method"].str.replace(r" \(.*\)", "", regex=True))
    cells = (
        frame.groupby(["n", "method", "endpoint", "quantity", "modality", "month", "followed"])
        .agg(coverage=("coverage", "mean"), width=("width", "mean"), seeds=("seed", "nunique"))
        .reset_index()
    )
    ours = cells[cells["method"] == "ours"]
    oracle = cells[cells["method"] == "oracle structure"]
    keys = ["n", "endpoint", "quantity", "modality", "month"]
    paired = ours.merge(oracle, on=keys, suffixes=("", "_oracle"))
    judged = ours[(ours["quantity"] == "survival") & ours["followed"] & (ours["month"] <= 60)]
    figures = {}
    for n, label in ((2000, "2000"), (500, "500")):
        cell = judged[judged["n"] == n]
        if cell.empty:
            continue
        headline = cell[(cell["month"] <= 36) | cell["followed"]]
        figures[f"coverage_{label}_low"] = float(headline["coverage"].min())
        if n == 2000:
            figures["coverage_2000_high"] = float(headline["coverage"].max())
            other = ours[(ours["n"] == n) & (ours["quantity"] != "survival") & ours["followed"]]
            figures["coverage_other_low"] = float(other["coverage"].min())
    widths = paired.dropna(subset=["width", "width_oracle"])
    widths = widths[widths["followed"] & (widths["width_oracle"] > 1e-3)]
    if not widths.empty:
        figures["coverage_width_ratio"] = float((widths["width"] / widths["width_oracle"]).max())
    return {"cells": cells, "figures": figures}


def _markdown(frame: pd.DataFrame, summary: dict, seconds: float, primaries: list[str]) -> str:
    cells = summary["cells"]
    lines = [
        f"Command: `{command_line()}` ({seconds / 60:.1f} min). Each training size is fitted "
        f"on {frame.groupby('n')['seed'].nunique().to_dict()} seeds (size: seeds) and scored on "
        f"{N_TEST:,} new patients per seed; a cell is the share of patients whose 95 % interval "
        "holds the truth, averaged over seeds. Primary families the product chose: "
        f"{', '.join(sorted(set(primaries)))}. Months beyond the adequately followed range "
        "(fewer than max(50, 5 %) at risk) are marked and not judged.",
        "",
    ]
    for target, value in summary["figures"].items():
        bar = TARGETS[target]
        verdict = {True: "met", False: "NOT met", None: "not measured"}[bar.met(value)]
        lines.append(f"- {bar.measure}: **{bar.show(value)}** (target {bar.text}: {verdict})")
    lines.append("")
    ours = cells[cells["method"] == "ours"]
    oracle = cells[cells["method"] == "oracle structure"].set_index(
        ["n", "endpoint", "quantity", "modality", "month"]
    )
    rows = []
    for record in ours.itertuples():
        key = (record.n, record.endpoint, record.quantity, record.modality, record.month)
        reference = oracle.loc[key] if key in oracle.index else None
        rows.append(
            (
                record.n,
                record.endpoint,
                record.quantity,
                record.modality,
                record.month or "-",
                "yes" if record.followed else "no (extrapolated)",
                f"{record.coverage:.3f}",
                "-" if np.isnan(record.width) else f"{record.width:.3f}",
                "-" if reference is None else f"{reference['coverage']:.3f}",
                "-"
                if reference is None or np.isnan(reference["width"])
                else f"{reference['width']:.3f}",
            )
        )
    lines += markdown_table(
        (
            "n",
            "endpoint",
            "quantity",
            "modality",
            "month",
            "followed",
            "coverage",
            "mean width",
            "oracle-structure coverage",
            "oracle-structure width",
        ),
        rows,
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[2000, 500])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--primary", choices=("coxnet", "xgboost"), default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    spec = CohortSpec.load()
    began = time.perf_counter()
    records = []
    for n_patients in args.sizes:
        for seed in range(args.seeds):
            records += run_seed(n_patients, seed, args.primary, spec)
            print(
                f"n={n_patients} seed={seed} done ({time.perf_counter() - began:.0f} s)", flush=True
            )
    frame = pd.DataFrame(
        records,
        columns=[
            "n",
            "seed",
            "method",
            "endpoint",
            "quantity",
            "modality",
            "month",
            "followed",
            "coverage",
            "width",
        ],
    )
    primaries = [m for m in frame["method"].unique() if m.startswith("ours")]
    summary = summarise(frame)
    seconds = time.perf_counter() - began
    markdown = _markdown(frame, summary, seconds, primaries)
    print(markdown)
    if not args.no_write:
        cells = summary["cells"].replace({np.nan: None}).to_dict(orient="records")
        write_section(
            "coverage",
            markdown,
            {
                "targets": summary["figures"],
                "seeds": args.seeds,
                "sizes": args.sizes,
                "cells": cells,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
