"""A trivial BentoML service, the floor for the serving benchmark: parse a body, answer a body.

Kept out of the product's API on purpose: a benchmark-only route in `serving/service.py` would
be one more route to secure, document and audit. This one runs on the same BentoML server
stack (uvicorn, the same middleware BentoML adds, one worker per `--workers`), so the
ratio of the real routes to it is the cost of what NetPrognosis does on top of BentoML.
"""

from __future__ import annotations

import bentoml
from pydantic import BaseModel


class Ping(BaseModel):
    """A small JSON body, validated like a real request."""

    message: str
    value: float


@bentoml.service(name="TrivialFloor", traffic={"timeout": 30})
class TrivialFloor:
    """Echoes its body back."""

    @bentoml.api(route="/v1/ping")
    def ping(self, body: Ping, /) -> Ping:
        """The body, unchanged."""
        return body
