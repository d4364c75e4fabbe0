"""Conflict rules for real-world FHIR records, applied around the mapping (serving/fhir/).

A whole record exported from an EHR holds what a curated Bundle does not: two cancer
diagnoses, a grade and a Ki-67 index from several dates, a chemotherapy course from years
ago. The rules, in the order they run (data: `data/record_rules.yaml`; prose:
docs/ehr-integration.md):

1. **Another cancer** (a Condition coding a malignancy that is not the neuroendocrine tumour
   nor a metastasis) is set aside and named in a warning: the primary site is never read from
   it.
2. **Several NET diagnoses**: NET-specific codes before a free-text match, then the most
   recent on or before the reference date (`recordedDate`, else the onset), then the undated;
   the first is used, the others set aside.
3. **Grade, Ki-67 and tumour burden dated after the reference date** are set aside (they do
   not describe the patient before the treatment); of those left the mapping takes the most
   recent, and `observation_notes` names the older ones as set aside.
4. **Systemic therapy** whose last known date is more than `therapy_look_back_days` before
   the reference date is set aside (not "before or with" the embolotherapy); undated
   therapy records are kept.

The reference date is the planned embolotherapy's date, else the request date, as for the
age. Each rule applied adds one warning (code `record_conflict`) and one `set_aside` entry
per resource it set aside. Warnings quote resource ids and dates from the caller's own
record, never values, and are never logged.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from serving.fhir.codes import FhirMapping, default_mapping
from serving.fhir.parsing import FhirResource
from serving.fhir.plans import plans_embolization

__all__ = [
    "RULES_PATH",
    "RecordRules",
    "RuleOutcome",
    "apply_record_rules",
    "default_rules",
    "observation_notes",
    "reference_date",
]

RULES_PATH = Path(__file__).resolve().parents[1] / "data" / "record_rules.yaml"
WARNING_CODE = "record_conflict"
_OBSERVATION_STATUSES = ("final", "amended", "corrected")
_NOT_DIAGNOSES = ("refuted", "entered-in-error")
_THERAPY_TYPES = ("MedicationStatement", "MedicationRequest")
_ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


@dataclass(frozen=True)
class RecordRules:
    """The rules' data (`data/record_rules.yaml`), compiled."""

    look_back_days: int
    cancer_prefixes: tuple[str, ...]
    cancer_excluded: tuple[str, ...]
    cancer_text: tuple[re.Pattern, ...]
    cancer_text_excluded: tuple[re.Pattern, ...]

    @classmethod
    def load(cls, path: Path = RULES_PATH) -> RecordRules:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        cancers = document["other_cancers"]
        return cls(
            look_back_days=int(document["therapy_look_back_days"]),
            cancer_prefixes=tuple(cancers["icd10cm_prefixes"]),
            cancer_excluded=tuple(cancers["icd10cm_excluded_prefixes"]),
            cancer_text=tuple(re.compile(p, re.IGNORECASE) for p in cancers["text"]),
            cancer_text_excluded=tuple(
                re.compile(p, re.IGNORECASE) for p in cancers["text_excluded"]
            ),
        )

    def is_other_cancer(self, code: Any) -> bool:
        """Whether a CodeableConcept codes a malignancy (not a metastasis, not the NET)."""
        for coding in getattr(code, "coding", None) or []:
            if coding.system == _ICD10CM and coding.code:
                given = coding.code.replace(".", "").upper()
                if given.startswith(self.cancer_prefixes):
                    return not given.startswith(self.cancer_excluded)
        texts = [getattr(code, "text", None)]
        texts += [c.display for c in getattr(code, "coding", None) or []]
        texts = [t for t in texts if t]
        return any(p.search(t) for p in self.cancer_text for t in texts) and not any(
            p.search(t) for p in self.cancer_text_excluded for t in texts
        )


@functools.cache
def default_rules() -> RecordRules:
    """The rules of `data/record_rules.yaml`."""
    return RecordRules.load()


@dataclass
class RuleOutcome:
    """The resources the mapping should read, and what the rules set aside and why."""

    resources: list[FhirResource]
    reference_date: date
    set_aside: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)

    def put_aside(
        self, resources: Sequence[FhirResource], rule: str, reason: str, warning: str
    ) -> None:
        """Set `resources` aside under `rule`, each with `reason`, and warn once."""
        labels = {r.label for r in resources}
        self.resources = [r for r in self.resources if r.label not in labels]
        self.set_aside += [{"resource": r.label, "rule": rule, "reason": reason} for r in resources]
        self.warnings.append(_warning(warning))


def apply_record_rules(
    resources: Sequence[FhirResource],
    *,
    mapping: FhirMapping | None = None,
    rules: RecordRules | None = None,
    today: date | None = None,
    planned: Sequence[FhirResource] | None = None,
) -> RuleOutcome:
    """Apply rules 1, 2, 4 and the first half of 3 (see the module docstring)."""
    mapping, rules = mapping or default_mapping(), rules or default_rules()
    reference = reference_date(resources, mapping, today, planned)
    outcome = RuleOutcome(list(resources), reference)
    _other_cancers(outcome, mapping, rules)
    _net_diagnoses(outcome, mapping)
    _observations_after(outcome, mapping)
    _old_therapies(outcome, mapping, rules)
    return outcome


def reference_date(
    resources: Sequence[FhirResource],
    mapping: FhirMapping,
    today: date | None = None,
    planned: Sequence[FhirResource] | None = None,
) -> date:
    """The earliest date of a planned embolotherapy, else `today` (default: today, UTC)."""
    candidates = planned if planned is not None else resources
    dates = [
        when
        for r in candidates
        if r.resource_type in ("Procedure", "ServiceRequest")
        and plans_embolization([r], mapping)
        and (when := _planned_date(r.model)) is not None
    ]
    return min(dates) if dates else (today or datetime.now(UTC).date())


def _of_type(outcome: RuleOutcome, *kinds: str) -> list[FhirResource]:
    return [r for r in outcome.resources if r.resource_type in kinds]


def _other_cancers(outcome: RuleOutcome, mapping: FhirMapping, rules: RecordRules) -> None:
    read = [*mapping.conditions.values(), *mapping.site_diagnosis.values()]
    others = [
        c
        for c in _of_type(outcome, "Condition")
        if _is_diagnosis(c)
        and rules.is_other_cancer(c.model.code)
        and not any(concept.match(c.model.code) for concept in read)
    ]
    if not others:
        return
    reason = "a cancer other than the neuroendocrine tumour: not read for the primary site"
    outcome.put_aside(
        others,
        "other-cancer",
        reason,
        f"The record holds {len(others)} diagnosis(es) of another cancer "
        f"({_labels(others)}); set aside: the primary site and the model's population "
        "come from the neuroendocrine tumour diagnosis only.",
    )


def _net_diagnoses(outcome: RuleOutcome, mapping: FhirMapping) -> None:
    concept = mapping.conditions["net_diagnosis"]
    metastases = [
        mapping.conditions["liver_metastases"],
        mapping.conditions["extrahepatic_metastases"],
    ]
    found = [
        (c, match)
        for c in _of_type(outcome, "Condition")
        if _is_diagnosis(c)
        and (match := concept.match(c.model.code)) is not None
        and not any(m.match(c.model.code) for m in metastases)
    ]
    if len(found) < 2:
        return

    def rank(item: tuple[FhirResource, Any]) -> tuple:
        condition, match = item
        when = _condition_date(condition.model)
        usable = when is not None and when <= outcome.reference_date
        return (match.kind == "code", usable, when if usable else date.min)

    ordered = sorted(found, key=rank, reverse=True)
    used, rest = ordered[0][0], [c for c, _ in ordered[1:]]
    outcome.put_aside(
        rest,
        "net-diagnosis",
        f"another NET diagnosis; {used.label} was used",
        f"The record holds {len(found)} neuroendocrine tumour diagnoses: {used.label} was "
        "used (NET-specific code first, then the most recent on or before the reference "
        f"date {outcome.reference_date.isoformat()}); set aside: {_labels(rest)}.",
    )


def _observations_after(outcome: RuleOutcome, mapping: FhirMapping) -> None:
    for name, concept in mapping.observations.items():
        late = [
            o
            for o in _of_type(outcome, "Observation")
            if concept.match(o.model.code) is not None
            and (when := _observation_date(o.model)) is not None
            and when > outcome.reference_date
        ]
        if late:
            reason = f"{name} dated after the reference date"
            outcome.put_aside(
                late,
                "after-reference-date",
                reason,
                f"{name}: {_labels(late)} dated after the reference date "
                f"{outcome.reference_date.isoformat()} (the planned treatment) set aside.",
            )


def _old_therapies(outcome: RuleOutcome, mapping: FhirMapping, rules: RecordRules) -> None:
    for name, concept in mapping.medications.items():
        old = []
        for therapy in _of_type(outcome, *_THERAPY_TYPES):
            code = getattr(therapy.model, "medicationCodeableConcept", None)
            if code is None or concept.match(code) is None:
                continue
            last = _therapy_date(therapy)
            if last is not None and (outcome.reference_date - last).days > rules.look_back_days:
                old.append(therapy)
        if old:
            reason = f"{name} more than {rules.look_back_days} days before the reference date"
            outcome.put_aside(
                old,
                "look-back",
                reason,
                f"{name}: {_labels(old)} ended more than {rules.look_back_days} days before "
                f"the reference date {outcome.reference_date.isoformat()}; set aside as past "
                "treatment, not therapy before or with the embolotherapy.",
            )


def observation_notes(
    resources: Iterable[FhirResource],
    provenance: Mapping[str, Mapping[str, Any]],
    mapping: FhirMapping | None = None,
) -> RuleOutcome:
    """The second half of rule 3, after mapping: for each observation field, the older values
    of the same concept that the mapping did not use (it takes the most recent)."""
    mapping = mapping or default_mapping()
    resources = list(resources)
    notes = RuleOutcome([], date.min)
    for name, concept in mapping.observations.items():
        used = provenance.get(name, {})
        if used.get("resourceType") != "Observation":
            continue
        used_label = f"Observation/{used.get('id')}"
        older = [
            o
            for o in resources
            if o.resource_type == "Observation"
            and o.model.status in _OBSERVATION_STATUSES
            and concept.match(o.model.code) is not None
            and o.label != used_label
        ]
        if older:
            notes.set_aside += [
                {"resource": o.label, "rule": "most-recent", "reason": f"older {name}"}
                for o in older
            ]
            notes.warnings.append(
                _warning(
                    f"{name}: {len(older) + 1} values in the record; {used_label} (the most "
                    f"recent on or before the reference date) was used, {_labels(older)} set "
                    "aside."
                )
            )
    return notes


def _warning(message: str) -> dict:
    return {"code": WARNING_CODE, "message": message}


def _labels(resources: Sequence[FhirResource]) -> str:
    return ", ".join(r.label for r in resources)


def _is_diagnosis(condition: FhirResource) -> bool:
    status = condition.model.verificationStatus
    codes = [c.code for c in (getattr(status, "coding", None) or [])]
    return not any(code in _NOT_DIAGNOSES for code in codes)


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}(-\d{2})?", value):
        year, _, month = value.partition("-")
        return date(int(year), int(month or 1), 1)
    return None


def _start(period: Any) -> date | None:
    return _as_date(getattr(period, "start", None))


def _planned_date(model: Any) -> date | None:
    for name in ("performedDateTime", "occurrenceDateTime"):
        if (when := _as_date(getattr(model, name, None))) is not None:
            return when
    return _start(getattr(model, "performedPeriod", None)) or _start(
        getattr(model, "occurrencePeriod", None)
    )


def _condition_date(model: Any) -> date | None:
    return (
        _as_date(model.recordedDate) or _as_date(model.onsetDateTime) or _start(model.onsetPeriod)
    )


def _observation_date(model: Any) -> date | None:
    return (
        _as_date(model.effectiveDateTime) or _start(model.effectivePeriod) or _as_date(model.issued)
    )


def _therapy_date(therapy: FhirResource) -> date | None:
    """The last date a therapy record gives (its end, else its start or when it was written)."""
    model = therapy.model
    if therapy.resource_type == "MedicationStatement":
        period = model.effectivePeriod
        found = [
            _as_date(getattr(period, "end", None)),
            _start(period),
            _as_date(model.effectiveDateTime),
            _as_date(model.dateAsserted),
        ]
    else:
        validity = getattr(model.dispenseRequest, "validityPeriod", None)
        found = [_as_date(getattr(validity, "end", None)), _as_date(model.authoredOn)]
    dated = [d for d in found if d is not None]
    return max(dated) if dated else None
