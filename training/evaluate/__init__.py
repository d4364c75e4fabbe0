"""Model evaluation, one module per question; the public names are importable from here.

- :mod:`~training.evaluate.concordance` — Harrell's and Uno's C;
- :mod:`~training.evaluate.calibration` — calibration table and slope, decision curves;
- :mod:`~training.evaluate.metrics` — the summary metrics of one model on held-out patients;
- :mod:`~training.evaluate.comparators` — the published Table 1 model and the generator's truth;
- :mod:`~training.evaluate.hazard_ratios` — the Table 1 hazard-ratio table;
- :mod:`~training.evaluate.modality_effects` — unadjusted, IPTW and true modality effects;
- :mod:`~training.evaluate.kaplan_meier` — Kaplan-Meier at a horizon and by group;
- :mod:`~training.evaluate.analyses` — the cohort-level analyses together;
- :mod:`~training.evaluate.report` — the HTML and JSON report.
"""

from __future__ import annotations

from training.evaluate.analyses import cohort_analyses
from training.evaluate.calibration import (
    CALIBRATION_GROUPS,
    DECISION_THRESHOLDS,
    calibration_slope,
    calibration_table,
    decision_curve,
)
from training.evaluate.common import DECISION_HORIZON, HORIZONS, survival_on_grid
from training.evaluate.comparators import (
    PUBLISHED_SOURCE_PREFIX,
    PublishedCox,
    oracle_risk,
    oracle_survival,
    published_log_hazard_ratios,
    published_model_risk,
)
from training.evaluate.concordance import PAIRWISE_C_MAX_ROWS, harrell_c, uno_c
from training.evaluate.hazard_ratios import hazard_ratio_table
from training.evaluate.kaplan_meier import KAPLAN_MEIER_COLUMNS, kaplan_meier_at, kaplan_meier_by
from training.evaluate.metrics import null_model_prediction, survival_metrics
from training.evaluate.modality_effects import (
    modality_effect,
    modality_effects,
    propensity_scores,
    true_marginal_hazard_ratio,
)
from training.evaluate.report import (
    NOT_FOR_CLINICAL_USE,
    SYNTHETIC_WARNING,
    to_jsonable,
    write_report,
)

__all__ = [
    "CALIBRATION_GROUPS",
    "DECISION_HORIZON",
    "DECISION_THRESHOLDS",
    "HORIZONS",
    "KAPLAN_MEIER_COLUMNS",
    "NOT_FOR_CLINICAL_USE",
    "PAIRWISE_C_MAX_ROWS",
    "PUBLISHED_SOURCE_PREFIX",
    "SYNTHETIC_WARNING",
    "PublishedCox",
    "calibration_slope",
    "calibration_table",
    "cohort_analyses",
    "decision_curve",
    "harrell_c",
    "hazard_ratio_table",
    "kaplan_meier_at",
    "kaplan_meier_by",
    "modality_effect",
    "modality_effects",
    "null_model_prediction",
    "oracle_risk",
    "oracle_survival",
    "propensity_scores",
    "published_log_hazard_ratios",
    "published_model_risk",
    "survival_metrics",
    "survival_on_grid",
    "to_jsonable",
    "true_marginal_hazard_ratio",
    "uno_c",
    "write_report",
]
