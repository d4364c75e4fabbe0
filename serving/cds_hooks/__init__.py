"""CDS Hooks 2.0: discovery, the NET embolotherapy prognosis service and its feedback.

The parts: `discovery` (services, hooks, prefetch), `requests` (the envelope and prefetch,
checked), `cards` (built from the audited prognosis itself, never re-parsed), `feedback`,
`models` (the bodies the OpenAPI document shows) and `routes`.

`GET /cds-services` lists two services: `net-embolotherapy-prognosis` for the `patient-view`
hook and `net-embolotherapy-prognosis-order` for `order-select`, whose draft embolization
order (its selected ServiceRequest) sets the planned modality. Each asks the EHR to prefetch
what `data/fhir_mapping.yaml` reads; what the prefetch lacks is fetched from the EHR's FHIR
server, or the call answered 412 (serving/prefetch_fetch.py).
The prefetched resources are validated and mapped by `serving.fhir`, and the answer is one
card: the median OS and HPFS (hepatic progression or death) for the planned modality in its
summary, the modality comparison, the cumulative incidence of hepatic progression (death as a
competing event) at 12 and 24 months, the warnings, the observational caveat and the
disclaimer in its detail, and a link to
the clinician form filled in with the patient. A request that lacks what the model needs is
answered with a card that says what is missing, never with an error.

Auth: with `NETPROG_CDS_CLIENTS_FILE`, every call needs the CDS Hooks 2.0 client JWT, verified
by serving/cds_auth.py; without it, when bearer tokens are configured
(`NETPROG_API_TOKEN_HASHES`), these routes need one, exactly as `/v1` does.

Feedback (`POST /cds-services/{id}/feedback`) is written to the audit log as a `feedback`
record keyed by the card's uuid, which is the prediction's id: the outcome, the modality the
clinician recorded (an accepted suggestion) and the coded override reason are kept in clear,
the free-text comment only as a keyed digest.
"""

from __future__ import annotations

from serving.cds_hooks.cards import SUMMARY_MAX, missing_card, prognosis_card, suggestion_uuid
from serving.cds_hooks.discovery import (
    FEEDBACK_OUTCOMES,
    HOOKS,
    LOCAL_SYSTEM,
    ORDER_SERVICE_ID,
    OVERRIDE_REASONS,
    PREFETCH_KEYS,
    ROUTE_DISCOVERY,
    SERVICE_ID,
    discovery,
    prefetch_templates,
)
from serving.cds_hooks.feedback import feedback_entries
from serving.cds_hooks.models import (
    CdsCards,
    CdsDiscovery,
    CdsFeedbackRequest,
    CdsHookRequest,
)
from serving.cds_hooks.requests import (
    CdsRequestError,
    HookRequest,
    parse_hook_request,
    prefetch_resources,
)
from serving.cds_hooks.routes import cds_app

__all__ = [
    "FEEDBACK_OUTCOMES",
    "HOOKS",
    "LOCAL_SYSTEM",
    "ORDER_SERVICE_ID",
    "OVERRIDE_REASONS",
    "PREFETCH_KEYS",
    "ROUTE_DISCOVERY",
    "SERVICE_ID",
    "SUMMARY_MAX",
    "CdsCards",
    "CdsDiscovery",
    "CdsFeedbackRequest",
    "CdsHookRequest",
    "CdsRequestError",
    "HookRequest",
    "cds_app",
    "discovery",
    "feedback_entries",
    "missing_card",
    "parse_hook_request",
    "prefetch_resources",
    "prefetch_templates",
    "prognosis_card",
    "suggestion_uuid",
]
