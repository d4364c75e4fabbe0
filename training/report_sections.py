"""Report sections the evaluation report does not draw itself: held-out test and per-centre.

`training.evaluate.write_report` renders the cross-validated metrics and the cohort analyses;
these two sections are appended to its page before ``</body>``, in the same table style.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from training.exceptions import EvaluationInputError

__all__ = ["append_to_report", "held_out_section", "loco_section", "missing_data_section"]

_END = "</body></html>"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _interval(point: Any, lower: Any, upper: Any) -> str:
    if point is None:
        return "–"
    return f"{_cell(point)} ({_cell(lower)}–{_cell(upper)})"


def held_out_section(held_out: Mapping[str, Any]) -> str:
    """The registered models on the held-out patients, per endpoint and model."""
    holdout = held_out["holdout"]
    parts = [
        "<h2>Held-out test patients</h2>",
        f"<p>{holdout['n_patients']} patients ({holdout['fraction']:.0%}) were held out by the "
        f"rule <code>{html.escape(holdout['rule'])}</code> before any fitting; the registered "
        "full-data models are evaluated on them here. Harrell C with a bootstrap percentile "
        "95% interval; calibration slope with its Wald 95% interval.</p>",
    ]
    header = ["endpoint", "model", "n", "events", "Harrell C (95% CI)", "IBS"]
    header += ["cal. slope 24 mo (95% CI)"]
    rows = []
    for endpoint, models in held_out.get("endpoints", {}).items():
        if "note" in models:
            rows.append([endpoint.upper(), "–", "–", "–", models["note"], "–", "–"])
            continue
        for name, m in models.items():
            rows.append(
                [
                    endpoint.upper(),
                    name,
                    m["n"],
                    m["events"],
                    _interval(m["harrell_c"], m["harrell_c_lower"], m["harrell_c_upper"]),
                    m["ibs"],
                    _interval(
                        m["calibration_slope_24"],
                        m["calibration_slope_24_lower"],
                        m["calibration_slope_24_upper"],
                    ),
                ]
            )
    return "".join(parts) + _table(header, rows)


def loco_section(loco: Mapping[str, Any]) -> str:
    """Leave-one-centre-out tables: one per endpoint, a row per centre and model."""
    parts = [
        "<h2>Internal-external validation (leave one centre out)</h2>",
        "<p>Each centre's patients are predicted by models fitted on the other centres' "
        "development rows: how the models carry over to a centre they have not seen.</p>",
    ]
    header = ["centre", "model", "n", "events", "Harrell C", "IBS", "cal. slope 24 mo", "note"]
    for endpoint, models in loco["endpoints"].items():
        rows = [
            [r["center"], name, r["n"], r["events"], r["harrell_c"], r["ibs"]]
            + [r["calibration_slope_24"], r.get("note") or ""]
            for name, table in models.items()
            for r in table
        ]
        spread = [
            [
                "all (spread)",
                name,
                "",
                "",
                f"{_cell(s['harrell_c_mean'])} ± {_cell(s['harrell_c_sd'])}",
                "",
                "",
                f"range {_cell(s['harrell_c_min'])}–{_cell(s['harrell_c_max'])}",
            ]
            for name, s in loco["spread"][endpoint].items()
        ]
        parts += [f"<h3>{html.escape(endpoint.upper())}</h3>", _table(header, rows + spread)]
    return "".join(parts)


def append_to_report(path: str | Path, results: Mapping[str, Any]) -> None:
    """Insert the held-out and leave-one-centre-out sections before the page's end."""
    sections = []
    if results.get("held_out", {}).get("endpoints"):
        sections.append(held_out_section(results["held_out"]))
    if results.get("leave_one_centre_out"):
        sections.append(loco_section(results["leave_one_centre_out"]))
    if results.get("missing_data"):
        sections.append(missing_data_section(results["missing_data"]))
    if not sections:
        return
    path = Path(path)
    page = path.read_text(encoding="utf-8")
    if not page.endswith(_END):
        raise EvaluationInputError(f"the report must end with {_END!r} to take extra sections")
    path.write_text(page[: -len(_END)] + "".join(sections) + _END, encoding="utf-8")


def missing_data_section(record: Mapping[str, Any]) -> str:
    """Missingness per field and per centre, the indicator check, the imputation and MAR."""
    how = record.get("imputation", {})
    parts = [
        "<h2>Missing data</h2>",
        f"<p>{record['n_incomplete']} of {record['n_patients']} patients lacked at least one "
        f"imputable predictor. {html.escape(how.get('method', ''))}, m = {how.get('m', '–')}; "
        f"imputation models with {html.escape(how.get('variables', ''))}; "
        f"{html.escape(how.get('pooling', ''))}.</p>",
    ]
    fields = record["fields"]
    parts.append(
        _table(["field", "missing", "%"], [[f["label"], f["n_missing"], f"{f['percent']:g}"]
                                           for f in fields.values()])
    )  # fmt: skip
    if record.get("by_center"):
        names = list(fields)
        rows = [[c, *(f"{p[n]:g}" for n in names)] for c, p in record["by_center"].items()]
        parts.append("<h3>Missing (%) by centre</h3>")
        parts.append(_table(["centre", *(fields[n]["label"] for n in names)], rows))
    check = record.get("indicator_check", {})
    if check:
        parts.append(
            "<h3>Is missingness associated with the outcome?</h3><p>Log-rank test of each "
            "endpoint between patients with the field missing and recorded.</p>"
        )
        rows = [[fields[n]["label"], e.upper(), v["chi2"], f"{v['p_value']:.3g}"]
                for n, by in check.items() for e, v in by.items()]  # fmt: skip
        parts.append(_table(["field", "endpoint", "chi-square", "p"], rows))
    parts.append(f"<p><em>{html.escape(record['caveat'])}</em></p>")
    return "".join(parts)
