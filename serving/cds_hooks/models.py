"""The CDS Hooks HTTP bodies, as the OpenAPI document shows them.

The handlers check requests by hand (`parse_hook_request`, `feedback_entries`) so that no
message quotes a value; these models only document what those checks accept, with the same
patterns, and what the routes answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model

from serving.cds_hooks.cards import SUMMARY_MAX
from serving.cds_hooks.discovery import CARD_UUID, FHIR_ID, PREFETCH_KEYS

__all__ = [
    "CdsCard",
    "CdsCards",
    "CdsDiscovery",
    "CdsFeedbackEntry",
    "CdsFeedbackRequest",
    "CdsHookRequest",
    "CdsService",
]


class CdsService(BaseModel):
    """One CDS service of the discovery document."""

    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str]
    usageRequirements: str | None = None


class CdsDiscovery(BaseModel):
    """The CDS Hooks 2.0 discovery document."""

    services: list[CdsService]


class CdsCard(BaseModel):
    """A CDS Hooks 2.0 card: the prognosis, or what the request lacked."""

    model_config = ConfigDict(extra="allow")

    uuid: str
    summary: Annotated[str, Field(max_length=SUMMARY_MAX)]
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: dict[str, Any]
    suggestions: list[dict[str, Any]] | None = None
    selectionBehavior: str | None = None
    overrideReasons: list[dict[str, Any]] | None = None
    links: list[dict[str, Any]] | None = None


class CdsCards(BaseModel):
    """A CDS service's answer: one card, or none for an order that is not an embolization."""

    cards: Annotated[list[CdsCard], Field(max_length=1)]


class CdsPrefetchedResource(BaseModel):
    """A prefetched FHIR resource (validated as FHIR R4 when of a type the mapping reads)."""

    model_config = ConfigDict(extra="allow")

    resourceType: str


class CdsSearchEntry(BaseModel):
    """An entry of a prefetched search; `search.mode` outcome entries are passed over."""

    model_config = ConfigDict(extra="allow")

    fullUrl: str | None = None
    resource: CdsPrefetchedResource


class CdsSearchBundle(BaseModel):
    """A prefetched search, or the draft orders of order-select: a Bundle of entries."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["Bundle"]
    entry: list[CdsSearchEntry] | None = None


_Prefetched: Any = Annotated[
    CdsSearchBundle | CdsPrefetchedResource | None,
    Field(description="A resource or a search Bundle; absent or null: the EHR could not fetch it."),
]
_PREFETCH_FIELDS: dict[str, Any] = dict.fromkeys(PREFETCH_KEYS, (_Prefetched, None))
CdsPrefetch: Any = create_model(
    "CdsPrefetch",
    __config__=ConfigDict(extra="allow"),
    __doc__="The prefetched data, one member per prefetch key of the discovery document.",
    **_PREFETCH_FIELDS,
)
"""A model made from `PREFETCH_KEYS` (so the keys are written once): typed `Any`, as a type
checker cannot read fields made at run time."""


class CdsPatientViewContext(BaseModel):
    """The context of patient-view: the patient in view."""

    model_config = ConfigDict(extra="allow")

    patientId: Annotated[str, Field(pattern=FHIR_ID.pattern)]


class CdsOrderSelectContext(CdsPatientViewContext):
    """The context of order-select: the patient, the draft orders and those selected."""

    selections: Annotated[list[str], Field(min_length=1)]
    draftOrders: CdsSearchBundle


class CdsPatientViewRequest(BaseModel):
    """A patient-view request (service net-embolotherapy-prognosis)."""

    model_config = ConfigDict(extra="allow")

    hook: Literal["patient-view"]
    hookInstance: Annotated[str, Field(min_length=1)]
    context: CdsPatientViewContext
    prefetch: CdsPrefetch | None = None


class CdsOrderSelectRequest(CdsPatientViewRequest):
    """An order-select request (service net-embolotherapy-prognosis-order)."""

    hook: Literal["order-select"]  # type: ignore[assignment]
    context: CdsOrderSelectContext


class CdsHookRequest(RootModel):
    """A CDS Hooks 2.0 request; each service answers one hook, and a request for the other
    hook is refused (400)."""

    root: Annotated[CdsPatientViewRequest | CdsOrderSelectRequest, Field(discriminator="hook")]


class CdsFeedbackEntry(BaseModel):
    """Feedback on one card: accepted (with the suggestion taken) or overridden (why)."""

    model_config = ConfigDict(extra="allow")

    card: Annotated[str, Field(pattern=CARD_UUID.pattern)]
    outcome: Literal["accepted", "overridden"]
    outcomeTimestamp: str
    acceptedSuggestions: list[dict[str, Any]] | None = None
    overrideReason: dict[str, Any] | None = None


class CdsFeedbackRequest(BaseModel):
    """CDS Hooks 2.0 feedback: one entry per card acted on."""

    model_config = ConfigDict(extra="allow")

    feedback: Annotated[list[CdsFeedbackEntry], Field(min_length=1)]
