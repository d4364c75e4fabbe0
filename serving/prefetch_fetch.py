"""CDS Hooks 2.0 "fetch or 412": what the prefetch lacks, fetched from the EHR's FHIR server.

The specification (CDS Hooks 2.0, "Prefetch"): a CDS service that does not get the prefetch
it declared may fetch it from `fhirServer` with the access token in `fhirAuthorization`;
when it cannot, it answers HTTP 412. Here:

- the searches are exactly the discovery document's prefetch templates of the missing keys,
  with `{{context.patientId}}` filled in (a FHIR id, checked before), nothing else; a search
  Bundle's `next` pages are followed on the same origin, at most `MAX_PAGES`;
- `fhirServer` must be one of the FHIR servers allow-listed for the issuer of the verified
  client JWT (serving/cds_auth.py); without a verified client nothing is fetched;
- each GET has a time limit and the bytes read in all are capped (serving/bounded_http.py),
  and no redirect leaves the server's origin;
- a request whose prefetch lacks what no prognosis can do without (`NEEDED_KEYS`) and that
  cannot be fetched raises `PrefetchUnavailable` (the route answers 412 with an
  OperationOutcome); a request lacking only optional keys keeps being answered, its card
  saying what was assumed.

Neither the server's URL, the token nor anything fetched is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from serving.bounded_http import FetchError, FetchLimits, fetch_json_sized, origin_of

__all__ = [
    "MAX_PAGES",
    "NEEDED_KEYS",
    "FetchPlan",
    "PrefetchUnavailable",
    "complete_prefetch",
    "missing_keys",
    "plan_for",
    "precondition_outcome",
]

logger = logging.getLogger(__name__)

MAX_PAGES = 10
"""Most pages read of one search (its `next` links)."""
NEEDED_KEYS = ("patient", "conditions", "observations")
"""Prefetch keys without which no patient can be mapped; the others only fill defaults."""
PATIENT_PLACEHOLDER = "{{context.patientId}}"


class PrefetchUnavailable(Exception):
    """The prefetch lacks what the service needs and it could not be fetched (412).

    `reason` is a short kind for the log; `message` says what the EHR can do, without values.
    """

    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message
        super().__init__(reason)


@dataclass(frozen=True)
class FetchPlan:
    """What a fetch may use: the allow-listed servers and the bounds."""

    allowed_servers: tuple[str, ...]
    limits: FetchLimits = FetchLimits(10.0, 10 * 1024 * 1024)
    total_timeout_s: float = 20.0


def missing_keys(prefetch: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """The prefetch keys absent or null (CDS Hooks 2.0: the EHR could not fetch them)."""
    return [key for key in keys if prefetch.get(key) is None]


def precondition_outcome(error: PrefetchUnavailable) -> dict:
    """The 412 answer's OperationOutcome."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "incomplete", "diagnostics": error.message}],
    }


def complete_prefetch(
    prefetch: Mapping[str, Any],
    *,
    templates: Mapping[str, str],
    patient_id: str,
    body: Mapping[str, Any],
    plan: FetchPlan | None,
    get: Callable[..., tuple[object, int]] = fetch_json_sized,
) -> dict[str, Any]:
    """The prefetch with its missing keys fetched, or as it is when nothing needed is missing
    and no FHIR server is offered.

    Parameters
    ----------
    prefetch : mapping
        The request's prefetch (key -> resource or Bundle, absent or None when missing).
    templates : mapping
        The discovery document's prefetch templates, by key.
    patient_id : str
        `context.patientId`, already checked to be a FHIR id.
    body : mapping
        The request, for its `fhirServer` and `fhirAuthorization`.
    plan : FetchPlan, optional
        The verified client's allow-listed servers; None: no verified client, no fetching.

    Raises
    ------
    PrefetchUnavailable
        A needed key is missing and cannot be fetched, or a fetch failed.
    """
    missing = missing_keys(prefetch, list(templates))
    if not missing:
        return dict(prefetch)
    server, token = _server_and_token(body)
    needed = [key for key in missing if key in NEEDED_KEYS]
    if server is None or token is None:
        if needed:
            raise PrefetchUnavailable("no-fhir-server", _lacks(needed, _NO_SERVER))
        return dict(prefetch)
    if plan is None or server.rstrip("/") not in plan.allowed_servers:
        raise PrefetchUnavailable("server-not-allowed", _lacks(missing, _NOT_ALLOWED))
    completed = dict(prefetch)
    deadline = time.monotonic() + plan.total_timeout_s
    budget = _Budget(plan.limits.max_bytes)
    for key in missing:
        query = templates[key].replace(PATIENT_PLACEHOLDER, patient_id)
        url = f"{server.rstrip('/')}/{query}"
        completed[key] = _fetch_all_pages(url, token, plan, deadline, budget, get)
    logger.info("CDS Hooks: fetched %d missing prefetch key(s) from the FHIR server", len(missing))
    return completed


_NO_SERVER = (
    "the request carries no fhirServer and fhirAuthorization (access token) to fetch them "
    "with; send the prefetch the discovery document declares, or both"
)
_NOT_ALLOWED = (
    "fhirServer is not a FHIR server this service may fetch from for the calling EHR; add it "
    "to the issuer's fhir_servers (docs/ehr-integration.md) or send the prefetch"
)


def _lacks(keys: Sequence[str], remedy: str) -> str:
    return f"the prefetch lacks {', '.join(keys)}, which the prognosis needs: {remedy}"


def _server_and_token(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    server = body.get("fhirServer")
    authorization = body.get("fhirAuthorization")
    token = authorization.get("access_token") if isinstance(authorization, dict) else None
    if not isinstance(server, str) or not server:
        server = None
    if not isinstance(token, str) or not token or any(c.isspace() for c in token):
        token = None
    return server, token


class _Budget:
    """Bytes left to read over every GET of one request."""

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes


def _fetch_all_pages(url, token, plan: FetchPlan, deadline, budget: _Budget, get) -> object:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    origin = origin_of(url)
    first, entries = None, []
    for _ in range(MAX_PAGES):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or budget.left <= 0:
            raise PrefetchUnavailable("fetch-bounds", _FETCH_FAILED)
        limits = FetchLimits(min(plan.limits.timeout_s, remaining), budget.left)
        try:
            page, size = get(url, headers=headers, limits=limits)
        except FetchError as error:
            logger.info("CDS Hooks: a prefetch fetch failed (%s)", error.reason)
            raise PrefetchUnavailable(error.reason, _FETCH_FAILED) from None
        budget.left -= size
        if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
            return page
        first = first or page
        if isinstance(page.get("entry"), list):
            entries += page["entry"]
        url = _next_link(page)
        if url is None or origin_of(url) != origin:
            return {**first, "entry": entries}
    raise PrefetchUnavailable("too-many-pages", _FETCH_FAILED)


_FETCH_FAILED = (
    "the prefetch lacks data the prognosis needs, and fetching it from fhirServer failed "
    "(refused, too slow or too large); send the prefetch the discovery document declares"
)


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) else None
    return None


def plan_for(client: Any) -> FetchPlan | None:
    """The fetch plan of a verified CDS client (`serving.cds_auth.VerifiedClient`), or None."""
    servers = getattr(client, "fhir_servers", None)
    return None if servers is None else FetchPlan(tuple(servers))
