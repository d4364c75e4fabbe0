"""A CDS Hooks request read: its envelope checked, its prefetch and draft orders validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serving.cds_hooks.discovery import FHIR_ID, HOOKS, PREFETCH_KEYS
from serving.fhir import FhirIssue, FhirResource, FhirValidationError, validate_resources

__all__ = [
    "CdsRequestError",
    "HookRequest",
    "parse_hook_request",
    "prefetch_resources",
    "selected_orders",
]


class CdsRequestError(ValueError):
    """A CDS Hooks request or feedback that does not follow the specification (400)."""


@dataclass(frozen=True)
class HookRequest:
    """The parts of a CDS Hooks request the service reads."""

    service_id: str
    hook: str
    hook_instance: str
    patient_id: str
    prefetch: Mapping[str, Any]
    selections: tuple[str, ...] = ()
    draft_orders: Any = None


def parse_hook_request(service_id: str, body: object) -> HookRequest:
    """Check a CDS Hooks request's envelope (never quoting its values).

    Raises
    ------
    CdsRequestError
        The body is not a request for this service's hook, or lacks its context.
    """
    if not isinstance(body, dict):
        raise CdsRequestError("the body must be a CDS Hooks request (a JSON object)")
    hook = HOOKS[service_id]
    if body.get("hook") != hook:
        raise CdsRequestError(
            f"service {service_id} answers the {hook} hook: `hook` must be {hook!r}, but is "
            "another value"
        )
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance:
        raise CdsRequestError("`hookInstance` (a UUID string) is required")
    context = body.get("context")
    if not isinstance(context, dict):
        context = {}
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not FHIR_ID.match(patient_id):
        raise CdsRequestError("`context.patientId` (a FHIR id) is required")
    prefetch = body.get("prefetch")
    if prefetch is None:
        prefetch = {}
    elif not isinstance(prefetch, dict):
        raise CdsRequestError("`prefetch` must be an object of prefetch keys")
    selections, draft_orders = _order_context(context) if hook == "order-select" else ((), None)
    return HookRequest(service_id, hook, instance, patient_id, prefetch, selections, draft_orders)


def _order_context(context: Mapping[str, Any]) -> tuple[tuple[str, ...], dict]:
    """The selections and draft orders of an order-select context, checked."""
    chosen = context.get("selections")
    draft_orders = context.get("draftOrders")
    if not (isinstance(chosen, list) and chosen and all(isinstance(s, str) for s in chosen)):
        raise CdsRequestError(
            "order-select: `context.selections` (a list of references) is required"
        )
    if not isinstance(draft_orders, dict) or draft_orders.get("resourceType") != "Bundle":
        raise CdsRequestError("order-select: `context.draftOrders` (a Bundle) is required")
    return tuple(chosen), draft_orders


def prefetch_resources(request: HookRequest) -> tuple[list[FhirResource], list[str]]:
    """The prefetched resources, validated, and the prefetch keys the EHR did not send.

    A key that is absent or null is missing (CDS Hooks 2.0: the EHR could not fetch it).

    Raises
    ------
    FhirValidationError
        A prefetched resource is not valid FHIR R4, or the prefetched Patient is not the
        context's patient.
    """
    items, missing = [], []
    for key in PREFETCH_KEYS:
        value = request.prefetch.get(key)
        if value is None:
            missing.append(key)
            continue
        location = f"prefetch.{key}"
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            for where, entry in _bundle_entries(value, location):
                if _is_match(entry):
                    items.append((f"{where}.resource", entry["resource"], entry.get("fullUrl")))
        else:
            items.append((location, value, None))
    resources = validate_resources(items)
    patients = [r for r in resources if r.resource_type == "Patient"]
    if any(p.id != request.patient_id for p in patients):
        raise FhirValidationError(
            [
                FhirIssue(
                    "invalid",
                    "prefetch.patient must be the Patient of context.patientId, but is "
                    "another patient",
                    expression="prefetch.patient",
                )
            ]
        )
    return resources, missing


def _bundle_entries(bundle: Mapping[str, Any], location: str) -> list[tuple[str, dict]]:
    """The entries of a prefetched or draft-orders Bundle, each with where it is.

    Raises
    ------
    FhirValidationError
        `entry` is not a list, or an entry is not an object holding a `resource` object (and
        a string `fullUrl`, if it has one).
    """
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        where = f"{location}.entry"
        issue = FhirIssue("structure", f"{where} must be a list", expression=where)
        raise FhirValidationError([issue])
    found, issues = [], []
    for index, entry in enumerate(entries):
        where = f"{location}.entry[{index}]"
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("resource"), dict)
            and (entry.get("fullUrl") is None or isinstance(entry["fullUrl"], str))
        ):
            found.append((where, entry))
        else:
            issues.append(
                FhirIssue(
                    "structure",
                    f"{where} must be an object with a resource (and a fullUrl string, if any)",
                    expression=where,
                )
            )
    if issues:
        raise FhirValidationError(issues)
    return found


def _is_match(entry: Mapping[str, Any]) -> bool:
    """Whether a searchset entry is a result (not an OperationOutcome of the search)."""
    search = entry.get("search")
    return not isinstance(search, dict) or search.get("mode") in (None, "match", "include")


def selected_orders(request: HookRequest) -> list[FhirResource]:
    """The selected draft orders of an order-select request, validated."""
    wanted = set(request.selections)
    items = []
    for where, entry in _bundle_entries(request.draft_orders, "context.draftOrders"):
        resource = entry["resource"]
        reference = f"{resource.get('resourceType')}/{resource.get('id')}"
        if reference in wanted or entry.get("fullUrl") in wanted:
            items.append((f"{where}.resource", resource, None))
    return validate_resources(items)
