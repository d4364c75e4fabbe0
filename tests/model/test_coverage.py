"""The served intervals hold the synthetic cohort's true survival as often as they claim.

A small version of ``bench/coverage.py`` (which runs more seeds and sizes and every
quantity): fitted as training fits, scored against the generator's truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from model.modality import HORIZONS_MONTHS
from model.predictor import Predictor
from model.schema import ENDPOINTS, MODALITIES, encode
from training.fit import fit_bundle
from training.synthetic import CohortSpec, simulate_cohort, true_values_at
from training.validate import validate_cohort

SEEDS = range(4)
HORIZONS = (12, 24, 36)


def _coverage_by_endpoint(seed: int, spec: CohortSpec) -> dict[str, float]:
    bundle = fit_bundle(validate_cohort(simulate_cohort(1000, seed, spec)), seed=seed)
    test = simulate_cohort(400, 50_000 + seed, spec)
    truth = true_values_at(test, spec, months=HORIZONS)
    design = np.stack([encode(test, m).to_numpy() for m in MODALITIES])
    planned = np.zeros(len(test), dtype=int)
    predictor = Predictor(bundle)
    covered = {}
    for endpoint in ENDPOINTS:
        summary = predictor.endpoints[endpoint].compute(design, planned).comparison.summary
        hits = []
        for m, modality in enumerate(MODALITIES):
            for month in HORIZONS:
                column = HORIZONS_MONTHS.index(month)
                true = truth[f"true_surv_{endpoint}_{modality}_{month}"]
                hits.append(
                    (summary.at_horizons_lower[m, :, column] <= true)
                    & (true <= summary.at_horizons_upper[m, :, column])
                )
        covered[endpoint] = float(np.mean(hits))
    return covered


@pytest.fixture(scope="module")
def coverage():
    spec = CohortSpec.load()
    runs = [_coverage_by_endpoint(seed, spec) for seed in SEEDS]
    return {e: float(np.mean([run[e] for run in runs])) for e in ENDPOINTS}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_95_percent_intervals_hold_the_true_survival_at_one_to_three_years(coverage, endpoint):
    assert 0.90 <= coverage[endpoint] <= 0.99
