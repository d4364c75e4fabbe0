"""The warnings a prognosis carries: training data, missing inputs, support, model checks."""

from __future__ import annotations

from model.bundle import MONTH_GRID
from model.endpoint_predictor import DISAGREEMENT_RATIO
from model.schema import FIELDS, KI67_GRADES, MODALITIES, Patient, grade_from_ki67
from model.support import SupportTable, source_sentence

__all__ = ["DEFAULT_MODALITY", "REAL_DISCLAIMER", "SYNTHETIC_DISCLAIMER", "prognosis_warnings"]

DEFAULT_MODALITY = str(FIELDS["planned_modality"].reference)
"""Modality a prognosis is shown for when none is planned: the reference level of the models."""

SYNTHETIC_DISCLAIMER = (
    "Trained on synthetic data, not for clinical use: the models were fitted to a simulated "
    "cohort calibrated to published aggregates, not to patient records."
)
REAL_DISCLAIMER = (
    "Decision support for a multidisciplinary tumour board, not a substitute for clinical "
    "judgement: predictions come from an observational cohort and carry its biases."
)


def prognosis_warnings(
    patient: Patient,
    planned_name: str,
    endpoints: dict[str, dict],
    support: SupportTable,
    i: int,
    *,
    synthetic: bool,
) -> list[dict]:
    """Every warning of one patient's prognosis, in the order the answer lists them.

    Parameters
    ----------
    patient : Patient
    planned_name : str
        The modality the prognosis is for.
    endpoints : dict
        The prognosis' endpoint sections (``{"hpfs": {...}, "os": {...}}``).
    support : SupportTable
        The support of the batch; `i` is the patient's row.
    i : int
    synthetic : bool
        Whether the model was trained on synthetic data.

    Returns
    -------
    list of dict
        ``{"code", "message", ...context}`` per warning.
    """
    warnings = []
    if synthetic:
        warnings.append(_warning("synthetic_training_data", SYNTHETIC_DISCLAIMER))
    if patient.planned_modality is None:
        warnings.append(
            _warning(
                "no_planned_modality",
                f"No planned modality was given: the prognosis is shown for "
                f"{DEFAULT_MODALITY}, the reference modality, and all three modalities "
                "are compared under `modalities`.",
            )
        )
    warnings.extend(_grade_warnings(patient, str(support.grades[i])))
    for m, name in enumerate(MODALITIES):
        if support.extrapolation[i, m]:
            role = "the planned modality" if name == planned_name else "a comparison"
            warnings.append(
                _warning(
                    "modality_extrapolated",
                    f"{name} ({role}): {_support_message(support, i, m)}",
                    modality=name,
                )
            )
    for endpoint, data in endpoints.items():
        warnings.extend(_endpoint_warnings(endpoint, data))
    return warnings


def _endpoint_warnings(endpoint: str, data: dict) -> list[dict]:
    warnings = []
    check = data["check_model"]
    if check is not None and check["models_disagree"]:
        warnings.append(
            _warning(
                "models_disagree",
                f"The {data['model']} and {check['model']} models' median "
                f"{endpoint.upper()} differ by more than {DISAGREEMENT_RATIO:g}-fold "
                f"({_median_text(data['median_months'])} against "
                f"{_median_text(check['median_months'])}): treat the estimate with "
                "extra caution.",
                endpoint=endpoint,
            )
        )
    survival_at = data["survival_at"]
    outside = [h for h, v in survival_at.items() if not v["lower"] <= v["value"] <= v["upper"]]
    if outside:
        warnings.append(
            _warning(
                "interval_excludes_estimate",
                f"The {endpoint.upper()} 95 % interval at {', '.join(outside)} months "
                f"({data['interval_method']}) does not contain the model's estimate: "
                "the resampled fits sit off the full-data fit, so read the estimate "
                "with extra caution.",
                endpoint=endpoint,
            )
        )
    extrapolated = [h for h, v in survival_at.items() if v["extrapolated"]]
    if extrapolated or data["median_months"]["extrapolated"]:
        what = f"survival at {', '.join(extrapolated)} months" if extrapolated else "the median"
        warnings.append(
            _warning(
                "beyond_follow_up",
                f"Training follow-up for {endpoint.upper()} was adequate only to "
                f"{data['max_follow_up_months']} months; {what} is extrapolated beyond it.",
                endpoint=endpoint,
            )
        )
    return warnings


def _warning(code: str, message: str, **context) -> dict:
    return {"code": code, "message": message, **context}


def _median_text(median: dict) -> str:
    if median["value"] is None:
        return f"not reached by {MONTH_GRID[-1]:g} months"
    return f"{median['value']} months"


def _support_message(support: SupportTable, i: int, m: int) -> str:
    return (
        f"modelled propensity {support.propensity[i, m]:.3f} and "
        f"{support.similar_treated[i, m]} training patient(s) of the same grade and burden "
        f"category treated with it.{source_sentence(support, i, m)} Its prediction is "
        "extrapolation."
    )


def _grade_warnings(patient: Patient, grade: str) -> list[dict]:
    if patient.who_grade is None:
        return [
            _warning(
                "grade_derived_from_ki67",
                f"WHO grade was not given: {grade} was derived from Ki-67 "
                f"{patient.ki67_percent:g} % (WHO 2010: {KI67_GRADES.rule(' %', '–')}).",
            )
        ]
    if patient.ki67_percent is not None:
        from_ki67 = grade_from_ki67(patient.ki67_percent)
        if from_ki67 != patient.who_grade:
            return [
                _warning(
                    "grade_ki67_mismatch",
                    f"The recorded grade {patient.who_grade} was used, but Ki-67 "
                    f"{patient.ki67_percent:g} % corresponds to {from_ki67} (WHO 2010).",
                )
            ]
    return []
