"""Unweighted Cox fits with Efron's ties: lifelines' estimates, without lifelines' loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from training.evaluate import common
from training.evaluate.efron import efron_cox, summary_frame
from training.exceptions import EvaluationInputError

TIGHT = {"step_size": 0.5, "precision": 1e-12}
"""lifelines run to the maximum: its default stopping rule leaves some 1e-5 in the estimates."""
COLUMNS = ["coef", "exp(coef)", "se(coef)", "coef lower 95%", "coef upper 95%", "p"]


def _frame(n: int, p: int, seed: int) -> pd.DataFrame:
    """Durations in whole days (ties), one binary column, censoring about a third."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, -1] = rng.random(n) < 0.3
    lp = X @ np.linspace(0.6, -0.4, p)
    event_time, censoring = rng.exponential(20 * np.exp(-lp)), rng.exponential(40, n)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(p)])
    frame["duration"] = np.maximum(np.round(np.minimum(event_time, censoring) * 30), 1) / 30
    frame["event"] = (event_time < censoring).astype(int)
    return frame


@pytest.mark.parametrize(("n", "p"), [(300, 1), (2000, 5)])
def test_efron_cox_gives_lifelines_estimates_and_wald_intervals(n, p):
    frame = _frame(n, p, seed=n)
    names = list(frame.columns[:p])
    lifelines = CoxPHFitter().fit(frame, "duration", "event", fit_options=TIGHT)

    coef, se = efron_cox(frame[names].to_numpy(), frame["duration"], frame["event"])

    ours = summary_frame(names, coef, se)
    assert frame["duration"].duplicated().sum() > n / 10  # ties, where Efron matters
    np.testing.assert_allclose(ours[COLUMNS], lifelines.summary[COLUMNS], rtol=0, atol=1e-9)


def test_unweighted_evaluation_fits_do_not_use_lifelines_and_weighted_ones_still_do(monkeypatch):
    frame = _frame(500, 2, seed=1)
    expected = CoxPHFitter().fit(
        frame.assign(duration=np.maximum(np.round(frame["duration"] * 30.4375), 1) / 30.4375),
        "duration",
        "event",
        fit_options=TIGHT,
    )

    class Refused(CoxPHFitter):
        def fit(self, *args, **kwargs):
            raise AssertionError("lifelines was used for an unweighted fit")

    monkeypatch.setattr(common, "CoxPHFitter", Refused)
    summary = common._fit_cox(frame).summary

    np.testing.assert_allclose(summary[COLUMNS], expected.summary[COLUMNS], rtol=0, atol=1e-9)
    fitted = common._fit_cox(frame)
    np.testing.assert_allclose(fitted.params_, expected.params_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        fitted.confidence_intervals_, expected.confidence_intervals_, rtol=0, atol=1e-9
    )
    assert list(fitted.confidence_intervals_.columns) == ["95% lower-bound", "95% upper-bound"]
    with pytest.raises(AssertionError, match="lifelines was used"):
        common._fit_cox(frame.assign(w=1.0), weights_col="w", robust=True)


def test_a_column_without_variation_is_refused_with_what_to_do():
    frame = _frame(200, 2, seed=2).assign(x1=1.0)

    with pytest.raises(EvaluationInputError, match="singular.*drop it or merge its levels"):
        efron_cox(frame[["x0", "x1"]].to_numpy(), frame["duration"], frame["event"])


def test_a_fit_without_events_is_refused():
    frame = _frame(50, 1, seed=3)

    with pytest.raises(EvaluationInputError, match="at least one event, but got none"):
        efron_cox(frame[["x0"]].to_numpy(), frame["duration"], np.zeros(50, dtype=bool))
