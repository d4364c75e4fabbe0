"""The registered bundle on the held-out patients: every family's metrics, with intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from model.bundle import MONTH_GRID, EndpointModel, ModelBundle
from model.schema import ENDPOINTS, encode
from training import evaluate
from training.cross_validation import headline
from training.evaluate.concordance import bootstrap_harrell_c
from training.exceptions import EvaluationInputError
from training.fit import survival_target

HELD_OUT_BOOTSTRAP = 200
"""Resamples of the held-out rows for the percentile interval of their Harrell C."""


def _harrell_c_interval(y: np.ndarray, risk: np.ndarray, seed: int) -> tuple[float, float]:
    """Percentile 95 % interval of Harrell C over bootstrap resamples of the rows.

    The resamples are drawn one after another from `seed` and all counted in one pass
    (:func:`training.evaluate.concordance.bootstrap_harrell_c`); a resample without an event
    is left out.
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    counts = np.stack(
        [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(HELD_OUT_BOOTSTRAP)]
    )
    counts = counts[(counts * y["event"]).any(axis=1)]
    values = bootstrap_harrell_c(y["event"], y["months"], risk, counts)
    lower, upper = np.percentile(values, [2.5, 97.5])
    return float(lower), float(upper)


def predict_rows(model: EndpointModel, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A fitted family's log relative hazard and served survival on MONTH_GRID for cohort rows."""
    design = encode(rows).to_numpy()
    return model.full.log_hazard(design), model.survival(design)


def _held_out_metrics(model: EndpointModel, rows: pd.DataFrame, y: np.ndarray, seed: int) -> dict:
    """:func:`evaluate_on_rows`'s figures for one model, or ``{"note": why}`` if it cannot be."""
    risk, survival = predict_rows(model, rows)
    try:
        metrics = evaluate.survival_metrics(y, y, risk, survival, times=MONTH_GRID)
    except EvaluationInputError as error:
        return {"note": str(error)}
    lower, upper = _harrell_c_interval(y, risk, seed)
    return {
        "n": len(rows),
        "events": int(y["event"].sum()),
        **headline(metrics),
        "harrell_c_lower": lower,
        "harrell_c_upper": upper,
        "skipped": metrics["skipped"],
    }


def evaluate_on_rows(
    bundle: ModelBundle, rows: pd.DataFrame, *, seed: int = 0, n_jobs: int = 1
) -> dict:
    """Every full-data model of `bundle` on cohort `rows` the bundle was not fitted on.

    Returns ``{endpoint: {model: metrics}}`` where metrics are :func:`headline` figures plus
    `n`, `events`, `harrell_c_lower`/`_upper` (bootstrap percentile interval) and
    `skipped`; ``{endpoint: {"note": reason}}`` when the rows cannot be evaluated; ``{}``
    when there are no rows (nothing was held out).
    """
    if not len(rows):
        return {}
    targets = {endpoint: survival_target(rows, endpoint) for endpoint in ENDPOINTS}
    pairs = [(e, name) for e in ENDPOINTS for name in bundle.models[e]]
    figures = Parallel(n_jobs=n_jobs)(
        delayed(_held_out_metrics)(bundle.models[e][name], rows, targets[e], seed)
        for e, name in pairs
    )
    evaluation: dict[str, dict] = {endpoint: {} for endpoint in ENDPOINTS}
    for (endpoint, name), result in zip(pairs, figures, strict=True):
        if "note" in result:
            evaluation[endpoint] = {"note": result["note"]}
        elif "note" not in evaluation[endpoint]:
            evaluation[endpoint][name] = result
    return evaluate.to_jsonable(evaluation)
