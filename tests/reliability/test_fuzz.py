"""Fuzzing the served API from its own OpenAPI document: no 5xx, every answer as documented.

Schemathesis reads `/docs.json` from `bentoml serve` (as deployed, with bearer auth) and sends
each route its documented examples, then requests generated from the document: valid ones
(positive) and, for every route that takes input, invalid ones (negative). Each answer is
checked against the document: a status the route documents, its media type and its body
schema, no 5xx, and invalid input refused with a 4xx. The default run sends more than 1,000
requests; the slow run (``make reliability``) five times as many. Generation is derandomized,
and Hypothesis keeps no database, so a run is the same every time and writes nothing to the
repository. The counts per route go to ``test-artifacts/reliability/``.
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.conftest import AUTH

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "reliability"
DOCUMENT = "/docs.json"
EXPECTED_OPERATIONS = {
    "GET /healthz",
    "GET /livez",
    "GET /readyz",
    "GET /metrics",
    "POST /v1/prognosis",
    "POST /v1/prognosis/batch",
    "GET /v1/model",
    "POST /v1/fhir/prognosis",
    "GET /cds-services",
    "POST /cds-services/{service_id}",
    "POST /cds-services/{service_id}/feedback",
}
"""Every route of the service; the document must list each (and no other)."""
DEFAULT_EXAMPLES, SLOW_EXAMPLES = 110, 550
"""Generated requests per route taking input and per mode (valid, invalid)."""
DEFAULT_MINIMUM, SLOW_MINIMUM = 1_000, 5_000
"""Requests each run must have sent, at the least."""
REQUEST_SECONDS = 60

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]

# Bodies generated from the large response-bearing schemas (batches of patients, FHIR
# bundles) are slow to build and often filtered; that is the point of fuzzing, not a flaw
# of the test, so Hypothesis's health checks about it are off.
FUZZ_SETTINGS = {
    "database": None,
    "derandomize": True,
    "deadline": None,
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
}


@dataclass
class FuzzReport:
    """What was sent where, what came back, and what did not conform."""

    requests: collections.Counter = field(default_factory=collections.Counter)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    nonconforming: collections.Counter = field(default_factory=collections.Counter)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.statuses.items() if status >= 500)

    def record(self, case, response, mode: str, checks) -> None:
        label = case.operation.label
        self.requests[label] += 1
        self.statuses[label, response.status_code] += 1
        try:
            case.validate_response(response, checks=checks, headers=AUTH)
        except FailureGroup as group:
            self.nonconforming[label] += 1
            for failure in group.exceptions:
                self.failures.setdefault((label, f"{mode}: {failure.title}"), str(group))

    def summary(self) -> dict:
        by_route: dict[str, dict] = {}
        for (label, status), count in sorted(self.statuses.items()):
            entry = by_route.setdefault(label, {"requests": self.requests[label], "statuses": {}})
            entry["statuses"][str(status)] = count
        return {
            "total_requests": self.total,
            "server_errors": self.server_errors,
            "nonconforming_responses": sum(self.nonconforming.values()),
            "failures": [f"{label} {title}" for label, title in sorted(self.failures)],
            "routes": by_route,
        }


def takes_input(operation) -> bool:
    """Whether anything of a request to `operation` can be made invalid."""
    return bool(len(operation.body) or operation.path_parameters or operation.query)


def fuzz(base: str, examples: int) -> FuzzReport:
    """Send every operation of the served document its examples and generated requests."""
    schema = schemathesis.openapi.from_url(
        base + DOCUMENT, config=schemathesis.Config(), timeout=REQUEST_SECONDS
    )
    report = FuzzReport()
    send = _sender(base, requests.Session(), report)
    for result in schema.get_all_operations():
        operation = result.ok()
        documented = schema.get_strategies_from_examples(operation)
        if documented:
            send(st.one_of(documented), "examples", CHECKS, len(documented))
        send(operation.as_strategy(GenerationMode.POSITIVE), "positive", CHECKS, examples)
        if takes_input(operation):
            negative = operation.as_strategy(GenerationMode.NEGATIVE)
            send(negative, "negative", NEGATIVE_CHECKS, examples)
    return report


def _sender(base: str, session: requests.Session, report: FuzzReport):
    def send(strategy, mode: str, checks, max_examples: int) -> None:
        @settings(max_examples=max_examples, **FUZZ_SETTINGS)
        @given(case=strategy)
        def run(case) -> None:
            response = case.call(
                base_url=base, session=session, headers=AUTH, timeout=REQUEST_SECONDS
            )
            report.record(case, response, mode, checks)

        run()

    return send


def run_and_check(serve, examples: int) -> FuzzReport:
    server = serve()
    started = time.perf_counter()
    report = fuzz(server.base, examples)
    seconds = time.perf_counter() - started
    summary = {"examples_per_mode": examples, "seconds": round(seconds, 1), **report.summary()}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"fuzz-{examples}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"\n{report.total} requests in {seconds:.0f} s, {report.server_errors} 5xx, "
        f"{sum(report.nonconforming.values())} not as documented; see {out}"
    )
    for label, route in summary["routes"].items():
        print(f"  {label}: {route['requests']} {route['statuses']}")
    return report


def assert_fuzzing_found_nothing(report: FuzzReport, minimum: int) -> None:
    assert set(report.requests) == EXPECTED_OPERATIONS
    assert report.total >= minimum
    assert report.server_errors == 0, report.summary()["routes"]
    assert sum(report.nonconforming.values()) == 0, "\n\n".join(
        f"{label} — {title}\n{detail}" for (label, title), detail in report.failures.items()
    )


def test_a_thousand_fuzzed_requests_reach_every_route_without_5xx_or_undocumented_answers(serve):
    report = run_and_check(serve, DEFAULT_EXAMPLES)

    assert_fuzzing_found_nothing(report, DEFAULT_MINIMUM)
    for label in EXPECTED_OPERATIONS:
        takes_body = label.startswith("POST")
        assert report.requests[label] >= (2 * DEFAULT_EXAMPLES if takes_body else 1)


@pytest.mark.slow
def test_five_thousand_generated_requests_find_no_5xx_and_no_undocumented_answer(serve):
    report = run_and_check(serve, SLOW_EXAMPLES)

    assert_fuzzing_found_nothing(report, SLOW_MINIMUM)
