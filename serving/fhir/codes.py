"""The code table of `data/fhir_mapping.yaml`: which codings and texts supply each field."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAPPING_PATH",
    "CodeRule",
    "Concept",
    "ConceptMatch",
    "FhirMapping",
    "ObservationConcept",
    "codings",
    "default_mapping",
    "mapping_table",
    "status_code",
    "system_name",
    "texts",
]

MAPPING_PATH = Path(__file__).resolve().parents[2] / "data" / "fhir_mapping.yaml"


@dataclass(frozen=True)
class CodeRule:
    """One code of the table: a coding matches when its system and code agree."""

    system: str
    code: str
    display: str
    prefix: bool = False
    dotless: bool = False

    def matches(self, system: str | None, code: str | None) -> bool:
        if system != self.system or not code:
            return False
        wanted, given = self.code, code.strip()
        if self.dotless:
            wanted, given = wanted.replace(".", "").upper(), given.replace(".", "").upper()
        return given.startswith(wanted) if self.prefix else given == wanted

    def coding(self) -> dict:
        """The code as a FHIR Coding (for messages and docs)."""
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class ConceptMatch:
    """How a CodeableConcept matched a concept: by which coding, or by its text."""

    kind: str
    system: str | None = None
    code: str | None = None
    display: str | None = None

    def provenance(self) -> dict:
        if self.kind == "text":
            return {"match": "text"}
        return {"match": "code", "system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class Concept:
    """A concept of the table: the codes and text patterns that supply it."""

    name: str
    label: str
    codes: tuple[CodeRule, ...]
    text: tuple[re.Pattern, ...] = ()

    def match_code(self, concepts: Iterable[Any]) -> ConceptMatch | None:
        """The first coding of `concepts` (CodeableConcepts) that a code of the table matches."""
        for concept in concepts:
            for coding in codings(concept):
                for rule in self.codes:
                    if rule.matches(coding.system, coding.code):
                        return ConceptMatch("code", coding.system, coding.code, rule.display)
        return None

    def match_text(self, concepts: Iterable[Any]) -> ConceptMatch | None:
        """A match of the text patterns on the concepts' text or codings' display."""
        for concept in concepts:
            for text in texts(concept):
                if any(pattern.search(text) for pattern in self.text):
                    return ConceptMatch("text")
        return None

    def match(self, *concepts: Any) -> ConceptMatch | None:
        """A code match if any, else a text match, else None."""
        present = [c for c in concepts if c is not None]
        return self.match_code(present) or self.match_text(present)

    def codings(self) -> tuple[dict, ...]:
        return tuple(rule.coding() for rule in self.codes)


@dataclass(frozen=True)
class ObservationConcept(Concept):
    """An Observation concept, with its unit and (for the grade) the codes of its values."""

    unit: str | None = None
    values: Mapping[str, Concept] = field(default_factory=dict)


class FhirMapping:
    """The code table of `data/fhir_mapping.yaml`, compiled.

    Parameters
    ----------
    document : dict
        The parsed YAML document.
    """

    def __init__(self, document: Mapping[str, Any]):
        self.systems: dict[str, str] = dict(document["systems"])
        self.absent_booleans: str = str(document.get("absent_booleans", "assume_none"))
        if self.absent_booleans not in ("assume_none", "impute"):
            raise ValueError(
                "absent_booleans must be 'assume_none' or 'impute', but got "
                f"{self.absent_booleans!r}; fix data/fhir_mapping.yaml"
            )
        self.dotless = frozenset(self.systems[key] for key in document.get("dotless_systems", ()))
        self.conditions = {
            name: self._concept(name, spec) for name, spec in document["conditions"].items()
        }
        sites = document["primary_site"]
        self.site_body = {
            site: self._concept(site, {"codes": codes})
            for site, codes in sites["body_site"].items()
        }
        self.site_diagnosis = {
            site: self._concept(site, {"codes": codes})
            for site, codes in sites["diagnosis"].items()
        }
        self.site_text = {
            site: self._concept(site, {"text": patterns})
            for site, patterns in sites["text"].items()
        }
        self.observations = {
            name: self._observation(name, spec) for name, spec in document["observations"].items()
        }
        procedures = dict(document["procedures"])
        planned = procedures.pop("planned_modality")
        self.procedures = {name: self._concept(name, spec) for name, spec in procedures.items()}
        self.modalities = {
            name: self._concept(name, spec) for name, spec in planned["modalities"].items()
        }
        self.unspecified_embolization = self._concept("embolization", planned["unspecified"])
        self.medications = {
            name: self._concept(name, spec) for name, spec in document["medications"].items()
        }

    @classmethod
    def load(cls, path: Path = MAPPING_PATH) -> FhirMapping:
        """Read and compile a mapping file."""
        return cls(yaml.safe_load(Path(path).read_text(encoding="utf-8")))

    def _rule(self, spec: Mapping[str, Any]) -> CodeRule:
        system = self.systems[spec["system"]]
        return CodeRule(
            system=system,
            code=str(spec["code"]),
            display=str(spec["display"]),
            prefix=bool(spec.get("prefix", False)),
            dotless=system in self.dotless,
        )

    def _concept(self, name: str, spec: Mapping[str, Any]) -> Concept:
        rules = [self._rule(s) for s in spec.get("codes", ())]
        return Concept(
            name=name,
            label=str(spec.get("label", name)),
            # exact codes first, so that a coding is credited to its own row, not to a class
            codes=tuple(sorted(rules, key=lambda rule: rule.prefix)),
            text=tuple(re.compile(p, re.IGNORECASE) for p in spec.get("text", ())),
        )

    def _observation(self, name: str, spec: Mapping[str, Any]) -> ObservationConcept:
        base = self._concept(name, spec)
        value_text = spec.get("value_text", {})
        values = {
            value: self._concept(value, {"codes": codes, "text": value_text.get(value, ())})
            for value, codes in spec.get("values", {}).items()
        }
        return ObservationConcept(
            name=base.name,
            label=base.label,
            codes=base.codes,
            text=base.text,
            unit=spec.get("unit"),
            values=values,
        )

    def rows(self) -> list[dict]:
        """Every code of the table, one row each: what it supplies, from which resource."""
        rows: list[dict] = []

        def add(supplies: str, resource: str, concept: Concept) -> None:
            rows.extend(
                {"supplies": supplies, "resource": resource, **rule.coding(), "prefix": rule.prefix}
                for rule in concept.codes
            )

        for name, concept in self.conditions.items():
            add(name, "Condition.code", concept)
        for site, concept in self.site_body.items():
            add(f"primary_site = {site}", "Condition.bodySite", concept)
        for site, concept in self.site_diagnosis.items():
            add(f"primary_site = {site}", "Condition.code", concept)
        for name, concept in self.observations.items():
            add(name, "Observation.code", concept)
            for value, value_concept in concept.values.items():
                add(f"{name} = {value}", "Observation.valueCodeableConcept", value_concept)
        for name, concept in self.procedures.items():
            add(name, "Procedure.code", concept)
        for modality, concept in self.modalities.items():
            add(f"planned_modality = {modality}", "Procedure.code / ServiceRequest.code", concept)
        add(
            "planned embolization, modality unknown",
            "Procedure.code / ServiceRequest.code",
            self.unspecified_embolization,
        )
        for name, concept in self.medications.items():
            add(name, "MedicationStatement / MedicationRequest / Medication .code", concept)
        return rows


def mapping_table(mapping: FhirMapping | None = None) -> str:
    """The code table as the markdown table of docs/ehr-integration.md (a test compares them);
    a code ending in ``*`` matches every code that starts with it.

    Regenerate the documentation's table with
    ``python -c "from serving.fhir import mapping_table; print(mapping_table())"``.
    """
    rows = (mapping or default_mapping()).rows()
    lines = ["| supplies | FHIR element | system | code | display |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['supplies']} | {r['resource']} | {system_name(r['system'])} | "
        f"`{r['code']}{'*' if r['prefix'] else ''}` | "
        f"{r['display']} |"
        for r in rows
    ]
    return "\n".join(lines)


@functools.cache
def default_mapping() -> FhirMapping:
    """The mapping of `data/fhir_mapping.yaml`, read once."""
    return FhirMapping.load()


def codings(concept: Any) -> list:
    return [c for c in (getattr(concept, "coding", None) or []) if c is not None]


def texts(concept: Any) -> list[str]:
    texts = [getattr(concept, "text", None)]
    texts += [c.display for c in codings(concept)]
    return [t for t in texts if t]


def status_code(concept: Any) -> str | None:
    """The code of a status CodeableConcept's first coding, if any."""
    found = codings(concept)
    return found[0].code if found else None


def system_name(system: str) -> str:
    names = {
        "http://snomed.info/sct": "SNOMED CT",
        "http://loinc.org": "LOINC",
        "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
        "http://www.whocc.no/atc": "ATC",
        "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
        "http://www.ama-assn.org/go/cpt": "CPT",
    }
    return names.get(system, system)
