"""The cohort-level analyses of the report: HR table, modality effects, Kaplan-Meier."""

from __future__ import annotations

from typing import Any

import pandas as pd

from training.evaluate.hazard_ratios import hazard_ratio_table
from training.evaluate.kaplan_meier import KAPLAN_MEIER_COLUMNS, kaplan_meier_by
from training.evaluate.modality_effects import modality_effects
from training.synthetic import CohortSpec


def cohort_analyses(
    cohort: pd.DataFrame, endpoint: str, spec: CohortSpec | None = None
) -> dict[str, Any]:
    """The cohort-level sections of ``results["endpoints"][endpoint]``, see :func:`write_report`."""
    return {
        "hazard_ratios": hazard_ratio_table(cohort, endpoint, spec).to_dict("records"),
        "modality_effect": modality_effects(cohort, endpoint, spec),
        "kaplan_meier": {c: kaplan_meier_by(cohort, endpoint, c) for c in KAPLAN_MEIER_COLUMNS},
    }
