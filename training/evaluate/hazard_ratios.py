"""Table 1 of the 004 abstract: univariate and multivariate Cox hazard ratios."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from model.schema import DESIGN_COLUMNS, DesignColumn, effective_grades, encode
from training.evaluate.common import _MIN_COLUMN_VARIANCE, _fit_cox, _outcome_frame
from training.evaluate.comparators import _published_hazard_ratios
from training.synthetic import CohortSpec


def _cox_summary(design: pd.DataFrame, outcome: pd.DataFrame) -> pd.DataFrame:
    """HR, 95 % CI and p per column; NaN for columns too constant to estimate."""
    result = pd.DataFrame(math.nan, index=design.columns, columns=["hr", "lower", "upper", "p"])
    kept = design.columns[design.var(axis=0) >= _MIN_COLUMN_VARIANCE]
    if len(kept) == 0 or outcome["event"].sum() == 0:
        return result
    fitted = _fit_cox(pd.concat([design[kept], outcome], axis=1))
    summary = fitted.summary
    result.loc[kept, "hr"] = summary["exp(coef)"]
    result.loc[kept, "lower"] = summary["exp(coef) lower 95%"]
    result.loc[kept, "upper"] = summary["exp(coef) upper 95%"]
    result.loc[kept, "p"] = summary["p"]
    return result


def _univariate_groups() -> list[list[DesignColumn]]:
    """The columns fitted together in each univariate model: one field's, within one grade."""
    groups: dict[tuple[str, str | None], list[DesignColumn]] = {}
    for column in DESIGN_COLUMNS:
        groups.setdefault((column.source, column.within), []).append(column)
    return list(groups.values())


def hazard_ratio_table(
    cohort: pd.DataFrame, endpoint: str, spec: CohortSpec | None = None
) -> pd.DataFrame:
    """Univariate and multivariate Cox hazard ratios in the layout of the 004 abstract's Table 1.

    The multivariate model holds every column of :func:`model.schema.encode`; a univariate model
    holds one factor's columns (grade: G2 and G3 together; modality within a grade: TAE and
    SIRT fitted among that grade's patients only). Only patient fields and outcomes are used:
    the generator's `true_*` columns never enter. Fitted with Efron's ties
    (:func:`training.evaluate.efron.efron_cox`, lifelines' estimates).

    Returns
    -------
    DataFrame, shape = (n_features, 14)
        `feature`, `factor`, `level`, `reference`, `n_level` (patients at the level; all for
        age), `univariate_hr`, `univariate_lower`, `univariate_upper`, `univariate_p`,
        `multivariate_hr`, `multivariate_lower`, `multivariate_upper`, `multivariate_p`,
        `published_hr` (Table 1 of the 004 abstract; NaN where it gives none).
    """
    outcome = _outcome_frame(cohort, endpoint)
    design = encode(cohort)
    grades = effective_grades(cohort)
    multivariate = _cox_summary(design, outcome)
    published = _published_hazard_ratios(endpoint, spec)
    rows = []
    for group in _univariate_groups():
        grade = group[0].within
        names = [column.name for column in group]
        rows_in = (grades == grade).to_numpy() if grade else np.ones(len(cohort), dtype=bool)
        univariate = _cox_summary(design.loc[rows_in, names], outcome.loc[rows_in])
        for column in group:
            name = column.name
            is_age = column.source == "age_years"
            rows.append(
                {
                    "feature": name,
                    "factor": column.factor,
                    "level": column.level,
                    "reference": column.reference,
                    "n_level": int(len(cohort) if is_age else design[name].sum()),
                    **{f"univariate_{k}": float(v) for k, v in univariate.loc[name].items()},
                    **{f"multivariate_{k}": float(v) for k, v in multivariate.loc[name].items()},
                    "published_hr": float(published[name]),
                }
            )
    return pd.DataFrame(rows)
