"""The monitoring report: a self-contained HTML page (inline PNG plots) and a JSON summary."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from model.schema import ENDPOINTS
from training.evaluate.report import _STYLE, _png, _table, to_jsonable
from training.monitoring import MONITOR_HORIZONS

__all__ = ["summary_json", "write_monitor_report"]

REPORT_FILE = "monitor.html"
SUMMARY_FILE = "monitor.json"


def summary_json(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary without the per-patient CUSUM paths (the JSON holds no patient-level rows)."""
    plain = to_jsonable(summary)
    for chart in plain["drift"]["charts"]:
        chart.pop("path", None)
    return plain


def _number(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ratio(entry: Mapping[str, Any]) -> str:
    if entry.get("oe_ratio") is None:
        return "not yet (follow-up)"
    return f"{entry['oe_ratio']:.2f} ({entry['oe_lower']:.2f}-{entry['oe_upper']:.2f})"


def _slope(entry: Mapping[str, Any]) -> str:
    if entry.get("slope") is None:
        return f"– ({entry.get('note', '')})"
    return f"{entry['slope']:.2f} ({entry['lower']:.2f}-{entry['upper']:.2f})"


def _cusum_plot(drift: Mapping[str, Any]) -> str:
    figure = Figure(figsize=(7, 3.6))
    axes = figure.subplots()
    for chart in drift["charts"]:
        label = f"{chart['endpoint'].upper()} {'worse' if chart['direction'] == 'up' else 'better'}"
        axes.plot(np.arange(1, len(chart["path"]) + 1), chart["path"], label=label, linewidth=1)
    axes.axhline(drift["control_limit"], color="red", linestyle="--", label="control limit")
    axes.set(
        xlabel="patients in order of treatment date",
        ylabel="CUSUM (log-likelihood ratio)",
        title=f"Drift: false-alarm rate {drift['false_alarm_rate']:.0%} per run",
    )
    axes.legend(fontsize=7)
    return _png(figure)


def _calibration_plot(overall: Mapping[str, Any], horizon: int) -> str:
    figure = Figure(figsize=(4.5, 4.2))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="ideal")
    for endpoint in ENDPOINTS:
        table = pd.DataFrame(overall[endpoint][f"at_{horizon}"].get("deciles", []))
        if table.empty:
            continue
        table = table.astype(float).dropna(subset=["observed"])
        errors = np.abs(
            table[["observed_lower", "observed_upper"]].to_numpy().T - table["observed"].to_numpy()
        )
        axes.errorbar(
            table["predicted"],
            table["observed"],
            yerr=errors,
            marker="o",
            capsize=2,
            label=endpoint.upper(),
        )
    axes.set(
        xlabel=f"predicted survival at {horizon} months",
        ylabel="observed (Kaplan-Meier)",
        xlim=(0, 1),
        ylim=(0, 1),
        title=f"Calibration at {horizon} months, by decile",
    )
    axes.legend(fontsize=8)
    return _png(figure)


def _window_plot(windows: Sequence[Mapping[str, Any]], horizon: int) -> str:
    figure = Figure(figsize=(7, 3.4))
    axes = figure.subplots()
    axes.axhline(1.0, color="grey", linestyle=":")
    for offset, endpoint in zip((-0.1, 0.1), ENDPOINTS, strict=True):
        points = [
            (i + offset, w[endpoint][f"at_{horizon}"])
            for i, w in enumerate(windows)
            if w[endpoint][f"at_{horizon}"]["oe_ratio"] is not None
        ]
        if not points:
            continue
        x = [p for p, _ in points]
        ratio = np.array([e["oe_ratio"] for _, e in points])
        spread = np.array(
            [
                [r - e["oe_lower"], e["oe_upper"] - r]
                for r, (_, e) in zip(ratio, points, strict=True)
            ]
        ).T
        axes.errorbar(
            x, ratio, yerr=spread, marker="o", capsize=2, linestyle="", label=endpoint.upper()
        )
    axes.set_xticks(range(len(windows)), [w["start"] for w in windows], rotation=45, fontsize=7)
    axes.set(ylabel="observed / expected events", title=f"O/E at {horizon} months by window")
    axes.legend(fontsize=8)
    return _png(figure)


def _window_rows(windows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    rows = []
    for window in windows:
        for endpoint in ENDPOINTS:
            figures = window[endpoint]
            rows.append(
                [
                    window["start"],
                    endpoint.upper(),
                    figures["n"],
                    figures["events"],
                    *(_ratio(figures[f"at_{h}"]) for h in MONITOR_HORIZONS),
                    _slope(figures["calibration_slope_24"]),
                    _number(figures["uno_c_24"], 3),
                ]
            )
    return rows


def _drift_rows(drift: Mapping[str, Any]) -> list[list[Any]]:
    return [
        [
            chart["endpoint"].upper(),
            "worse than predicted" if chart["direction"] == "up" else "better than predicted",
            _number(chart["largest"]),
            "DRIFT" if chart["flagged"] else "stable",
            chart["flagged_at_patient"] or "–",
            chart["flagged_in_month"] or "–",
        ]
        for chart in drift["charts"]
    ]


def _page(summary: Mapping[str, Any]) -> str:
    drift = summary["drift"]
    verdict = "DRIFT" if drift["flagged"] else "stable"
    facts = _table(
        ["data cut", "patients monitored", "treated before deployment", "treatment dates"],
        [
            [
                summary["as_of"],
                summary["n_monitored"],
                summary.get("n_before_deployment", 0),
                " to ".join(summary["treatment_dates"]),
            ]
        ],
    )
    models = _table(
        ["model", "in production from (UTC)", "patients judged by it"],
        [[m["tag"], m["from"], m["n_patients"]] for m in summary.get("models", [])],
    )
    header = [
        "window from",
        "endpoint",
        "n",
        "events",
        *(f"O/E {h} mo (95% CI)" for h in MONITOR_HORIZONS),
        "slope 24 mo (95% CI)",
        "Uno C (24 mo)",
    ]
    overall = [{"start": "all", **summary["overall"]}]
    method = html.escape(drift["method"])
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Model monitoring: {verdict}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Model monitoring: {verdict}</h1>{facts}{models}"
        f"<h2>Drift</h2><p>{method}. Control limit {drift['control_limit']:.2f}: a correctly "
        f"calibrated model crosses it with probability {drift['false_alarm_rate']:.0%} per run "
        f"({drift['null_streams']} simulated streams).</p>"
        + _table(
            ["endpoint", "direction", "largest CUSUM", "status", "at patient", "treated in"],
            _drift_rows(drift),
        )
        + _cusum_plot(drift)
        + "<h2>Calibration and discrimination</h2>"
        + _table(header, _window_rows(overall) + _window_rows(summary["windows"]))
        + "".join(_calibration_plot(summary["overall"], h) for h in MONITOR_HORIZONS)
        + "".join(_window_plot(summary["windows"], h) for h in MONITOR_HORIZONS)
        + "<p>Observed survival is the Kaplan-Meier estimate (censoring-aware); O/E is the ratio "
        "of observed to expected events by the horizon, its interval from the Kaplan-Meier "
        "interval. The slope is the Cox recalibration slope at 24 months; Uno's C is "
        "truncated at 24 months.</p></body></html>"
    )


def write_monitor_report(summary: Mapping[str, Any], folder: str | Path) -> tuple[Path, Path]:
    """Write `monitor.html` and `monitor.json` into `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path_json, path_html = folder / SUMMARY_FILE, folder / REPORT_FILE
    path_json.write_text(
        json.dumps(summary_json(summary), indent=1, allow_nan=False), encoding="utf-8"
    )
    path_html.write_text(_page(summary), encoding="utf-8")
    return path_html, path_json
