"""Response models of what a clinician and a patient can read: out of 100, plain words, harms,
patients like this one and contributions over time (fields of `serving.schemas.Prognosis`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ContributionsOverTime",
    "OutOf100",
    "PlainLanguage",
    "ProcedureHarms",
    "SimilarPatients",
]

Modality = Literal["TACE", "TAE", "SIRT"]
People = Annotated[int, Field(ge=0, le=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PeopleAt(_Strict):
    """Of 100 people like this patient at one month."""

    month: Literal[12, 24, 36]
    progression_free: People = Field(description="Alive and free of hepatic progression.")
    alive_after_progression: People
    died: People
    alive: People
    progression_free_range: list[People] = Field(description="95 % interval, whole people.")
    alive_range: list[People]
    text: str


class ModalityPeople(_Strict):
    modality: Modality
    planned: bool
    at: list[PeopleAt]


class OutOf100(_Strict):
    """Icon-array counts per modality at 1, 2 and 3 years; each row sums to 100."""

    horizons: list[int]
    note: str
    modalities: list[ModalityPeople]


class PatientWords(_Strict):
    treatments: list[str]
    data_warning: str
    comparison_warning: str
    risks_note: str


class PlainLanguage(_Strict):
    """A summary a clinician can read aloud, and the patient handout's words."""

    clinician: list[str]
    patient: PatientWords


class HarmItem(_Strict):
    measure: str
    label: str
    plain_label: str
    unit: str
    value: float | None
    reported: bool
    text: str = Field(description='The figure with its unit, or "not reported".')
    note: str | None
    source: str | None


class ModalityHarms(_Strict):
    modality: Modality
    reported: bool
    items: list[HarmItem]


class HarmSource(_Strict):
    key: str
    short: str
    citation: str
    population: str


class ProcedureHarms(_Strict):
    """The procedure's published harms per modality: population figures, not predictions."""

    scope: str
    modalities: list[ModalityHarms]
    sources: list[HarmSource]


class SurvivalPoint(_Strict):
    month: int
    survival: Annotated[float, Field(ge=0, le=1)]


class AtRiskPoint(_Strict):
    month: int
    at_risk: int


class SimilarCurve(_Strict):
    shown: bool
    n_patients: int | None
    n_events: int | None = None
    reason: str | None = None
    curve: list[SurvivalPoint] | None
    numbers_at_risk: list[AtRiskPoint] | None


class SimilarPatients(_Strict):
    """Kaplan-Meier curves of the most similar training patients, in aggregate only."""

    rule: str
    k: int
    minimum: int
    synthetic: bool
    note: str
    hpfs: SimilarCurve
    os: SimilarCurve


class ContributionItem(_Strict):
    field: str
    factor: str
    label: str
    contribution: float = Field(description="Probability points / 100 (0.05 = 5 points).")


class ContributionsAt(_Strict):
    month: int
    value: float
    reference_value: float
    items: list[ContributionItem]


class CurveContributions(_Strict):
    measure: str
    at: list[ContributionsAt]


class ContributionsOverTime(_Strict):
    """Each field's contribution to each curve at 12, 24 and 36 months (on request)."""

    scale: str
    method: str
    reference_patient: dict[str, str | float | int | bool]
    reference: str
    horizons: list[int]
    hpfs: CurveContributions
    os: CurveContributions
    hepatic_progression: CurveContributions | None = None
