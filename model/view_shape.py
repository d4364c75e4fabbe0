"""The shape of what a clinician and a patient can read: out of 100, plain words, harms,
patients like this one and contributions over time (keys of
`model.prognosis_shape.PrognosisShape`; typed dicts, as there, from which serving generates
its pydantic models)."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import Field

# pydantic reads typed dicts on Python < 3.12 only from typing_extensions' TypedDict.
from typing_extensions import TypedDict

__all__ = [
    "ContributionsOverTime",
    "OutOf100",
    "PlainLanguage",
    "ProcedureHarms",
    "SimilarPatients",
]

Modality = Literal["TACE", "TAE", "SIRT"]
People = Annotated[int, Field(ge=0, le=100)]


class PeopleAt(TypedDict):
    """Of 100 people like this patient at one month."""

    month: Literal[12, 24, 36]
    progression_free: Annotated[People, Field(description="Alive and free of hepatic progression.")]
    alive_after_progression: People
    died: People
    alive: People
    progression_free_range: Annotated[
        list[People], Field(description="95 % interval, whole people.")
    ]
    alive_range: list[People]
    text: str


class ModalityPeople(TypedDict):
    modality: Modality
    planned: bool
    at: list[PeopleAt]


class OutOf100(TypedDict):
    """Icon-array counts per modality at 1, 2 and 3 years; each row sums to 100."""

    horizons: list[int]
    note: str
    modalities: list[ModalityPeople]


class PatientWords(TypedDict):
    treatments: list[str]
    data_warning: str
    comparison_warning: str
    risks_note: str


class PlainLanguage(TypedDict):
    """A summary a clinician can read aloud, and the patient handout's words."""

    clinician: list[str]
    patient: PatientWords


class HarmItem(TypedDict):
    measure: str
    label: str
    plain_label: str
    unit: str
    value: float | None
    reported: bool
    text: Annotated[str, Field(description='The figure with its unit, or "not reported".')]
    note: str | None
    source: str | None


class ModalityHarms(TypedDict):
    modality: Modality
    reported: bool
    items: list[HarmItem]


class HarmSource(TypedDict):
    key: str
    short: str
    citation: str
    population: str


class ProcedureHarms(TypedDict):
    """The procedure's published harms per modality: population figures, not predictions."""

    scope: str
    modalities: list[ModalityHarms]
    sources: list[HarmSource]


class SurvivalPoint(TypedDict):
    month: int
    survival: Annotated[float, Field(ge=0, le=1)]


class AtRiskPoint(TypedDict):
    month: int
    at_risk: int


class SimilarCurve(TypedDict):
    shown: bool
    n_patients: int | None
    n_events: NotRequired[int | None]
    reason: NotRequired[str | None]
    curve: list[SurvivalPoint] | None
    numbers_at_risk: list[AtRiskPoint] | None


class SimilarPatients(TypedDict):
    """Kaplan-Meier curves of the most similar training patients, in aggregate only."""

    rule: str
    k: int
    minimum: int
    synthetic: bool
    note: str
    hpfs: SimilarCurve
    os: SimilarCurve
    imputed_note: NotRequired[
        Annotated[
            str,
            Field(
                description="Where fields were not recorded: this view is the most probable "
                "completion's, while the survival figures integrate over all."
            ),
        ]
    ]


class ContributionItem(TypedDict):
    field: str
    factor: str
    label: str
    contribution: Annotated[float, Field(description="Probability points / 100 (0.05 = 5 points).")]


class ContributionsAt(TypedDict):
    month: int
    value: float
    reference_value: float
    items: list[ContributionItem]


class CurveContributions(TypedDict):
    measure: str
    at: list[ContributionsAt]


class ContributionsOverTime(TypedDict):
    """Each field's contribution to each curve at 12, 24 and 36 months (on request)."""

    scale: str
    method: str
    reference_patient: dict[str, str | float | int | bool]
    reference: str
    horizons: list[int]
    hpfs: CurveContributions
    os: CurveContributions
    hepatic_progression: NotRequired[CurveContributions | None]
    imputed_note: NotRequired[
        Annotated[
            str,
            Field(
                description="Where fields were not recorded: this view is the most probable "
                "completion's, while the survival figures integrate over all."
            ),
        ]
    ]
