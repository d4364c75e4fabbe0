"""Following the production pointer: each worker loads, verifies and swaps in a promoted model.

Each worker reads the production pointer every `NETPROG_MODEL_POLL_SECONDS` (5 s) on a
background thread. When it names another model, that thread loads it as the service loads
its first one (every artifact's SHA-256, both schema versions: `serving.loading`), answers
one example patient with it, and only then replaces the worker's `ServedModel` by one
assignment. A request takes the served model once, when it starts, and uses it for the
prediction, the answer's `model` block and the audit record, so no answer mixes two models
and none waits for a load. A candidate that fails verification is refused: the worker keeps
serving the model it has, logs one line (the tag and the reason, never a patient value), counts
it in `netprog_model_switch_total{outcome="refused"}` and does not try that tag again until the
pointer has named another. A service started with `NETPROG_MODEL_TAG` is pinned and follows
nothing; `GET /v1/model` still reports the pointer's target beside the model in service.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from model.predictor import Predictor
from model.schema import Patient
from serving.exceptions import ServingError
from serving.harms import load_procedure_harms
from serving.loading import load_verified
from serving.model_card import build_model_card
from serving.schemas import EXAMPLE_PATIENT
from store.exceptions import StoreError

__all__ = [
    "PointerFollower",
    "ServedModel",
    "SwitchMetrics",
    "load_served_model",
]

logger = logging.getLogger(__name__)

SETTLE_SECONDS = 1.0
"""How long after a swap the follower waits before collecting the old model's cycles: requests
that started on it finish first."""


@dataclass(frozen=True)
class ServedModel:
    """One loaded model: the tag every answer and audit record names, the predictor and its
    card. Replaced whole by a swap, never changed in place."""

    tag: str
    predictor: Predictor
    card: dict


def load_served_model(tag: str) -> ServedModel:
    """Load `tag` verified (raises as `serving.loading.load_verified`) and answer one example
    patient with it, so that the first request it serves pays no first-use cost."""
    stored, bundle = load_verified(tag)
    predictor = Predictor(bundle, procedure_harms=load_procedure_harms())
    predictor.prognosis(Patient.model_validate(EXAMPLE_PATIENT))
    return ServedModel(str(stored.tag), predictor, build_model_card(stored, bundle))


class Holder(Protocol):
    """Whatever holds the worker's served model (`serving.answers.PrognosisService`)."""

    model: ServedModel


class SwitchMetrics:
    """`netprog_model_switch_total{outcome}` (swapped, refused) and
    `netprog_model_behind_pointer` (workers not serving the pointer's target), made on first
    use so that importing this module registers nothing."""

    def __init__(self) -> None:
        self._made: tuple[Any, Any] | None = None

    def _metrics(self) -> tuple[Any, Any]:
        if self._made is None:
            import bentoml

            self._made = (
                bentoml.metrics.Counter(
                    name="netprog_model_switch_total",
                    documentation="Model switches attempted by a worker, by outcome",
                    labelnames=["outcome"],
                ),
                bentoml.metrics.Gauge(
                    name="netprog_model_behind_pointer",
                    documentation="1 per worker serving a model other than the production "
                    "pointer's target (a refused candidate, or a switch not yet done)",
                    multiprocess_mode="livesum",
                ),
            )
        return self._made

    def outcome(self, outcome: str) -> None:
        self._metrics()[0].labels(outcome=outcome).inc()

    def behind(self, is_behind: bool) -> None:
        self._metrics()[1].set(int(is_behind))


@dataclass
class Refusal:
    """A candidate this worker would not serve, and why (the verification's message)."""

    tag: str
    reason: str
    at: str


@dataclass
class PointerFollower:
    """Moves `holder.model` to the production pointer's target, off the request path.

    Parameters
    ----------
    holder : Holder
        Its `model` attribute is replaced, by one assignment, when a candidate loads verified.
    target : callable
        Returns the tag the production pointer names, or None.
    load : callable
        Loads a tag verified into a `ServedModel` (raises when it must be refused).
    poll_seconds : float
        Interval between two reads of the pointer.
    follows : bool
        False when the service is pinned (`NETPROG_MODEL_TAG`): the pointer is reported only.
    """

    holder: Holder
    target: Callable[[], str | None]
    load: Callable[[str], ServedModel] = load_served_model
    poll_seconds: float = 5.0
    follows: bool = True
    metrics: SwitchMetrics | Any = field(default_factory=SwitchMetrics)
    refused: Refusal | None = None
    last_target: str | None = None
    last_checked_at: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Poll on a daemon thread until `stop` (nothing to do for a pinned service)."""
        if not self.follows or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="netprog-pointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
            except Exception as error:  # the thread must outlive any one failed check
                logger.error("reading the production pointer failed: %s", type(error).__name__)

    def check(self) -> str:
        """Read the pointer once and act on it; returns what happened: ``unchanged``,
        ``swapped``, ``refused``, ``still-refused`` or ``pinned``."""
        target = self.target()
        self.last_target = target
        self.last_checked_at = datetime.now(UTC).isoformat(timespec="seconds")
        current = self.holder.model.tag
        if not self.follows:
            return "pinned"
        if target is None or target == current:
            self.refused = None
            self.metrics.behind(False)
            return "unchanged"
        if self.refused is not None and self.refused.tag == target:
            return "still-refused"
        return self._switch_to(target, current)

    def _switch_to(self, target: str, current: str) -> str:
        started = time.monotonic()
        try:
            candidate = self.load(target)
        except Exception as error:
            self.refused = Refusal(target, _reason(error), self.last_checked_at or "")
            self.metrics.outcome("refused")
            self.metrics.behind(True)
            logger.error(
                "model %s refused; still serving %s: %s", target, current, self.refused.reason
            )
            return "refused"
        self.holder.model = candidate
        self.refused = None
        self.metrics.outcome("swapped")
        self.metrics.behind(False)
        # WARNING: the model that answers has changed, which an operator should see at the
        # default log level.
        logger.warning(
            "now serving %s (was %s), loaded and verified in %.1f s",
            candidate.tag,
            current,
            time.monotonic() - started,
        )
        self._collect_the_old_model()
        return "swapped"

    def _collect_the_old_model(self) -> None:
        """Free the old model's reference cycles once its last requests are done, then freeze
        the survivors again (the service freezes its long-lived objects: serving/service.py)."""
        if self._stop.wait(SETTLE_SECONDS):
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def state(self) -> dict:
        """What `GET /v1/model` reports under `serving`: the pointer is read afresh."""
        try:
            self.last_target = self.target()
        except Exception as error:  # a pointer being rewritten, or unreadable: say so
            logger.warning("reading the production pointer failed: %s", type(error).__name__)
        return {
            "model_in_service": self.holder.model.tag,
            "production_pointer": self.last_target,
            "follows_pointer": self.follows,
            "poll_seconds": self.poll_seconds,
            "last_checked_at": self.last_checked_at,
            "refused": None
            if self.refused is None
            else {"tag": self.refused.tag, "reason": self.refused.reason, "at": self.refused.at},
        }


def _reason(error: Exception) -> str:
    """The refusal's reason: the verification's own message, which names artifacts and
    versions; for any other failure (an unpickling error), only its kind."""
    if isinstance(error, ServingError | StoreError):
        return str(error)
    return f"the bundle could not be loaded ({type(error).__name__})"
