"""Property tests, in process: what must hold for every patient, not just the examples.

Patients are drawn from `Patient.model_json_schema()` (its fields, ranges, categories and the
grade-or-Ki-67 rule), FHIR Bundles from the codes of `data/fhir_mapping.yaml`. Any valid
patient gets a prognosis whose numbers are sane; any invalid one is refused with a 400 that
names the field and never the value; `encode` keeps its contract; a patient written as a
FHIR R4 Bundle maps back to itself, and a damaged Bundle gets a 4xx OperationOutcome, never a
5xx. Runs are derandomized and keep no Hypothesis database. The default run draws a few
hundred examples per property; the slow run (``make reliability``) ten times as many.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import re
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.bundle import MONTH_GRID
from model.schema import (
    BOOLEAN_FIELDS,
    FEATURE_NAMES,
    GRADES,
    IMPUTED_QUANTITIES,
    MODALITIES,
    PRIMARY_SITES,
    Patient,
    encode,
    patients_frame,
)
from tests.conftest import BENTOML_PYDANTIC_DEPRECATION
from tests.serving.conftest import SETTING_NAMES, ServiceClient

pytestmark = pytest.mark.filterwarnings(BENTOML_PYDANTIC_DEPRECATION)

ROOT = Path(__file__).resolve().parents[2]
MAPPING = yaml.safe_load((ROOT / "data" / "fhir_mapping.yaml").read_text(encoding="utf-8"))
SYSTEMS = MAPPING["systems"]
PATIENT_SCHEMA = Patient.model_json_schema()
TODAY = date(2026, 3, 1)
HORIZONS = ("12", "24", "36", "60")
TOLERANCE = 1e-4
"""Rounding of the answer: survival to 4 decimals, months to 1."""
CANARY = "zq9"
"""Prefix of every invented string: no answer may contain it."""

DEFAULT, SLOW = 1, 10
BUDGETS = [
    pytest.param(DEFAULT, id="default"),
    pytest.param(SLOW, id="slow", marks=pytest.mark.slow),
]


def examples(budget: int, count: int) -> settings:
    """`count` examples per default run (times `budget`), derandomized, with no database."""
    return settings(
        max_examples=count * budget,
        deadline=None,
        database=None,
        derandomize=True,
        # Bundles and patients are built from several draws each; slow to generate by design.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- patients from the schema -------------------------------------------------------------------


def _variants(spec: dict) -> list[dict]:
    return spec.get("anyOf", [spec])


def _not_null(spec: dict) -> dict:
    [variant] = [v for v in _variants(spec) if v.get("type") != "null"]
    return variant


def value_strategy(spec: dict) -> st.SearchStrategy:
    """Values a JSON Schema property allows (the kinds `Patient`'s schema uses)."""
    options = []
    for variant in _variants(spec):
        kind = variant.get("type")
        if "enum" in variant:
            options.append(st.sampled_from(variant["enum"]))
        elif kind == "null":
            options.append(st.none())
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "integer":
            options.append(st.integers(variant["minimum"], variant["maximum"]))
        elif kind == "number":
            options.append(
                st.floats(
                    variant["minimum"], variant["maximum"], allow_nan=False, allow_infinity=False
                )
            )
        else:
            raise ValueError(f"the schema property must be of a known kind, but got {variant}")
    return st.one_of(options)


@st.composite
def patient_fields(draw, complete: bool = False) -> dict:
    """A valid patient as JSON: required fields, the grade rule's field, optional ones or not;
    with `complete`, every imputable predictor known (`IMPUTED_QUANTITIES`)."""
    # A schema with rules naming alternative required fields (`anyOf`) has one drawn; the
    # grade has none since it may be left unknown (imputed).
    rule = draw(st.sampled_from(PATIENT_SCHEMA.get("anyOf", [{"required": []}])))
    needed = {*PATIENT_SCHEMA["required"], *rule["required"]}
    if complete:
        needed |= set(IMPUTED_QUANTITIES)
    fields = {}
    for name, spec in PATIENT_SCHEMA["properties"].items():
        if name in needed:
            fields[name] = draw(value_strategy(_not_null(spec)))
        elif draw(st.booleans()):
            fields[name] = draw(value_strategy(spec))
    return fields


patients = patient_fields().map(lambda fields: Patient(**fields))
complete_patients = patient_fields(complete=True).map(lambda fields: Patient(**fields))


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(reliability_model_tag):
    """The predictor of the suite's registered bundle (600 synthetic patients, 5 bootstraps)."""
    from model.predictor import Predictor
    from store import registry

    return Predictor(registry.load_bundle(reliability_model_tag))


@pytest.fixture(scope="module")
def api(reliability_model_tag, tmp_path_factory) -> Iterator[ServiceClient]:
    """The service in process (no auth), serving the suite's bundle, auditing to a temp dir."""
    audit_log = tmp_path_factory.mktemp("properties-audit") / "audit.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        for name in SETTING_NAMES:
            patch.delenv(f"NETPROG_{name}", raising=False)
        patch.setenv("NETPROG_MODEL_TAG", reliability_model_tag)
        patch.setenv("NETPROG_AUDIT_LOG", str(audit_log))
        patch.setenv("NETPROG_AUDIT_FSYNC", "false")
        module = sys.modules.get("serving.service")
        if module is None:
            module = importlib.import_module("serving.service")
        elif module.BUNDLE_TAG != reliability_model_tag:
            module = importlib.reload(module)
        # Prometheus collectors are process-global: an in-process app goes without /metrics.
        config = module.NetPrognosis.config
        previous = config.get("metrics")
        config["metrics"] = {**(previous or {}), "enabled": False}
        try:
            with ServiceClient(module.NetPrognosis.to_asgi()) as client:
                yield client
        finally:
            if previous is None:
                config.pop("metrics", None)
            else:
                config["metrics"] = previous


# --- (a) any valid patient: a sane prognosis ----------------------------------------------------


def assert_interval(entry: dict, low: float = 0.0, high: float = 1.0) -> None:
    assert low - TOLERANCE <= entry["lower"] <= entry["value"] + TOLERANCE
    assert entry["value"] <= entry["upper"] + TOLERANCE <= high + 2 * TOLERANCE


def assert_curve(curve: list[dict]) -> None:
    assert [p["month"] for p in curve] == [int(m) for m in MONTH_GRID]
    assert curve[0]["survival"] == pytest.approx(1.0, abs=TOLERANCE)
    for point in curve:
        assert 0.0 <= point["lower"] <= point["survival"] <= point["upper"] <= 1.0
    for column in ("survival", "lower", "upper"):
        values = np.array([p[column] for p in curve])
        assert np.all(np.diff(values) <= TOLERANCE), column


def assert_median(median: dict, curve: list[dict]) -> None:
    survival = np.array([p["survival"] for p in curve])
    if not median["reached"]:
        assert median["value"] is None
        assert survival[-1] >= 0.5 - TOLERANCE
        return
    value = median["value"]
    assert 0.0 <= value <= MONTH_GRID[-1]
    # The first crossing of 0.5 by the linearly joined curve, to the 0.1 month shown.
    assert np.interp(max(value - 0.05, 0.0), MONTH_GRID, survival) >= 0.5 - TOLERANCE
    assert np.interp(value + 0.05, MONTH_GRID, survival) <= 0.5 + TOLERANCE
    if median["lower"] is not None:
        assert median["lower"] <= value + 0.05
    if median["upper"] is not None:
        assert value <= median["upper"] + 0.05


def assert_endpoint(endpoint: dict, planned: str) -> None:
    curve = endpoint["curve"]
    assert_curve(curve)
    assert_median(endpoint["median_months"], curve)
    for horizon in HORIZONS:
        at = endpoint["survival_at"][horizon]
        assert_interval(at)
        assert at["value"] == pytest.approx(curve[int(horizon)]["survival"], abs=TOLERANCE)
    assert_interval(endpoint["rmst_60_months"], 0.0, 60.0)
    assert 0.0 <= endpoint["risk_percentile"] <= 100.0
    assert endpoint["modality"] == planned
    entries = endpoint["modalities"]
    assert [e["modality"] for e in entries] == list(MODALITIES)
    assert [e["planned"] for e in entries] == [m == planned for m in MODALITIES]
    for entry in entries:
        assert_curve(entry["curve"])
        assert_median(entry["median_months"], entry["curve"])
        assert (entry["difference_vs_planned"] is None) == entry["planned"]
    assert entries[MODALITIES.index(planned)]["curve"] == curve
    explanation = endpoint["explanation"]
    total = explanation["base_value"] + sum(i["contribution"] for i in explanation["items"])
    assert total == pytest.approx(explanation["margin"], abs=5e-3)
    sizes = [abs(i["contribution"]) for i in explanation["items"]]
    assert sizes == sorted(sizes, reverse=True)


def assert_conditional(conditional: dict, months_since: float) -> None:
    curve = conditional["curve"]
    assert curve[0]["month"] == pytest.approx(months_since, abs=0.01)
    assert curve[0]["survival"] == 1.0
    survival = np.array([p["survival"] for p in curve])
    assert np.all(np.diff(survival) <= TOLERANCE)
    assert all(0.0 <= p["lower"] <= p["survival"] <= p["upper"] <= 1.0 for p in curve)
    assert 0.0 < conditional["survival_at_start"] <= 1.0
    for horizon, entry in conditional["additional_survival_at"].items():
        assert (entry is None) == (months_since + int(horizon) > MONTH_GRID[-1])
        if entry is not None:
            assert_interval(entry)


@pytest.mark.parametrize("budget", BUDGETS)
def test_any_valid_patient_gets_a_prognosis_whose_numbers_are_sane(predictor, budget):
    from model.exceptions import ConditionalSurvivalUndefined

    follow_up = st.none() | st.floats(0, float(MONTH_GRID[-1]))

    # 100 by default: a patient with unknown fields costs one prognosis per likely completion.
    @examples(budget, 100)
    @given(patient=patients, months_since=follow_up)
    def check(patient, months_since):
        try:
            prognosis = predictor.prognosis(patient, months_since)
        except ConditionalSurvivalUndefined:
            # Refused (422) where S(months_since) is about zero: then it must really be.
            point = predictor.prognosis(patient)
            curves = [predictor_curve(point, e) for e in ("hpfs", "os")]
            assert min(np.interp(months_since, MONTH_GRID, c) for c in curves) < 1.1e-3
            return
        planned = patient.planned_modality or "TACE"
        for name in ("hpfs", "os"):
            assert_endpoint(prognosis[name], planned)
            if months_since is not None:
                assert_conditional(prognosis[name]["conditional"], months_since)
        summary = prognosis["patient_summary"]
        unknown = list(patient.unknown_fields)
        if patient.grade is None:
            # The contract: the most probable grade, marked as imputed.
            assert (summary["grade_source"], summary["who_grade"] in GRADES) == ("imputed", True)
        else:
            assert summary["who_grade"] == patient.grade
        if patient.burden_category is None:
            assert summary["burden_category"] == "not recorded (imputed)"
        else:
            assert summary["burden_category"] == patient.burden_category
        assert summary.get("imputed_fields", []) == unknown
        assert summary["planned_modality_given"] == (patient.planned_modality is not None)
        codes = [w["code"] for w in prognosis["warnings"]]
        assert ("imputed_fields" in codes) == bool(unknown)
        assert ("no_planned_modality" in codes) == (patient.planned_modality is None)
        derived = patient.who_grade is None and patient.ki67_percent is not None
        assert ("grade_derived_from_ki67" in codes) == derived

    check()


def predictor_curve(prognosis: dict, endpoint: str) -> np.ndarray:
    return np.array([p["survival"] for p in prognosis[endpoint]["curve"]])


# --- (b) any invalid patient: a 400 naming the field, never the value --------------------------

canary_text = st.text(alphabet="abcdefghjkmnpqrstuvwxyz", min_size=3, max_size=12).map(
    lambda s: f"{CANARY}{s}"
)
extra_names = st.text(alphabet="abcdefghjkmnpqrstuvwxyz_", min_size=1, max_size=12).map(
    lambda s: f"extra_{s}"
)
"""Names of fields `Patient` lacks; the answer names them (a name is not a value)."""
json_leaves = st.one_of(st.booleans(), st.integers(), canary_text, st.none())
json_values = json_leaves | st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(canary_text, inner, max_size=3),
    max_leaves=6,
)
"""Any JSON, a scalar at least half the time (what breaks code that expects a list or object)."""


def _out_of_range(spec: dict) -> st.SearchStrategy:
    low, high = spec["minimum"], spec["maximum"]
    if spec["type"] == "integer":
        return st.integers(max_value=low - 1) | st.integers(min_value=high + 1)
    below = st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False)
    above = st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False)
    return below | above


def _wrong_type(spec: dict) -> st.SearchStrategy:
    kind = spec.get("type")
    if "enum" in spec:
        return st.integers() | st.booleans() | st.lists(canary_text, min_size=1, max_size=2)
    if kind == "boolean":
        return st.integers() | canary_text | st.just("true") | st.lists(st.booleans(), min_size=1)
    if kind in ("integer", "number"):
        # Not numbers in strings: pydantic reads "64" as 64, the same number.
        return (
            canary_text
            | st.booleans()
            | st.lists(st.integers(), min_size=1, max_size=2)
            | st.just({})
        )
    raise ValueError(f"no wrong type for {spec}")


@st.composite
def invalid_patients(draw) -> tuple[dict, tuple, object]:
    """A valid patient made invalid in one way: (fields, where the API must say, bad value)."""
    fields = draw(patient_fields())
    properties = PATIENT_SCHEMA["properties"]
    # Not "no grade" any more: a patient without grade or Ki-67 is valid (the grade is
    # integrated over), as is null for every field that may be unknown.
    kind = draw(st.sampled_from(("range", "type", "category", "missing", "extra")))
    if kind == "range":
        name = draw(st.sampled_from([n for n, s in properties.items() if "maximum" in str(s)]))
        value = draw(_out_of_range(_not_null(properties[name])))
    elif kind == "type":
        name = draw(st.sampled_from(list(properties)))
        value = draw(_wrong_type(_not_null(properties[name])))
    elif kind == "category":
        name = draw(st.sampled_from([n for n, s in properties.items() if "enum" in str(s)]))
        value = draw(canary_text)
    elif kind == "extra":
        name, value = draw(extra_names), draw(json_values)
    else:
        gone = draw(st.sampled_from(PATIENT_SCHEMA["required"]))
        fields.pop(gone)
        return fields, ("patient", gone), None
    fields[name] = value
    return fields, ("patient", name), value


def _leaks(value: object, text: str) -> bool:
    """Whether an answer quotes `value` (numbers: only those too long to occur by chance)."""
    if isinstance(value, str):
        return value in text
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        shown = json.dumps(value)
        return len(shown) >= 5 and shown in text
    return any(_leaks(v, text) for v in (value.values() if isinstance(value, dict) else value))


@pytest.mark.parametrize("budget", BUDGETS)
def test_any_invalid_patient_is_refused_with_a_400_naming_the_field_but_never_its_value(
    api, budget
):
    from pydantic import ValidationError

    from serving.schemas import ErrorResponse

    @examples(budget, 300)
    @given(invalid=invalid_patients(), batch=st.booleans())
    def check(invalid, batch):
        fields, where, value = invalid
        with pytest.raises(ValidationError):
            Patient.model_validate(fields)
        if batch:
            response = api.post("/v1/prognosis/batch", json={"patients": [fields]})
            where = ("patients", 0, *where[1:])
        else:
            response = api.post("/v1/prognosis", json={"patient": fields})

        assert response.status_code == 400
        body = ErrorResponse.model_validate(response.json())
        assert where in {tuple(d.loc[: len(where)]) for d in body.detail}
        assert not _leaks(value, response.text)
        assert CANARY not in response.text

    check()


# --- (c) encode(): one row per patient, one-hot, finite ----------------------------------------


@pytest.mark.parametrize("budget", BUDGETS)
def test_encode_gives_one_finite_one_hot_row_per_patient_whatever_the_patients(budget):
    @examples(budget, 150)
    @given(
        batch=st.lists(complete_patients, min_size=1, max_size=12),
        extra=st.none() | patients,
        modality=st.sampled_from(MODALITIES),
        data=st.data(),
    )
    def check(batch, extra, modality, data):
        if extra is not None:
            batch.insert(data.draw(st.integers(0, len(batch))), extra)
        frame = patients_frame(batch)
        unknown = {name for patient in batch for name in patient.unknown_fields}
        if unknown:
            # A design matrix is of complete patients: unknowns are integrated over first,
            # never read as "no". The refusal names every unknown field.
            with pytest.raises(ValueError, match="unknown") as refused:
                encode(frame, modality)
            named = set(re.findall(r"(\w+) in \d+ row", str(refused.value)))
            assert named == unknown
            return
        design = encode(frame, modality)
        per_row = pd.Series(
            data.draw(
                st.lists(st.sampled_from(MODALITIES), min_size=len(batch), max_size=len(batch))
            )
        )

        assert design.shape == (len(batch), len(FEATURE_NAMES))
        assert list(design.columns) == list(FEATURE_NAMES)
        assert design.index.equals(frame.index)
        assert np.isfinite(design.to_numpy()).all()
        assert design.equals(encode(frame, pd.Series([modality] * len(batch))))
        mixed = encode(frame, per_row)
        for i, patient in enumerate(batch):
            assert_encoded_row(design.iloc[i], patient, modality)
            assert_encoded_row(mixed.iloc[i], patient, per_row[i])
            alone = encode(frame.iloc[[i]], per_row[i])
            assert alone.iloc[0].equals(mixed.iloc[i])

    check()


def assert_encoded_row(row: pd.Series, patient: Patient, modality: str) -> None:
    values = set(row.drop("age_decades_from_60").unique())
    assert values <= {0.0, 1.0}
    grade = patient.grade
    assert [row[f"grade_{g}"] for g in GRADES[1:]] == [float(grade == g) for g in GRADES[1:]]
    for g in GRADES:
        for m in MODALITIES[1:]:
            assert row[f"{m}_in_{g}"] == float(g == grade and m == modality)
    assert [row[f"site_{s}"] for s in PRIMARY_SITES[1:]] == [
        float(patient.primary_site == s) for s in PRIMARY_SITES[1:]
    ]
    burden = [row["burden_25_50"], row["burden_50_75"], row["burden_gt_75"]]
    assert burden == [float(patient.burden_category == c) for c in ("25-50", "50-75", ">75")]
    for name in BOOLEAN_FIELDS:
        assert row[name] == float(getattr(patient, name))
    assert row["age_decades_from_60"] == pytest.approx((patient.age_years - 60) / 10)


# --- (d) FHIR: a Bundle of any patient maps back to it; a damaged one is a 4xx ------------------


def _coding(rule: dict) -> dict:
    return {
        "system": SYSTEMS[rule["system"]],
        "code": str(rule["code"]),
        "display": rule["display"],
    }


def _codings(rules: list[dict]) -> st.SearchStrategy[dict]:
    return st.sampled_from(rules).map(_coding)


def _dates(start: date, end: date) -> st.SearchStrategy[date]:
    return st.dates(start, end).filter(lambda d: (d.month, d.day) != (2, 29))


def _subject() -> dict:
    return {"subject": {"reference": "Patient/p"}}


@st.composite
def patient_bundles(
    draw, today: date | None = TODAY, record_absence: bool = False
) -> tuple[Patient, dict]:
    """A patient and a FHIR R4 Bundle (type collection) that says exactly it when read on
    `today` (None: the service's today, UTC), the age's reference date when none is planned.

    A boolean that is False is written as nothing, or with `record_absence` as recorded
    absence (a refuted Condition, a Procedure not done, a MedicationStatement not taken); an
    unknown one (None) is always written as nothing.
    """
    today = today or datetime.now(UTC).date()
    patient = draw(patients)
    conditions = MAPPING["conditions"]
    planned_on = draw(_dates(date(2020, 1, 1), date(2030, 12, 31)))
    reference_date = planned_on if patient.planned_modality else today
    birthday = reference_date.replace(year=reference_date.year - patient.age_years)
    born = birthday - timedelta(days=draw(st.integers(0, 364)))
    before = reference_date - timedelta(days=draw(st.integers(1, 3000)))
    resources = [
        {"resourceType": "Patient", "id": "p", "birthDate": born.isoformat()}
        | ({"gender": patient.sex} if patient.sex else {}),
    ]
    diagnosis = {
        "resourceType": "Condition",
        "id": "net",
        "code": {"coding": [draw(_codings(conditions["net_diagnosis"]["codes"]))]},
        **_subject(),
    }
    sites = MAPPING["primary_site"]
    if patient.primary_site == "other":
        diagnosis["code"] = {"coding": [draw(_codings(sites["diagnosis"]["other"]))]}
    else:
        diagnosis["bodySite"] = [
            {"coding": [draw(_codings(sites["body_site"][patient.primary_site]))]}
        ]
    resources.append(diagnosis)
    resources.append(_condition("liver", draw(_codings(conditions["liver_metastases"]["codes"]))))
    if patient.extrahepatic_metastases or (
        record_absence and patient.extrahepatic_metastases is False
    ):
        coding = draw(_codings(conditions["extrahepatic_metastases"]["codes"]))
        resources.append(_condition("extrahepatic", coding, patient.extrahepatic_metastases))
    resources += _observations(draw, patient, before)
    procedures = MAPPING["procedures"]
    if patient.prior_hepatic_treatment or (
        record_absence and patient.prior_hepatic_treatment is False
    ):
        coding = draw(_codings(procedures["prior_hepatic_treatment"]["codes"]))
        status = "completed" if patient.prior_hepatic_treatment else "not-done"
        resources.append(_procedure("hepatic", coding, status, before))
    if patient.primary_resected is not None:
        coding = draw(_codings(procedures["primary_resected"]["codes"]))
        status = "completed" if patient.primary_resected else "not-done"
        resources.append(_procedure("resection", coding, status, before))
    if patient.planned_modality is not None:
        modality = procedures["planned_modality"]["modalities"][patient.planned_modality]
        resources.append(
            {
                "resourceType": "ServiceRequest",
                "id": "plan",
                "status": "active",
                "intent": "order",
                "code": {"coding": [draw(_codings(modality["codes"]))]},
                "occurrenceDateTime": planned_on.isoformat(),
                **_subject(),
            }
        )
    for name, medication in MAPPING["medications"].items():
        given = getattr(patient, name)
        if given or (record_absence and given is False):
            coding = draw(_codings(medication["codes"]))
            resources.append(
                {
                    "resourceType": "MedicationStatement",
                    "id": name.replace("_", "-"),
                    "status": "active" if given else "not-taken",
                    "medicationCodeableConcept": {"coding": [coding]},
                    **_subject(),
                }
            )
    order = draw(st.permutations(resources))
    entries = [{"fullUrl": f"urn:x:{r['resourceType']}/{r['id']}", "resource": r} for r in order]
    return patient, {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _observations(draw, patient: Patient, before: date) -> list[dict]:
    """The Ki-67, grade and burden Observations of the known ones."""
    observations, found = MAPPING["observations"], []
    if patient.ki67_percent is not None:
        coding = draw(_codings(observations["ki67_percent"]["codes"]))
        found.append(_quantity("ki67", coding, patient.ki67_percent, before))
    if patient.who_grade is not None:
        grade = observations["who_grade"]
        found.append(
            {
                "resourceType": "Observation",
                "id": "grade",
                "status": "final",
                "code": {"coding": [draw(_codings(grade["codes"]))]},
                "effectiveDateTime": before.isoformat(),
                "valueCodeableConcept": {
                    "coding": [draw(_codings(grade["values"][patient.who_grade]))]
                },
                **_subject(),
            }
        )
    if patient.tumor_burden_percent is not None:
        burden = draw(_codings(observations["tumor_burden_percent"]["codes"]))
        found.append(_quantity("burden", burden, patient.tumor_burden_percent, before))
    return found


def _condition(identifier: str, coding: dict, present: bool = True) -> dict:
    verified = "confirmed" if present else "refuted"
    return {
        "resourceType": "Condition",
        "id": identifier,
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verified,
                }
            ]
        },
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [coding]},
        **_subject(),
    }


def _quantity(identifier: str, coding: dict, value: float, on: date) -> dict:
    return {
        "resourceType": "Observation",
        "id": identifier,
        "status": "final",
        "code": {"coding": [coding]},
        "effectiveDateTime": on.isoformat(),
        "valueQuantity": {"value": value, "unit": "%", "system": SYSTEMS["ucum"], "code": "%"},
        **_subject(),
    }


def _procedure(identifier: str, coding: dict, status: str, on: date) -> dict:
    return {
        "resourceType": "Procedure",
        "id": identifier,
        "status": status,
        "code": {"coding": [coding]},
        "performedDateTime": on.isoformat(),
        **_subject(),
    }


@st.composite
def written_bundles(draw) -> tuple[bool, Patient, dict]:
    record_absence = draw(st.booleans())
    return (record_absence, *draw(patient_bundles(record_absence=record_absence)))


def expected_from_fhir(patient: Patient, record_absence: bool, absent_booleans: str) -> Patient:
    """What a Bundle written by `patient_bundles` says: a boolean predictor written as nothing
    is "no" under `assume_none` and unknown under `impute`."""
    changed = {}
    for name in BOOLEAN_FIELDS:
        value = getattr(patient, name)
        written = value or (record_absence and value is False)
        if not written:
            changed[name] = False if absent_booleans == "assume_none" else None
    return patient.model_copy(update=changed)


@pytest.mark.parametrize("absent_booleans", ["assume_none", "impute"])
@pytest.mark.parametrize("budget", BUDGETS)
def test_any_patient_written_as_a_fhir_bundle_maps_back_to_the_same_patient(
    budget, absent_booleans
):
    from serving.fhir import patient_from_bundle
    from serving.fhir.codes import FhirMapping

    mapping = FhirMapping({**MAPPING, "absent_booleans": absent_booleans})

    @examples(budget, 150)
    @given(written=written_bundles())
    def check(written):
        record_absence, patient, bundle = written
        expected = expected_from_fhir(patient, record_absence, absent_booleans)

        mapped = patient_from_bundle(bundle, mapping=mapping, today=TODAY)

        assert mapped.patient == expected
        assert set(mapped.provenance) == set(PATIENT_SCHEMA["properties"])
        for name, value in expected.model_dump().items():
            source = mapped.provenance[name]["source"]
            assert source in ("resource", "derived", "default", "absent"), name
            assert (source == "absent") == (value is None), name

    check()


def _without(bundle: dict, *identifiers: str) -> dict:
    kept = [e for e in bundle["entry"] if e["resource"]["id"] not in identifiers]
    return {**bundle, "entry": kept}


def _resource(bundle: dict, identifier: str) -> dict | None:
    return next((e["resource"] for e in bundle["entry"] if e["resource"]["id"] == identifier), None)


def _net_coded(bundle: dict) -> list[str]:
    """The ids of the Conditions that code a NET diagnosis, by code or by text."""
    concept = MAPPING["conditions"]["net_diagnosis"]
    found = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "Condition":
            continue
        for coding in resource["code"]["coding"]:
            code = coding["code"].replace(".", "")
            for rule in concept["codes"]:
                wanted = str(rule["code"]).replace(".", "")
                same = code.startswith(wanted) if rule.get("prefix") else code == wanted
                if coding["system"] == SYSTEMS[rule["system"]] and same:
                    found.append(resource["id"])
            if any(re.search(p, coding["display"], re.IGNORECASE) for p in concept["text"]):
                found.append(resource["id"])
    return found


@st.composite
def damaged_bundles(draw) -> tuple[dict, int, str | None]:
    """A Bundle broken in one known way: (bundle, the status it must get, a value not to echo)."""
    patient, bundle = draw(patient_bundles())
    bundle = copy.deepcopy(bundle)
    # Dropping the burden, or the grade and Ki-67, is no damage: the field is then unknown and
    # the prognosis integrates over it.
    kind = draw(st.sampled_from(("drop", "range", "unit", "date", "status", "type")))
    if kind == "drop":
        required = draw(st.sampled_from(("p", "net", "liver")))
        if required == "net":
            # Other Conditions may code a NET too (C7B.02, secondary carcinoid of the liver).
            return _without(bundle, *_net_coded(bundle)), 422, None
        return _without(bundle, required), 422, None
    burden = _resource(bundle, "burden")
    if burden is None:
        # An unknown burden is written as no Observation: damage the birth date instead.
        kind = "date"
    if kind == "range":
        value = draw(st.floats(min_value=100.0001, max_value=1e6) | st.floats(-1e6, -0.0001))
        burden["valueQuantity"]["value"] = value
        return bundle, 422, json.dumps(value)
    if kind == "unit":
        burden["valueQuantity"].update(unit="mL", code="mL")
        return bundle, 422, None
    if kind == "date":
        text = draw(canary_text)
        _resource(bundle, "p")["birthDate"] = text
        return bundle, 400, text
    if kind == "status":
        text = draw(canary_text)
        burden["status"] = text
        return bundle, 400, text
    text = draw(canary_text)
    burden["valueQuantity"]["value"] = text
    return bundle, 400, text


def _assert_outcome(response, value: str | None) -> None:
    from serving.schemas import OperationOutcome

    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = OperationOutcome.model_validate(response.json())
    assert all(issue.severity == "error" for issue in outcome.issue)
    if value is not None:
        assert value not in response.text


@pytest.mark.parametrize("budget", BUDGETS)
def test_a_damaged_fhir_bundle_gets_a_4xx_operation_outcome_and_never_a_5xx(api, budget):
    @examples(budget, 150)
    @given(damaged=damaged_bundles())
    def check(damaged):
        bundle, status, value = damaged

        response = api.post("/v1/fhir/prognosis", json=bundle)

        assert response.status_code == status, json.dumps(bundle)[:3000]
        _assert_outcome(response, value)

    check()


def _mutated(document: dict, draw) -> dict:
    """`document` with one element replaced by any JSON value.

    Half the time the element is an object or a list (the structure the handlers walk),
    else any element; the depth is drawn before the element, so that the few elements near
    the top are hit as often as the many deep ones.
    """
    document = copy.deepcopy(document)
    containers = draw(st.booleans())
    by_depth: dict[int, list[tuple]] = {}
    for path, value in _paths(document):
        if isinstance(value, dict | list) or not containers:
            by_depth.setdefault(len(path), []).append(path)
    depth = draw(st.sampled_from(sorted(by_depth)))
    path = draw(st.sampled_from(by_depth[depth]))
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = draw(json_values)
    return document


@st.composite
def mutated_bundles(draw) -> dict:
    """A valid Bundle with one element, anywhere, replaced by any JSON value."""
    _, bundle = draw(patient_bundles())
    return _mutated(bundle, draw)


def _paths(node, prefix=()) -> Iterator[tuple[tuple, object]]:
    """Every element under `node`: (its path of keys and indices, its value)."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, child in items:
        yield (*prefix, key), child
        if isinstance(child, dict | list):
            yield from _paths(child, (*prefix, key))


@pytest.mark.parametrize("budget", BUDGETS)
def test_a_bundle_with_any_element_replaced_by_any_json_is_never_a_5xx(api, budget):
    @examples(budget, 150)
    @given(bundle=mutated_bundles())
    def check(bundle):
        response = api.post("/v1/fhir/prognosis", json=bundle)

        assert response.status_code == 200 or 400 <= response.status_code < 500
        if response.status_code in (400, 422):
            _assert_outcome(response, None)

    check()


def test_the_schema_strategies_cover_every_patient_field_and_category():
    properties = PATIENT_SCHEMA["properties"]

    assert set(properties) == set(Patient.model_fields)
    # Neither the grade nor Ki-67 is required: a patient with neither has the grade imputed.
    assert set(PATIENT_SCHEMA["required"]) == {"age_years", "primary_site"}
    assert "anyOf" not in PATIENT_SCHEMA
    assert math.isclose(_not_null(properties["ki67_percent"])["maximum"], 100)
    assert _not_null(properties["primary_site"])["enum"] == list(PRIMARY_SITES)


# --- (e) CDS Hooks: a patient as prefetch gets a card; any damage is never a 5xx ---------------

PREFETCH_OF = {
    "Condition": "conditions",
    "Observation": "observations",
    "Procedure": "procedures",
    "ServiceRequest": "serviceRequests",
    "MedicationStatement": "medicationStatements",
}
FEEDBACK = json.loads(
    (ROOT / "data" / "examples" / "fhir" / "cds_feedback.json").read_text(encoding="utf-8")
)


def _searchset(resources: list[dict]) -> dict:
    entries = [
        {
            "fullUrl": f"urn:x:{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


@st.composite
def hook_requests(draw) -> tuple[str, dict]:
    """A patient's resources as a CDS Hooks request: (service id, request), patient-view, or
    order-select selecting the planned embolotherapy when there is one."""
    patient, bundle = draw(patient_bundles(today=None))
    resources = [e["resource"] for e in bundle["entry"]]
    order_select = patient.planned_modality is not None and draw(st.booleans())
    prefetch = {key: _searchset([]) for key in (*PREFETCH_OF.values(), "medicationRequests")}
    grouped: dict[str, list[dict]] = {}
    for resource in resources:
        if resource["resourceType"] == "Patient":
            prefetch["patient"] = resource
        elif not (order_select and resource["resourceType"] == "ServiceRequest"):
            grouped.setdefault(PREFETCH_OF[resource["resourceType"]], []).append(resource)
    prefetch.update({key: _searchset(found) for key, found in grouped.items()})
    context: dict = {"patientId": "p"}
    if order_select:
        plan = {**_resource(bundle, "plan"), "status": "draft"}
        context["selections"] = ["ServiceRequest/plan"]
        context["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": plan}],
        }
    request = {
        "hook": "order-select" if order_select else "patient-view",
        "hookInstance": "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
        "context": context,
        "prefetch": prefetch,
    }
    service = "net-embolotherapy-prognosis" + ("-order" if order_select else "")
    return service, request


@pytest.mark.parametrize("budget", BUDGETS)
def test_any_patient_sent_as_cds_hooks_prefetch_gets_one_prognosis_card(api, budget):
    from serving.cds_hooks import CdsCards

    @examples(budget, 80)
    @given(call=hook_requests())
    def check(call):
        service, request = call

        response = api.post(f"/cds-services/{service}", json=request)

        assert response.status_code == 200
        [card] = CdsCards.model_validate(response.json()).cards
        assert card.suggestions is not None, card.detail
        decisions = card.suggestions[: len(MODALITIES)]
        assert [s["label"][-4:].strip(" :") for s in decisions] == list(MODALITIES)
        assert "median OS" in card.summary

    check()


@pytest.mark.parametrize("budget", BUDGETS)
def test_a_cds_hooks_request_or_feedback_with_any_element_replaced_is_never_a_5xx(api, budget):
    from serving.cds_hooks import CdsCards
    from serving.schemas import ErrorResponse, OperationOutcome

    @examples(budget, 250)
    @given(call=hook_requests(), feedback=st.booleans(), data=st.data())
    def check(call, feedback, data):
        service, request = call
        if feedback:
            route, body = f"/cds-services/{service}/feedback", _mutated(FEEDBACK, data.draw)
        else:
            route, body = f"/cds-services/{service}", _mutated(request, data.draw)

        response = api.post(route, json=body)

        assert response.status_code < 500, response.text
        if response.status_code == 200 and not feedback:
            CdsCards.model_validate(response.json())
        elif response.status_code == 400:
            answer = response.json()
            model = OperationOutcome if "resourceType" in answer else ErrorResponse
            model.model_validate(answer)

    check()


DAMAGED_HOOK_REQUESTS = {
    "a prefetched Bundle's entry is not a list": (
        "net-embolotherapy-prognosis",
        {"prefetch": {"conditions": {"resourceType": "Bundle", "entry": 5}}},
    ),
    "a prefetched entry's fullUrl is not a string": (
        "net-embolotherapy-prognosis",
        {
            "prefetch": {
                "patient": {"resourceType": "Patient", "id": "p"},
                "conditions": {
                    "resourceType": "Bundle",
                    "entry": [{"fullUrl": [1], "resource": {"resourceType": "Condition"}}],
                },
            }
        },
    ),
    "the selections are not a list": (
        "net-embolotherapy-prognosis-order",
        {"context": {"selections": 5, "draftOrders": {"resourceType": "Bundle"}}},
    ),
    "the draft orders' entry is not a list": (
        "net-embolotherapy-prognosis-order",
        {"context": {"selections": ["x"], "draftOrders": {"resourceType": "Bundle", "entry": 5}}},
    ),
    "the prefetch is an empty list": ("net-embolotherapy-prognosis", {"prefetch": []}),
}
"""Requests that crashed the service (500) or were accepted before fuzzing found them."""


@pytest.mark.parametrize("name", sorted(DAMAGED_HOOK_REQUESTS))
def test_a_cds_hooks_request_of_the_wrong_shape_is_a_400_naming_where(api, name):
    service, damage = DAMAGED_HOOK_REQUESTS[name]
    hook = "order-select" if service.endswith("-order") else "patient-view"
    request = {"hook": hook, "hookInstance": "h-1", "context": {"patientId": "p"}, **damage}
    request["context"] = {"patientId": "p", **damage.get("context", {})}

    response = api.post(f"/cds-services/{service}", json=request)

    assert response.status_code == 400
    assert "prefetch" in response.text or "context" in response.text
