"""Model updating against the oracle: replicate synthetic centres, each updated as `netprog update`
does, judged on a large test sample of the same centre with its true survival.

A reference model is fitted once, as the built-in default is (2,000 synthetic patients, the
published estimates' uncertainty). Three cells of centres (training.synthetic_centre):

- baseline hazard x 1.5, 100 local patients: ICI at 24 months against the true survival, of
  the updated and the unupdated model, and Harrell's C of the updated model against a full
  refit (the training family, tuned, on the local patients alone);
- a centre equal to the reference, 100 local patients: the path chosen and the ICI;
- the SIRT-in-G2 log hazard ratio reversed (progression and death), 300 local patients: the
  path chosen, and whether the updated model's SIRT-vs-TACE difference in 24-month survival
  for a G2 patient (data/examples/g2_pancreas_sirt.json) has the true sign; beside it, how
  often the local patients alone point the true way: a full refit on them, and the sign of
  the SIRT-in-G2 coefficient of an unpenalised Cox fit of the whole design on them, and how
  often that sign is significant (what the local data say about that one term, before any
  shrinkage towards the reference).

Plus the wall time of ``netprog update`` on 100 patients (a fresh process: imports, loading,
validation, updating, registering). Writes the "updating" section of RESULTS.md.

    nice -n 10 .venv/bin/python -m bench.updating [--replicates 100] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from bench.common import REPO_ROOT, TARGETS, command_line, markdown_table, write_section
from model.bundle import MONTH_GRID, ModelBundle
from model.cox_inference import cox_log_likelihood, fit_cox_coefficients
from model.penalized import RELAXED_RIDGE
from model.schema import ENDPOINTS, MODALITIES, Patient, encode, patients_frame
from training import evaluate
from training.fit import fit_bundle, survival_target
from training.synthetic import CohortSpec, simulate_cohort, true_log_hazard, true_survival
from training.synthetic_centre import CentreSpec, centre_spec, simulate_centre
from training.update_apply import update_family
from training.update_run import update_bundle
from training.updating import Decision
from training.validate import validate_cohort

N_REFERENCE = 2000
N_TEST = 2000
HORIZON = 24
G2_PATIENT = REPO_ROOT / "data" / "examples" / "g2_pancreas_sirt.json"
CELLS = {
    "baseline_x1.5": ({"hazard_multiplier": 1.5}, 100),
    "equal": ({}, 100),
    "sirt_g2_reversed": ({"effect_multipliers": {"SIRT_in_G2": -1.0}}, 300),
}


def reference_bundle(seed: int = 20260) -> ModelBundle:
    """The reference model: fitted like the built-in default on 2,000 synthetic patients."""
    cohort = validate_cohort(simulate_cohort(N_REFERENCE, seed))
    return fit_bundle(
        cohort, seed=0, n_bootstrap=5, evidence=CohortSpec.load(), primary_ensembles_only=True
    )


def _served(bundle: ModelBundle, endpoint: str, design: np.ndarray) -> np.ndarray:
    return bundle.models[endpoint][bundle.primary[endpoint]].survival(design)


class TestSample:
    """A centre's large test sample: design, outcomes, true 24-month survival, the G2 truth."""

    def __init__(self, spec: CentreSpec, seed: int):
        test = validate_cohort(simulate_centre(N_TEST, seed, spec, centre="TEST"))
        self.design = encode(test).to_numpy(dtype=float)
        self.at = int(np.searchsorted(MONTH_GRID, HORIZON))
        received = test["modality"].to_numpy()
        self.truth = {
            e: np.select(
                [received == m for m in MODALITIES],
                [test[f"true_surv_{e}_{m}_{HORIZON}"].to_numpy() for m in MODALITIES],
            )
            for e in ENDPOINTS
        }
        self.outcomes = {
            e: (test[f"{e}_event"].to_numpy(bool), test[f"{e}_months"]) for e in ENDPOINTS
        }
        patient = patients_frame([Patient(**json.loads(G2_PATIENT.read_text())["patient"])])
        self.g2 = {m: encode(patient, m).to_numpy(dtype=float) for m in ("SIRT", "TACE")}
        self.g2_true = self._g2_truth(patient, spec)

    def _g2_truth(self, patient: pd.DataFrame, spec: CentreSpec) -> dict[str, float]:
        lp = {
            (e, m): true_log_hazard(patient, e, spec, m)
            for e in ENDPOINTS
            for m in ("SIRT", "TACE")
        }
        difference = {}
        for e in ENDPOINTS:
            survival = {
                m: true_survival(lp[e, m], [HORIZON], e, spec, lp["os", m])[0, 0]
                for m in ("SIRT", "TACE")
            }
            difference[e] = float(survival["SIRT"] - survival["TACE"])
        return difference

    def ici(self, bundle: ModelBundle, endpoint: str) -> float:
        predicted = _served(bundle, endpoint, self.design)[:, self.at]
        return float(np.mean(np.abs(predicted - self.truth[endpoint])))

    def harrell_c(self, bundle: ModelBundle, endpoint: str) -> float:
        event, months = self.outcomes[endpoint]
        risk = 1.0 - _served(bundle, endpoint, self.design)[:, self.at]
        return float(evaluate.harrell_c(event, np.asarray(months, dtype=float), risk))

    def g2_agrees(self, bundle: ModelBundle, endpoint: str) -> bool:
        predicted = {m: _served(bundle, endpoint, x)[0, self.at] for m, x in self.g2.items()}
        return bool(
            np.sign(predicted["SIRT"] - predicted["TACE"]) == np.sign(self.g2_true[endpoint])
        )


def local_evidence(local: pd.DataFrame, endpoint: str, true_difference: float) -> dict:
    """What the local patients alone say about SIRT versus TACE in G2.

    For a G2 patient the SIRT-versus-TACE log hazard ratio is the `SIRT_in_G2` coefficient
    (modality enters only within grade), so SIRT's survival is higher exactly when it is
    negative; `true_difference` is the true SIRT-minus-TACE survival. From an unpenalised Cox
    fit of the whole design on the local patients: whether that coefficient has the true
    sign, and whether it does so significantly (two-sided 5 %, Wald): the most a revision test
    of that one term, named in advance and at the 5 % level, could find.
    """
    design = encode(local)
    columns = design.to_numpy(dtype=float)
    target = survival_target(local, endpoint)
    event, months = target["event"], target["months"]
    coef = fit_cox_coefficients(columns, event, months, ridge=RELAXED_RIDGE)
    _, _, information = cox_log_likelihood(columns, event, months, coef, np.zeros(len(columns)))
    j = list(design.columns).index("SIRT_in_G2")
    z = -coef[j] / np.sqrt(np.linalg.pinv(information)[j, j])
    true_sign = np.sign(true_difference)
    return {
        "local_cox": bool(np.sign(z) == true_sign),
        "local_significant": bool(z * true_sign > 1.96),
    }


def _refit(reference: ModelBundle, local: pd.DataFrame, seed: int) -> ModelBundle:
    design = encode(local)
    models = {
        e: {
            name: update_family(m, Decision(4), design, local, e, seed)
            for name, m in reference.models[e].items()
            if name == reference.primary[e]
        }
        for e in ENDPOINTS
    }
    return ModelBundle(**{**reference.__dict__, "models": models})


def replicate(reference, cell: str, seed: int, spec: CentreSpec, n: int, test: TestSample) -> dict:
    """One local centre: update, then judge against the test sample."""
    local = validate_cohort(simulate_centre(n, seed, spec))
    started = time.perf_counter()
    updated, decisions = update_bundle(reference, local, seed=seed, cohort_label="synthetic")
    record: dict = {"cell": cell, "seed": seed, "update_s": time.perf_counter() - started}
    refit = _refit(reference, local, seed) if cell != "equal" else None
    for e in ENDPOINTS:
        record[f"path_{e}"] = decisions[e][reference.primary[e]].method
        record[f"path_{e}_xgboost"] = decisions[e]["xgboost"].method
        record[f"ici_{e}_original"] = test.ici(reference, e)
        record[f"ici_{e}_updated"] = test.ici(updated, e)
        if cell == "baseline_x1.5":
            record[f"c_{e}_updated"] = test.harrell_c(updated, e)
            record[f"c_{e}_refit"] = test.harrell_c(refit, e)
            record[f"ici_{e}_refit"] = test.ici(refit, e)
        if cell == "sirt_g2_reversed":
            record[f"g2_{e}_updated"] = test.g2_agrees(updated, e)
            record[f"g2_{e}_original"] = test.g2_agrees(reference, e)
            record[f"g2_{e}_refit"] = test.g2_agrees(refit, e)
            for name, value in local_evidence(local, e, test.g2_true[e]).items():
                record[f"g2_{e}_{name}"] = value
    return record


def time_cli(reference: ModelBundle, n: int = 100) -> float:
    """Wall seconds of ``netprog update`` on `n` patients, in a fresh process and store."""
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "BENTOML_HOME": str(Path(folder) / "bentoml")}
        joblib.dump(reference, Path(folder) / "reference.joblib")
        register = (
            "import joblib; from store import registry; "
            f"tag = registry.save_bundle(joblib.load({str(Path(folder) / 'reference.joblib')!r})); "
            "registry.set_production(tag, reason='bench')"
        )
        subprocess.run([sys.executable, "-c", register], env=env, check=True)
        local = simulate_centre(n, 99, centre_spec(hazard_multiplier=1.5))
        path = Path(folder) / "local.csv"
        local.to_csv(path, index=False, date_format="%Y-%m-%d")
        netprog = str(Path(sys.executable).parent / "netprog")
        started = time.perf_counter()
        subprocess.run(
            [netprog, "update", "--data", str(path), "--label", "synthetic"],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


def _paths(frame: pd.DataFrame, column: str) -> str:
    counts = frame[column].value_counts().reindex(range(5), fill_value=0)
    return " / ".join(str(int(c)) for c in counts)


def summarise(frame: pd.DataFrame, cli_seconds: float | None) -> dict:
    """The targets' figures and each cell's table rows."""
    shift = frame[frame["cell"] == "baseline_x1.5"]
    equal = frame[frame["cell"] == "equal"]
    changed = frame[frame["cell"] == "sirt_g2_reversed"]
    figures: dict = {"updating_cli_s": cli_seconds}
    if len(shift):
        figures["updating_ici_ratio"] = max(
            shift[f"ici_{e}_updated"].median() / shift[f"ici_{e}_original"].median()
            for e in ENDPOINTS
        )
        figures["updating_c_vs_refit"] = min(
            shift[f"c_{e}_updated"].median() - shift[f"c_{e}_refit"].median() for e in ENDPOINTS
        )
    if len(equal):
        figures["updating_equal_kept"] = min((equal[f"path_{e}"] <= 1).mean() for e in ENDPOINTS)
        figures["updating_equal_ici_excess"] = max(
            equal[f"ici_{e}_updated"].median() - equal[f"ici_{e}_original"].median()
            for e in ENDPOINTS
        )
    if len(changed):
        for e in ENDPOINTS:
            figures[f"updating_revised_{e}"] = float((changed[f"path_{e}"] >= 3).mean())
            figures[f"updating_g2_direction_{e}"] = float(changed[f"g2_{e}_updated"].mean())
    return figures


def local_references(frame: pd.DataFrame) -> dict:
    """The SIRT-reversed cell's shares of the local patients' own evidence (no targets)."""
    changed = frame[frame["cell"] == "sirt_g2_reversed"]
    return {
        f"g2_direction_{e}_{name}": float(changed[f"g2_{e}_{name}"].mean())
        for e in ENDPOINTS
        for name in ("refit", "local_cox", "local_significant")
        if len(changed)
    }


def _median(part: pd.DataFrame, column: str) -> str:
    values = part[column].dropna() if column in part else part.iloc[:0, :1]
    return f"{values.median():.3f}" if len(values) else "–"


def _g2(part: pd.DataFrame, endpoint: str) -> str:
    column = f"g2_{endpoint}_updated"
    if column not in part or part[column].isna().all():
        return "–"
    share = {
        name: part[f"g2_{endpoint}_{name}"].astype(float).mean()
        for name in ("updated", "original", "refit", "local_cox", "local_significant")
    }
    return (
        f"{share['updated']:.0%} (unupdated {share['original']:.0%}; local refit "
        f"{share['refit']:.0%}; local unpenalised Cox {share['local_cox']:.0%}, significantly "
        f"{share['local_significant']:.0%})"
    )


def _cell_rows(frame: pd.DataFrame) -> list[list[object]]:
    rows = []
    for cell, (_, n) in CELLS.items():
        part = frame[frame["cell"] == cell]
        if part.empty:
            continue
        for e in ENDPOINTS:
            rows.append(
                [
                    cell, n, len(part), e.upper(), _paths(part, f"path_{e}"),
                    _paths(part, f"path_{e}_xgboost"),
                    f"{part[f'ici_{e}_original'].median():.4f}",
                    f"{part[f'ici_{e}_updated'].median():.4f}",
                    _median(part, f"c_{e}_updated"), _median(part, f"c_{e}_refit"), _g2(part, e),
                ]
            )  # fmt: skip
    return rows


def _markdown(frame: pd.DataFrame, figures: dict, seconds: float, replicates: int) -> str:
    lines = [
        "## Model updating",
        "",
        f"{replicates} replicate centres per cell (local samples drawn with seeds 0-"
        f"{replicates - 1}), each updated by `netprog update`'s procedure "
        "(training.update_run.update_bundle) from one reference model fitted like the built-in "
        f"default ({N_REFERENCE} synthetic patients); judged on {N_TEST} test patients of the same "
        f"centre against their true survival at {HORIZON} months. ICI: mean |predicted - true "
        "survival| over the test patients (the served curve of the primary model, Cox). Paths: "
        "how many replicates chose method 0 / 1 / 2 / 3 / 4 (no change / baseline / + slope / "
        "+ revision / refit), for the primary (Cox) and the boosted check model. Refit: the "
        "training family, tuned, on the local patients alone. G2: share of replicates whose "
        "SIRT-minus-TACE 24-month survival for the G2 example patient has the true sign; beside "
        "it, the same share for a full refit on the local patients alone, and for the sign of "
        "the SIRT-in-G2 coefficient of an unpenalised Cox fit of the whole design on them, "
        "with how often that sign is significant (two-sided 5 %, Wald): what the local data "
        "say about that term. No revision test that keeps its false alarms at 5 % can revise "
        "the term more often than it is significant alone, named in advance.",
        "",
        *markdown_table(
            [
                "cell",
                "local n",
                "replicates",
                "endpoint",
                "paths (Cox)",
                "paths (boosted)",
                "median ICI unupdated",
                "median ICI updated",
                "median C updated",
                "median C refit",
                "G2 direction",
            ],
            _cell_rows(frame),
        ),  # fmt: skip
        "",
        "| target | bar | figure | verdict |",
        "|---|---|---|---|",
    ]
    for name, value in figures.items():
        target = TARGETS.get(name)
        if target is None:
            continue
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target.met(value)]
        lines.append(f"| {target.measure} | {target.text} | {target.show(value)} | {verdict} |")
    lines += [
        "",
        f"Median update (in-process, all endpoints and families): "
        f"{frame['update_s'].median():.2f} s; whole benchmark {seconds / 60:.1f} min.",
        "",
        f"Command: `{command_line()}`",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    reference = reference_bundle()
    records = []
    for cell in args.cells:
        changes, n = CELLS[cell]
        spec = centre_spec(**changes)
        test = TestSample(spec, seed=10_000)
        for seed in range(args.replicates):
            records.append(replicate(reference, cell, seed, spec, n, test))
        print(f"{cell} done ({time.perf_counter() - began:.0f} s)", flush=True)
    frame = pd.DataFrame(records)
    cli_seconds = time_cli(reference)
    figures = summarise(frame, cli_seconds)
    markdown = _markdown(frame, figures, time.perf_counter() - began, args.replicates)
    print(markdown)
    if not args.no_write:
        write_section(
            "updating",
            markdown,
            {
                "targets": figures,
                "local_references": local_references(frame),
                "replicates": args.replicates,
                "cells": frame.replace({np.nan: None}).to_dict(orient="records"),
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
