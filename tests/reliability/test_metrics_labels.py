"""`/metrics` of `bentoml serve` labels requests by route template, never by the path sent.

BentoML labelled each request by its raw path: 1,000 distinct paths made 1,000 label values
(memory in every worker, a `/metrics` that grows with each) and published whatever a path
carried, identifiers included, on the open `/metrics`.
"""

from __future__ import annotations

import asyncio
import re
import secrets

import httpx

from serving.middleware import UNROUTED
from serving.service import ROUTE_TEMPLATES
from tests.reliability import report
from tests.reliability.conftest import AUTH

N_PATHS = 1000


def random_paths(n: int) -> list[str]:
    """Paths under every prefix the service routes, and elsewhere, each made unique."""
    prefixes = ["/v1/", "/v1/prognosis/", "/cds-services/", "/cds-services/x/", "/", "/web/"]
    return [f"{prefixes[i % len(prefixes)]}MRN-{secrets.token_hex(6)}" for i in range(n)]


async def _send(base: str, paths: list[str]) -> list[int]:
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=60) as client:
        semaphore = asyncio.Semaphore(8)

        async def one(path: str) -> int:
            async with semaphore:
                return (await client.get(path)).status_code

        return await asyncio.gather(*(one(path) for path in paths))


def test_a_thousand_distinct_paths_leave_only_route_templates_as_metric_labels(serve):
    server = serve(workers=2)
    paths = random_paths(N_PATHS)

    statuses = asyncio.run(_send(server.base, paths))
    httpx.post(f"{server.base}/v1/prognosis", json={}, headers=AUTH, timeout=60)
    metrics = httpx.get(f"{server.base}/metrics", timeout=60).text

    endpoints = set(re.findall(r'endpoint="([^"]*)"', metrics))
    print(f"\n{N_PATHS} distinct paths (statuses {sorted(set(statuses))}); labels: {endpoints}")
    report.write_figures(
        "metrics-labels",
        {
            "distinct random paths sent": f"{N_PATHS:,} (statuses {sorted(set(statuses))})",
            "`endpoint` label values on `/metrics`": len(endpoints),
            "route templates (+ `<unrouted>`)": len(ROUTE_TEMPLATES) + 1,
            "labels that are not a route template": len(endpoints - {*ROUTE_TEMPLATES, UNROUTED}),
            "a sent path's `MRN-` id on `/metrics`": "MRN-" in metrics,
        },
    )
    assert set(statuses) <= {401, 404, 405}
    assert endpoints <= {*ROUTE_TEMPLATES, UNROUTED}
    assert UNROUTED in endpoints
    assert "/v1/prognosis" in endpoints
    assert len(endpoints) <= len(ROUTE_TEMPLATES) + 1
    assert "MRN-" not in metrics
    requests = sum(
        float(value)
        for value in re.findall(
            rf'request_total{{[^}}]*endpoint="{re.escape(UNROUTED)}"[^}}]*}} (\S+)', metrics
        )
    )
    assert requests >= N_PATHS * 4 / 6, "the unrouted paths are counted, under one label"
