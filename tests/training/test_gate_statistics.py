"""Tests of the gate's intervals: paired bootstrap of ΔC and the slope-interval rule."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.util import Surv

from training.evaluate.concordance import harrell_c, uno_c
from training.gate import _concordance_checks, _failure_text, _slope_check, _verdict
from training.gate_statistics import _matrix_concordance, paired_concordance, slope_overlaps


def _outcomes(n: int, seed: int):
    rng = np.random.default_rng(seed)
    risk = rng.normal(0, 1, n)
    time = rng.exponential(12 * np.exp(-risk))
    censor = rng.uniform(6, 60, n)
    y = Surv.from_arrays(time <= censor, np.minimum(time, censor), "event", "months")
    return y, risk, rng


def test_the_same_model_twice_has_a_difference_of_zero_and_an_interval_of_zero():
    y, risk, _ = _outcomes(200, seed=0)
    figures = paired_concordance(y, risk, risk, n_resamples=50)
    for name in ("harrell_c", "uno_c"):
        assert figures[name]["difference"] == 0.0
        assert (figures[name]["lower"], figures[name]["upper"]) == (0.0, 0.0)
        assert figures[name]["n_resamples"] == 50
    assert figures["harrell_c"]["candidate"] > 0.65


def test_pairing_narrows_the_interval_far_below_two_separate_intervals():
    y, risk, rng = _outcomes(300, seed=1)
    candidate = risk + rng.normal(0, 0.2, len(risk))
    figures = paired_concordance(y, candidate, risk, n_resamples=200)["harrell_c"]
    width = figures["upper"] - figures["lower"]
    assert figures["lower"] <= figures["difference"] <= figures["upper"]
    # A single C on 300 patients has a 95 % interval about 0.06 wide; the paired ΔC under 0.03.
    assert width < 0.03


def test_a_small_point_drop_whose_interval_reaches_below_the_margin_is_refused():
    """The old gate passed any point drop under 0.01; this one needs the interval's lower bound."""
    y, risk, rng = _outcomes(150, seed=5)
    candidate = risk + rng.normal(0, 0.3, len(risk))
    figures = paired_concordance(y, candidate, risk, n_resamples=300)
    harrell = figures["harrell_c"]
    assert -0.01 < harrell["difference"] < 0.0
    assert harrell["lower"] < -0.01
    check = next(
        c
        for c in _concordance_checks("shared held-out", "os", figures)
        if c["check"] == "harrell_c"
    )
    assert check["passed"] is False
    text = _failure_text(check)
    assert text.startswith("OS on the shared held-out patients: non-inferiority not shown")
    assert "the lower bound of the 95 % interval of ΔC (Harrell)" in text
    assert "is not above -0.01" in text


@pytest.mark.parametrize(
    ("lower", "upper", "overlaps"),
    [(0.55, 0.85, True), (0.9, 1.1, True), (1.2, 1.6, True), (1.3, 1.6, False), (0.4, 0.79, False)],
)
def test_the_slope_passes_when_its_interval_overlaps_0_8_to_1_25(lower, upper, overlaps):
    entry = {"slope": (lower + upper) / 2, "lower": lower, "upper": upper, "note": ""}
    assert slope_overlaps(entry) is overlaps
    check = _slope_check("shared held-out", "hpfs", entry, None)
    assert check["passed"] is overlaps
    if not overlaps:
        assert "does not overlap 0.8-1.25" in _failure_text(check)


def test_a_slope_that_cannot_be_computed_fails():
    entry = {"slope": None, "lower": None, "upper": None, "note": "constant predictions"}
    check = _slope_check("shared held-out", "hpfs", entry, None)
    assert check["passed"] is False
    assert "not computable (constant predictions)" in _failure_text(check)


def test_the_verdict_says_non_inferiority_in_words():
    assert _verdict(True, "production").startswith(
        "promoted on non-inferiority: the lower bound of the 95 % interval of ΔC (Harrell and "
        "Uno) is above -0.01 and the calibration slope's 95 % interval overlaps 0.8-1.25"
    )
    assert _verdict(False, "production").startswith("refused: non-inferiority not shown")


def test_the_resampled_c_equals_sksurvs_on_the_same_resample_ties_included():
    rng = np.random.default_rng(4)
    risk = rng.normal(0, 1, 250)
    time = np.round(rng.exponential(12 * np.exp(-risk))) + 0.5
    censor = np.round(rng.uniform(6, 60, 250))
    y = Surv.from_arrays(time <= censor, np.minimum(time, censor), "event", "months")
    candidate = np.round(risk + rng.normal(0, 0.3, 250), 1)
    rows = rng.integers(0, 250, 250)
    counts = np.bincount(rows, minlength=250)[None, :].astype(float)
    matrix = _matrix_concordance(y, (candidate, risk), counts)
    resampled = y[rows]
    assert matrix["harrell_c_candidate"][0] == pytest.approx(
        harrell_c(resampled["event"], resampled["months"], candidate[rows]), abs=1e-12
    )
    assert matrix["uno_c_candidate"][0] == pytest.approx(
        uno_c(resampled, resampled, candidate[rows], 24.0), abs=1e-12
    )
    assert matrix["uno_c_production"][0] == pytest.approx(
        uno_c(resampled, resampled, risk[rows], 24.0), abs=1e-12
    )
