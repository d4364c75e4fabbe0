"""The model card stored with every trained model: the TRIPOD+AI items, as JSON and Markdown.

Items follow TRIPOD+AI (Collins et al., BMJ 2024;385:e078378) for a development study with
internal validation: data source and dates (item 5), eligibility (6), outcomes (7),
predictors and their handling (8), sample size (9), missing data (10), model building (12),
performance with intervals and calibration (12e, 23), intended use and limits (1, 27).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sksurv.nonparametric import kaplan_meier_estimator

from model.bundle import ModelBundle
from model.intended_use import INTENDED_USE, LIMITATIONS
from model.schema import (
    AGE_REFERENCE_YEARS,
    BOOLEAN_FIELDS,
    ENDPOINTS,
    FEATURE_NAMES,
    FEATURE_SOURCES,
    FIELDS,
    KI67_GRADES,
    MODALITIES,
    TRUTH_PREFIX,
    Patient,
    unit_of,
)
from training import evaluate

__all__ = [
    "ELIGIBILITY",
    "INTENDED_USE",
    "LIMITATIONS",
    "OUTCOME_DEFINITIONS",
    "build_model_card",
    "predictor_handling",
    "predictors_table",
    "render_markdown",
    "write_model_card",
]

ELIGIBILITY = [
    "Adults (18-100 years) with liver metastases of a neuroendocrine tumour treated with "
    "TACE, TAE or SIRT, as recorded in the source registry.",
    "Every row passes the cohort validation (netprog validate): required fields present and "
    "in range, WHO grade or Ki-67 given, HPFS not after OS, unique patient ids; a cohort "
    "with any invalid row is rejected whole, so no row is silently dropped.",
]
OUTCOME_DEFINITIONS = {
    "hpfs": "Hepatic progression-free survival (progression or death): months from the "
    "embolotherapy to hepatic progression or death from any cause, whichever comes first "
    "(event, hpfs_event = 1; hpfs_event_type says which), as progression-free survival is "
    "conventionally defined; censored (0) at loss to follow-up or database closure. Must not "
    "exceed os_months. The cumulative incidence of hepatic progression (death as a competing "
    "event) is reported beside it.",
    "os": "Overall survival: months from the embolotherapy to death from any cause (event, "
    "os_event = 1); censored (0) at loss to follow-up or database closure.",
}


def predictor_handling(source: str) -> str:
    """How the design matrix encodes one cohort column, in words (TRIPOD+AI item 8).

    Parameters
    ----------
    source : str
        A value of :data:`model.schema.FEATURE_SOURCES` (`modality` for the modality columns).
    """
    if source in BOOLEAN_FIELDS:
        return "yes = 1, no = 0"
    if source == "modality":
        reference = str(FIELDS["planned_modality"].reference)
        others = " or ".join(m for m in MODALITIES if m != reference)
        return f"the modality received, within grade ({others} vs {reference} in each grade)"
    if source == "age_years":
        return (
            f"(age - {AGE_REFERENCE_YEARS:g}) / 10: per decade from {AGE_REFERENCE_YEARS:g} "
            "years, linear"
        )
    meta = FIELDS[source]
    if source == "who_grade":
        return (
            f"WHO 2010 grade, {meta.reference} reference; derived from Ki-67 "
            f"({KI67_GRADES.rule()}) where the grade is missing"
        )
    if meta.bands is not None:
        levels = [f"{c} (reference)" if c == meta.reference else c for c in meta.bands.levels]
        return f"categorised {', '.join(levels)} {unit_of(source)}"
    return f"indicator per {source.split('_')[-1]}, {meta.reference} reference"


def _dates(cohort: pd.DataFrame) -> dict[str, Any]:
    if "treatment_date" not in cohort:
        return {"first": None, "last": None, "n_missing": len(cohort)}
    dates = pd.to_datetime(cohort["treatment_date"].astype(str), errors="coerce", format="mixed")
    dates = dates.where(cohort["treatment_date"].notna())
    known = dates.dropna()
    return {
        "first": known.min().date().isoformat() if len(known) else None,
        "last": known.max().date().isoformat() if len(known) else None,
        "n_missing": int(dates.isna().sum()),
    }


def _median_follow_up(cohort: pd.DataFrame) -> float:
    """Reverse Kaplan-Meier median of OS follow-up (censoring as the event), months."""
    times, survival = kaplan_meier_estimator(
        ~cohort["os_event"].astype(bool).to_numpy(), cohort["os_months"].to_numpy(float)
    )
    reached = survival <= 0.5
    return float(times[np.argmax(reached)]) if reached.any() else math.inf


def _data_section(bundle: ModelBundle, cohort: pd.DataFrame) -> dict[str, Any]:
    metadata = bundle.metadata
    centres = cohort["center"].value_counts(dropna=False) if "center" in cohort else None
    return {
        "label": metadata["trained_on"],
        "source": metadata.get("source"),
        "data_fingerprint": metadata.get("data_fingerprint"),
        "treatment_dates": _dates(cohort),
        "centres": ({str(k): int(v) for k, v in centres.items()} if centres is not None else None),
        "n_patients": len(cohort),
        "n_development": metadata["holdout"]["n_development"],
        "n_held_out": metadata["holdout"]["n_patients"],
        "held_out_rule": metadata["holdout"]["rule"],
        "modalities": {str(k): int(v) for k, v in cohort["modality"].value_counts().items()},
        "age_years_median_iqr": [float(q) for q in cohort["age_years"].quantile([0.5, 0.25, 0.75])],
        "median_follow_up_months": _median_follow_up(cohort),
    }


def predictors_table() -> list[dict[str, str]]:
    """The model card's predictors (TRIPOD+AI item 8): design column, source, handling."""
    rows = []
    for name in FEATURE_NAMES:
        source = FEATURE_SOURCES[name]
        rows.append(
            {
                "column": name,
                "from": source,
                "handling": predictor_handling(source),
            }
        )
    return rows


def _missing(cohort: pd.DataFrame, bundle: ModelBundle) -> dict[str, Any]:
    counts = {
        name: int(cohort[name].isna().sum()) if name in cohort else len(cohort)
        for name in Patient.model_fields
        if name != "planned_modality"
    }
    record = bundle.metadata.get("missing_data")
    handling = (
        "Outcomes, modality and patient_id must be present (a row missing one is rejected). "
        "Sex and primary_resected are recorded, not predictors, and may be missing. A missing "
        "WHO grade is derived from Ki-67. The imputable predictors (grade with Ki-67, burden, "
        "the boolean predictors) may be missing: " + IMPUTATION_HANDLING
    )
    out: dict[str, Any] = {"missing_per_field": counts, "handling": handling}
    if record:
        out["missing_per_field"].update(
            {name: entry["n_missing"] for name, entry in record["fields"].items()}
        )
        out.update(
            n_incomplete=record["n_incomplete"],
            imputation=record.get("imputation"),
            by_center=record.get("by_center"),
            indicator_check=record.get("indicator_check"),
            assumption=record["caveat"],
        )
    return out


def _imputation_lines(missing: dict[str, Any]) -> list[str]:
    """This model's imputation, where its cohort had missing predictors."""
    how = missing.get("imputation")
    if not how:
        return []
    return [
        f"This model: {missing['n_incomplete']} incomplete patients; {how['method']}, "
        f"m = {how['m']}, {how['iterations']} rounds; variables: {how['variables']}; "
        f"{how['pooling']}. {missing['assumption']}",
        "",
    ]


IMPUTATION_HANDLING = (
    "training imputes them by multiple imputation by chained equations (scikit-learn "
    "IterativeImputer, Bayesian ridge with posterior draws), m = max(10, % incomplete patients) "
    "imputations of 10 rounds each; the imputation models hold every predictor, the received "
    "modality, the centre and the outcome (HPFS and OS event indicators and Nelson-Aalen "
    "cumulative hazards); a model is fitted per imputation and pooled (Rubin's rules for the "
    "Cox coefficients and baseline, predictions averaged). Missing at random is assumed. At "
    "prediction, an unknown imputable field is integrated over given the known fields "
    "(logistic models fitted on the training data, without the outcome) and the intervals "
    "widen accordingly; the answer names the imputed fields."
)


def _sample_size(bundle: ModelBundle) -> dict[str, Any]:
    events = bundle.metadata["n_events"]
    return {
        "n_development": bundle.metadata["n_patients"],
        "events_development": events,
        "candidate_parameters": len(FEATURE_NAMES),
        "events_per_parameter": {e: round(events[e] / len(FEATURE_NAMES), 1) for e in ENDPOINTS},
    }


def _building(bundle: ModelBundle) -> dict[str, Any]:
    metadata = bundle.metadata
    return {
        "families": {
            "coxnet": "elastic-net penalised Cox model; penalty and mixing chosen by "
            "cross-validated partial likelihood (PenalizedCox)",
            "xgboost": "gradient-boosted Cox model (survival:cox) with a Breslow baseline; "
            "rounds chosen by early stopping (BoostedCox)",
        },
        "primary": dict(bundle.primary),
        "primary_choice": "per endpoint, the Cox family unless the boosted family's Harrell C "
        "(mean over the folds) is higher by more than one standard error of the paired fold "
        "difference",
        "cv_folds": metadata.get("cv_folds"),
        "n_bootstrap": metadata["n_bootstrap"],
        "seed": metadata["seed"],
        "fitted_on": "the development rows (all but the held-out patients)",
    }


def _performance(bundle: ModelBundle, results: dict) -> dict[str, Any]:
    metadata = bundle.metadata
    cv = {}
    for endpoint in ENDPOINTS:
        cv[endpoint] = {}
        for name in ("coxnet", "xgboost"):
            metrics = results["endpoints"][endpoint]["models"][name]
            folds = np.array([fold["harrell_c"] for fold in metrics["folds"]], dtype=float)
            pooled_24 = metrics["pooled"]["horizons"].get("24", {})
            cv[endpoint][name] = {
                **{
                    key: metrics[key]
                    for figure in ("harrell_c", "uno_c", "ibs", "calibration_slope_24")
                    for key in (figure, f"{figure}_sd")
                },
                "harrell_c_fold_range": [float(np.nanmin(folds)), float(np.nanmax(folds))],
                "n_folds": metrics["n_folds"],
                "pooled_harrell_c": metrics["pooled"]["harrell_c"],
                "pooled_calibration_slope_24": pooled_24.get("calibration_slope"),
                "pooled_calibration_slope_24_interval": [
                    pooled_24.get("calibration_slope_lower"),
                    pooled_24.get("calibration_slope_upper"),
                ],
                "pooled_mean_predicted_survival_24": pooled_24.get("mean_predicted_survival"),
                "pooled_observed_survival_24": pooled_24.get("observed_survival"),
            }
    loco = results.get("leave_one_centre_out")
    return evaluate.to_jsonable(
        {
            "cross_validated": cv,
            "held_out": metadata.get("held_out_metrics"),
            "leave_one_centre_out": loco,
        }
    )


def build_model_card(
    tag: str, bundle: ModelBundle, results: dict, cohort: pd.DataFrame
) -> dict[str, Any]:
    """The model card of a freshly trained bundle, JSON-ready.

    Parameters
    ----------
    tag : str
        The model's store tag.
    bundle : ModelBundle
        The fitted bundle; its metadata holds the held-out split and metrics.
    results : dict
        The training run's results (cross-validated metrics, leave-one-centre-out).
    cohort : DataFrame, shape = (n_patients, n_columns)
        The whole validated cohort (development and held-out rows).
    """
    synthetic = bundle.metadata["trained_on"] == "synthetic" or f"{TRUTH_PREFIX}lp_os" in cohort
    warnings = [evaluate.SYNTHETIC_WARNING, evaluate.NOT_FOR_CLINICAL_USE] if synthetic else []
    return evaluate.to_jsonable(
        {
            "tag": tag,
            "schema_version": bundle.schema_version,
            "trained_at": bundle.metadata["trained_at"],
            "warnings": warnings,
            "data": _data_section(bundle, cohort),
            "eligibility": ELIGIBILITY,
            "outcomes": OUTCOME_DEFINITIONS,
            "predictors": predictors_table(),
            "sample_size": _sample_size(bundle),
            "missing_data": _missing(cohort, bundle),
            "model_building": _building(bundle),
            "performance": _performance(bundle, results),
            "intended_use": INTENDED_USE,
            "limitations": LIMITATIONS,
        }
    )


def _mean_sd(figures: dict, key: str) -> str:
    sd = figures.get(f"{key}_sd")
    return _fmt(figures.get(key)) + ("" if sd is None else f" ± {_fmt(sd)}")


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _md_data(card: dict) -> list[str]:
    data = card["data"]
    dates = data["treatment_dates"]
    centres = ", ".join(f"{k}: {v}" for k, v in (data["centres"] or {}).items()) or "not recorded"
    median, q1, q3 = data["age_years_median_iqr"]
    return [
        "## Data (TRIPOD+AI 5, 6)",
        "",
        f"- Cohort: **{data['label']}**, source `{data['source']}`, "
        f"fingerprint `{data['data_fingerprint']}`.",
        f"- Treatment dates: {dates['first'] or '–'} to {dates['last'] or '–'} "
        f"({dates['n_missing']} missing).",
        f"- Centres: {centres}.",
        f"- Patients: {data['n_patients']} ({data['n_development']} development, "
        f"{data['n_held_out']} held out by `{data['held_out_rule']}`).",
        f"- Modalities received: {', '.join(f'{k} {v}' for k, v in data['modalities'].items())}.",
        f"- Age: median {median:.0f} years (IQR {q1:.0f}-{q3:.0f}); median follow-up (reverse "
        f"Kaplan-Meier) {_fmt(data['median_follow_up_months'])} months.",
        "",
        "Eligibility:",
        "",
        *[f"- {line}" for line in card["eligibility"]],
        "",
    ]


def _md_methods(card: dict) -> list[str]:
    size, building, missing = card["sample_size"], card["model_building"], card["missing_data"]
    lines = ["## Outcomes (TRIPOD+AI 7)", ""]
    lines += [f"- **{e.upper()}**: {text}" for e, text in card["outcomes"].items()]
    lines += ["", "## Predictors and their handling (TRIPOD+AI 8)", ""]
    lines += _md_table(
        ["design column", "from field", "handling"],
        [[p["column"], p["from"], p["handling"]] for p in card["predictors"]],
    )
    lines += [
        "## Sample size (TRIPOD+AI 9)",
        "",
        f"{size['n_development']} development patients; events "
        + ", ".join(f"{e.upper()} {n}" for e, n in size["events_development"].items())
        + f"; {size['candidate_parameters']} candidate parameters (events per parameter: "
        + ", ".join(f"{e.upper()} {n}" for e, n in size["events_per_parameter"].items())
        + ").",
        "",
        "## Missing data (TRIPOD+AI 10)",
        "",
        missing["handling"],
        "",
        *_imputation_lines(missing),
    ]
    lines += _md_table(
        ["field", "missing"], [[k, v] for k, v in missing["missing_per_field"].items()]
    )
    lines += ["## Model building (TRIPOD+AI 12)", ""]
    lines += [f"- {name}: {text}" for name, text in building["families"].items()]
    lines += [
        f"- Primary: {', '.join(f'{e.upper()} {n}' for e, n in building['primary'].items())} "
        f"({building['primary_choice']}).",
        f"- {building['cv_folds']}-fold cross-validation, {building['n_bootstrap']} bootstrap "
        "refits of each primary model (at its chosen hyperparameters) for the prediction "
        f"intervals, seed {building['seed']}; fitted on {building['fitted_on']}.",
        "",
    ]
    return lines


def _md_performance(card: dict) -> list[str]:
    performance = card["performance"]
    lines = ["## Performance and calibration (TRIPOD+AI 12e, 23)", ""]
    lines += _md_cross_validated(performance["cross_validated"])
    held_rows = [
        [
            endpoint.upper(),
            name,
            m.get("n"),
            m.get("events"),
            f"{_fmt(m.get('harrell_c'))} ({_fmt(m.get('harrell_c_lower'))}-"
            f"{_fmt(m.get('harrell_c_upper'))})",
            m.get("ibs"),
            f"{_fmt(m.get('calibration_slope_24'))} ({_fmt(m.get('calibration_slope_24_lower'))}"
            f"-{_fmt(m.get('calibration_slope_24_upper'))})",
        ]
        for endpoint, models in (performance["held_out"] or {}).items()
        for name, m in models.items()
    ]
    if held_rows:
        lines += ["Held-out patients (bootstrap 95% CI for C, Wald 95% CI for the slope):", ""]
        lines += _md_table(
            ["endpoint", "model", "n", "events", "Harrell C", "IBS", "slope 24 mo"], held_rows
        )
    lines += _md_loco(performance.get("leave_one_centre_out"))
    return lines


def _md_cross_validated(cross_validated: dict) -> list[str]:
    rows = []
    n_folds = None
    for endpoint, models in cross_validated.items():
        for name, m in models.items():
            n_folds = m["n_folds"]
            low, high = m["harrell_c_fold_range"]
            slope_low, slope_high = m["pooled_calibration_slope_24_interval"]
            rows.append(
                [
                    endpoint.upper(),
                    name,
                    f"{_mean_sd(m, 'harrell_c')} (folds {_fmt(low)}-{_fmt(high)})",
                    _mean_sd(m, "uno_c"),
                    _mean_sd(m, "ibs"),
                    _mean_sd(m, "calibration_slope_24"),
                    f"{_fmt(m['pooled_calibration_slope_24'])} "
                    f"({_fmt(slope_low)}-{_fmt(slope_high)})",
                    f"{_fmt(m['pooled_mean_predicted_survival_24'])} / "
                    f"{_fmt(m['pooled_observed_survival_24'])}",
                ]
            )
    header = [
        "endpoint", "model", "Harrell C", "Uno C", "IBS", "slope 24 mo",
        "pooled slope 24 mo (95% CI)", "pooled S(24) pred / obs",
    ]  # fmt: skip
    return [
        f"Cross-validated (development rows): mean ± SD over {n_folds} folds, each fold's "
        "model judged on that fold's own test rows; the pooled columns use the out-of-fold "
        "predictions of all folds together:",
        "",
        *_md_table(header, rows),
    ]


def _md_loco(loco: dict | None) -> list[str]:
    if not loco:
        return []
    lines = ["### Internal-external validation (leave one centre out)", ""]
    for endpoint, models in loco["endpoints"].items():
        rows = [
            [r["center"], name, r["n"], r["events"], r["harrell_c"], r["ibs"]]
            + [r["calibration_slope_24"]]
            for name, table in models.items()
            for r in table
        ]
        lines += [f"{endpoint.upper()}:", ""]
        lines += _md_table(
            ["centre", "model", "n", "events", "Harrell C", "IBS", "slope 24 mo"], rows
        )
    return lines


def render_markdown(card: dict) -> str:
    """The model card as a Markdown page."""
    lines = [f"# Model card: {card['tag']}", ""]
    lines += [f"> **{warning}**" for warning in card["warnings"]]
    lines += ["", f"Trained {card['trained_at']}; patient schema version {card['schema_version']}."]
    lines += ["", "## Intended use (TRIPOD+AI 1, 27)", "", card["intended_use"], ""]
    lines += _md_data(card) + _md_methods(card) + _md_performance(card)
    lines += ["## Limitations", "", *[f"- {line}" for line in card["limitations"]], ""]
    return "\n".join(lines)


def write_model_card(card: dict, folder: str | Path) -> tuple[Path, Path]:
    """Write ``model_card.json`` and ``model_card.md`` into `folder`; returns their paths."""
    folder = Path(folder)
    path_json, path_md = folder / "model_card.json", folder / "model_card.md"
    path_json.write_text(json.dumps(card, indent=1, allow_nan=False), encoding="utf-8")
    path_md.write_text(render_markdown(card), encoding="utf-8")
    return path_md, path_json
