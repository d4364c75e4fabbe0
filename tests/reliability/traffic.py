"""Steady background traffic for the fault suite: requests at a constant rate on a thread, each
one recorded (when it was due, when it ended, its status, the model that answered, the error).

Open loop, as in test_load.py: request *i* is due at ``start + i / rate`` whatever happened to
the earlier ones, so a stalled or restarting server shows up as late or failed requests, not
as a slower generator. Times are `time.monotonic()` seconds, comparable with the test's own.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
import numpy as np

from tests.reliability.conftest import AUTH

ROUTE = "/v1/prognosis"


@dataclass(frozen=True)
class Sent:
    """One request: when it was due and ended, its status (0: no answer), the answering
    model's tag, its prediction id and, without an answer, the client's exception."""

    due: float
    ended: float
    status: int
    tag: str | None = None
    prediction_id: str | None = None
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return 1000 * (self.ended - self.due)


class SteadyTraffic:
    """``with SteadyTraffic(base, rate, bodies) as traffic:`` sends until the block ends."""

    def __init__(self, base: str, rate: float, bodies: list[dict], *, timeout: float = 30):
        self.base, self.rate, self.bodies, self.timeout = base, rate, bodies, timeout
        self.sent: list[Sent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-traffic", daemon=True)
        self.started = self.stopped = 0.0

    def __enter__(self) -> SteadyTraffic:
        self._thread.start()
        while not self.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 30)

    def _run(self) -> None:
        asyncio.run(self._send_all())

    async def _send_all(self) -> None:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=self.base, headers=AUTH, timeout=self.timeout, limits=limits
        ) as client:
            loop = asyncio.get_running_loop()
            self.started = start = loop.time()
            tasks, i = [], 0
            while not self._stop.is_set():
                due = start + i / self.rate
                if (delay := due - loop.time()) > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(self._one(client, i, due)))
                i += 1
            self.stopped = loop.time()
            await asyncio.gather(*tasks)

    async def _one(self, client: httpx.AsyncClient, i: int, due: float) -> None:
        try:
            response = await client.post(ROUTE, json=self.bodies[i % len(self.bodies)])
        except httpx.HTTPError as error:
            self.sent.append(Sent(due, time.monotonic(), 0, error=type(error).__name__))
            return
        tag = prediction_id = None
        if response.status_code == 200:
            answer = response.json()
            tag, prediction_id = answer["model"]["tag"], answer["prediction_id"]
        self.sent.append(Sent(due, time.monotonic(), response.status_code, tag, prediction_id))


def capacity(base: str, bodies: list[dict], *, clients: int = 8, seconds: float = 5.0) -> float:
    """Answers per second of `clients` closed-loop clients over `seconds`: what the service can
    answer on this host now (other tenants included), to size a steady load below it."""

    async def measure() -> int:
        async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=60) as client:
            loop = asyncio.get_running_loop()
            end, answered = loop.time() + seconds, 0

            async def one_client(k: int) -> None:
                nonlocal answered
                i = k
                while loop.time() < end:
                    response = await client.post(ROUTE, json=bodies[i % len(bodies)])
                    answered += response.status_code == 200
                    i += clients

            await asyncio.gather(*(one_client(k) for k in range(clients)))
            return answered

    return asyncio.run(measure()) / seconds


def by_kind(sent: Iterable[Sent]) -> dict[str, int]:
    """Counts by outcome: ``200``, ``503``..., or the client's exception for no answer."""
    return dict(collections.Counter(s.error or str(s.status) for s in sent))


def p99_ms(sent: list[Sent]) -> float | None:
    return float(np.percentile([s.latency_ms for s in sent], 99)) if sent else None


def timeline(sent: Iterable[Sent], origin: float) -> dict[int, dict[str, int]]:
    """Outcomes by whole second of their due time after `origin` (negative: before)."""
    seconds: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in sent:
        seconds[int(np.floor(s.due - origin))][s.error or str(s.status)] += 1
    return {second: dict(seconds[second]) for second in sorted(seconds)}
