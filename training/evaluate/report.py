"""The evaluation report: self-contained HTML with figures, and its JSON."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from training.evaluate.common import DECISION_HORIZON, HORIZONS
from training.exceptions import EvaluationInputError

SYNTHETIC_WARNING = (
    "Synthetic cohort: every patient in this report was simulated from published aggregates. "
    "The figures describe the models' behaviour on simulated data, not on real patients."
)
NOT_FOR_CLINICAL_USE = (
    "Default models trained on synthetic data are not for clinical use: they must be retrained "
    "and re-evaluated on a real cohort before any prognosis is shown to a clinician."
)


def _json_scalar(value: Any) -> Any:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    raise EvaluationInputError(
        "`results` must hold only dicts, lists, DataFrames, arrays, numbers, strings and dates, "
        f"but got a {type(value).__name__}"
    )


def to_jsonable(value: Any) -> Any:
    """`value` as plain JSON types: DataFrames as records, arrays as lists, NaN and inf as None."""
    if isinstance(value, pd.DataFrame):
        return to_jsonable(value.to_dict("records"))
    if isinstance(value, pd.Series | np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    return _json_scalar(value)


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–" if value is None or math.isnan(value) else "not reached"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _p_value(value: Any) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _p_clause(value: Any) -> str:
    text = _p_value(value)
    return f"< {text[1:]}" if text.startswith("<") else f"= {text}"


def _interval(entry: Mapping[str, Any] | None, key: str = "hr") -> str:
    if not entry:
        return "–"
    lower, upper = _number(entry.get("lower"), 2), _number(entry.get("upper"), 2)
    return f"{_number(entry.get(key), 2)} ({lower}–{upper})"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_number(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def _metrics_section(models: Mapping[str, Mapping[str, Any]]) -> str:
    header = ["model", "Harrell C", "Uno C", "tau (mo)", "mean AUC", "IBS"]
    header += [f"{label} @{h}" for h in HORIZONS for label in ("AUC", "Brier", "slope")]
    rows, notes = [], []
    for name, metrics in models.items():
        row = [name] + [
            metrics.get(k) for k in ("harrell_c", "uno_c", "uno_c_tau", "mean_auc", "ibs")
        ]
        for horizon in HORIZONS:
            entry = metrics.get("horizons", {}).get(f"{horizon:g}", {})
            row += [entry.get("auc"), entry.get("brier"), entry.get("calibration_slope")]
        rows.append(row)
        notes += [
            f"<li>{html.escape(name)}: {html.escape(k)} skipped: {html.escape(str(v))}</li>"
            for k, v in metrics.get("skipped", {}).items()
        ]
    skipped = (
        f"<details><summary>skipped</summary><ul>{''.join(notes)}</ul></details>" if notes else ""
    )
    return _table(header, rows) + skipped


def _calibration_plot(models: Mapping[str, Mapping[str, Any]], horizon: int) -> str:
    figure = Figure(figsize=(5, 4.5))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="ideal")
    for name, metrics in models.items():
        table = pd.DataFrame(
            metrics.get("horizons", {}).get(f"{horizon:g}", {}).get("calibration", [])
        )
        if table.empty:
            continue
        table = table.astype(float)
        errors = np.abs(
            table[["observed_lower", "observed_upper"]].to_numpy().T - table["observed"].to_numpy()
        )
        axes.errorbar(
            table["predicted"],
            table["observed"],
            yerr=np.nan_to_num(errors),
            marker="o",
            capsize=2,
            label=name,
        )
    axes.set(
        xlabel=f"predicted survival at {horizon} months",
        ylabel="observed (Kaplan-Meier)",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Calibration at {horizon} months",
    )
    axes.legend(fontsize=8)
    return _png(figure)


def _decision_plot(models: Mapping[str, Mapping[str, Any]]) -> str:
    figure = Figure(figsize=(5, 4))
    axes = figure.subplots()
    curve = None
    for name, metrics in models.items():
        curve = metrics.get("decision_curve") or curve
        if metrics.get("decision_curve"):
            own = metrics["decision_curve"]
            axes.plot(
                own["thresholds"], np.array(own["net_benefit_model"], dtype=float), label=name
            )
    if curve is None:
        return "<p>No decision curve: the 24-month horizon lies beyond the follow-up.</p>"
    axes.plot(
        curve["thresholds"],
        np.array(curve["net_benefit_all"], dtype=float),
        color="black",
        linestyle="--",
        label="treat all",
    )
    axes.axhline(0.0, color="grey", label="treat none")
    axes.set(
        xlabel="threshold probability",
        ylabel="net benefit",
        ylim=(-0.05, max(0.05, float(curve["prevalence"] or 0) + 0.05)),
        title=f"Decision curve, event by {DECISION_HORIZON} months",
    )
    axes.legend(fontsize=8)
    return _png(figure)


def _kaplan_meier_plot(result: Mapping[str, Any]) -> str:
    figure = Figure(figsize=(5, 3.8))
    axes = figure.subplots()
    for level, curve in result.get("groups", {}).items():
        axes.step(
            curve["times"], curve["survival"], where="post", label=f"{level} (n={curve['n']})"
        )
    axes.set(
        xlabel="months",
        ylabel="survival",
        ylim=(0, 1.02),
        title=(
            f"{str(result.get('endpoint', '')).upper()} by {result.get('column')}: "
            f"log-rank p {_p_clause(result.get('logrank_p'))}"
        ),
    )
    axes.legend(fontsize=8)
    return _png(figure)


def _estimate(record: Mapping[str, Any], prefix: str) -> str:
    return _interval({k: record.get(f"{prefix}_{k}") for k in ("hr", "lower", "upper")})


def _hazard_ratio_section(table: Any) -> str:
    header = ["factor", "level", "reference", "n", "univariate HR (95% CI)", "p"]
    header += ["multivariate HR (95% CI)", "p", "published HR (004)"]
    rows = [
        [
            r["factor"],
            r["level"],
            r["reference"],
            r["n_level"],
            _estimate(r, "univariate"),
            _p_value(r.get("univariate_p")),
            _estimate(r, "multivariate"),
            _p_value(r.get("multivariate_p")),
            _number(r.get("published_hr"), 2),
        ]
        for r in to_jsonable(table)
    ]
    return _table(header, rows)


def _modality_section(effects: Mapping[str, Mapping[str, Any]]) -> str:
    header = ["comparison", "n (treated / reference)", "unadjusted HR (95% CI)", "p"]
    header += ["IPTW HR (95% CI)", "p", "effective n (IPTW)", "true marginal HR"]
    header += ["true HR, cohort's follow-up"]
    rows = [
        [
            label,
            f"{e.get('n_treated')} / {e.get('n_reference')}",
            _interval(e.get("unadjusted")),
            _p_value((e.get("unadjusted") or {}).get("p")),
            _interval(e.get("iptw")),
            _p_value((e.get("iptw") or {}).get("p")),
            _number((e.get("effective_sample_size") or {}).get("total"), 0),
            _number(e.get("true_marginal_hr"), 2),
            _number(e.get("true_marginal_hr_observed_follow_up"), 2),
        ]
        for label, e in effects.items()
    ]
    note = (
        "<p>True hazard ratios (synthetic cohorts only) come from simulating every patient under "
        "both modalities; the effect differs by grade, so the marginal hazards are not "
        "proportional and the Cox estimand depends on follow-up: complete follow-up, and the "
        "cohort's own follow-up (what the IPTW estimate targets).</p>"
    )
    return _table(header, rows) + note


_FOLD_COLUMNS = {
    "Harrell C": "harrell_c",
    "Uno C": "uno_c",
    "IBS": "ibs",
    "mean AUC": "mean_auc",
    "slope @24": "calibration_slope_24",
}


def _mean_sd(metrics: Mapping[str, Any], key: str) -> str:
    mean, sd = metrics.get(key), metrics.get(f"{key}_sd")
    if sd is None or not math.isfinite(sd):
        return _number(mean)
    return f"{_number(mean)} ± {_number(sd)}"


def _cross_validated_section(models: Mapping[str, Mapping[str, Any]]) -> str:
    """Fold means ± SD, then the pooled out-of-fold table (cross-validation results)."""
    n_folds = next(iter(models.values())).get("n_folds")
    rows = [
        [name, *(_mean_sd(m, key) for key in _FOLD_COLUMNS.values()), m["pooled"]["harrell_c"]]
        for name, m in models.items()
    ]
    folds = _table(["model", *_FOLD_COLUMNS, "pooled Harrell C"], rows)
    return (
        f"<h3>Cross-validated metrics: mean ± SD over {n_folds} folds</h3>"
        "<p>Each fold's model is judged on that fold's own test rows. The pooled Harrell C "
        "ranks out-of-fold risks of different fold models against each other and is shown for "
        "comparison only.</p>"
        f"{folds}<h3>Pooled out-of-fold predictions (calibration and per-horizon figures)</h3>"
        + _metrics_section({name: m["pooled"] for name, m in models.items()})
    )


def _endpoint_section(endpoint: str, section: Mapping[str, Any]) -> str:
    parts = [f"<h2>{html.escape(endpoint.upper())}</h2>"]
    models = section.get("models") or {}
    calibration = "Calibration and net benefit"
    if models and all("pooled" in m for m in models.values()):
        parts.append(_cross_validated_section(models))
        models = {name: m["pooled"] for name, m in models.items()}
        calibration += " (pooled out-of-fold predictions)"
    elif models:
        parts += ["<h3>Model metrics (held-out patients)</h3>", _metrics_section(models)]
    if models:
        parts += [
            f"<h3>{calibration}</h3>",
            _calibration_plot(models, DECISION_HORIZON),
            _decision_plot(models),
        ]
    if section.get("kaplan_meier"):
        parts.append("<h3>Kaplan-Meier</h3>")
        parts += [_kaplan_meier_plot(result) for result in section["kaplan_meier"].values()]
    if section.get("hazard_ratios") is not None:
        parts += [
            "<h3>Hazard ratios (layout of Table 1, 004 abstract)</h3>",
            _hazard_ratio_section(section["hazard_ratios"]),
        ]
    if section.get("modality_effect"):
        parts += [
            "<h3>Modality effect: unadjusted vs propensity-weighted (IPTW)</h3>",
            _modality_section(section["modality_effect"]),
        ]
    return "\n".join(parts)


_STYLE = """
body{font-family:sans-serif;margin:2em;max-width:80em}
table{border-collapse:collapse;margin:1em 0;font-size:0.85em}
th,td{border:1px solid #bbb;padding:0.25em 0.5em;text-align:right}
th{background:#eee}
td:first-child{text-align:left}
.banner{border:3px solid #b00;background:#fee;padding:1em;font-weight:bold}
img{margin:0.5em}
"""


def _banner(label: str) -> str:
    """The warnings every report opens with: synthetic data, and not for clinical use."""
    warnings = [NOT_FOR_CLINICAL_USE]
    if label != "real":
        warnings.insert(0, SYNTHETIC_WARNING)
    return "".join(f"<p>{html.escape(w, quote=False)}</p>" for w in warnings)


def _facts(label: str, results: Mapping[str, Any]) -> str:
    row = [
        label,
        results.get("model_tag", "–"),
        results.get("n_patients"),
        results.get("created", "–"),
    ]
    return _table(["cohort", "model", "patients", "created"], [row])


def write_report(results: Mapping[str, Any], path_html: str | Path, path_json: str | Path) -> None:
    """Write the evaluation as a self-contained HTML page and a JSON file.

    The HTML has no external scripts, styles or images (plots are inline PNG); the JSON holds
    every metric with NaN and infinity written as null.

    Parameters
    ----------
    results : dict
        Every key but `cohort_label` is optional; missing sections are left out::

            {
              "cohort_label": "synthetic" | "real",
              "model_tag": str, "n_patients": int, "created": str, "notes": [str, ...],
              "endpoints": {
                "hpfs": {
                  "models": {"coxnet": survival_metrics(...), "xgboost": ...,
                             "published": ..., "oracle": ..., "kaplan_meier": ...},
                             (or training.pipeline.cross_validate's entries: fold means
                             ± SD, then the "pooled" survival_metrics)
                  "hazard_ratios": hazard_ratio_table(...)  (DataFrame or records),
                  "modality_effect": modality_effects(...),
                  "kaplan_meier": {"who_grade": kaplan_meier_by(...), ...},
                },
                "os": {...},
              },
            }

        :func:`cohort_analyses` fills the last three keys of an endpoint.
    path_html, path_json : str or Path
    """
    if "cohort_label" not in results:
        raise EvaluationInputError(
            "`results` must have a `cohort_label` ('synthetic' or 'real'), but it has none"
        )
    label = str(results["cohort_label"])
    Path(path_json).write_text(
        json.dumps(to_jsonable(results), indent=1, allow_nan=False), encoding="utf-8"
    )
    banner, facts = _banner(label), _facts(label, results)
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in results.get("notes", []))
    sections = [
        _endpoint_section(endpoint, section)
        for endpoint, section in results.get("endpoints", {}).items()
    ]
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Model evaluation ({html.escape(label)} cohort)</title>"
        f"<style>{_STYLE}</style></head><body><h1>Model evaluation</h1>"
        f'<div class="banner">Cohort: {html.escape(label)}. {banner}</div>'
        f"{facts}{f'<ul>{notes}</ul>' if notes else ''}{''.join(sections)}</body></html>"
    )
    Path(path_html).write_text(page, encoding="utf-8")
