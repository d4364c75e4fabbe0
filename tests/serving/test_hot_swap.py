"""The hot model switch (serving/hot_swap.py): each worker follows the production pointer."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from model.schema import Patient
from serving.answers import PrognosisService
from serving.audit import AuditLog
from serving.hot_swap import PointerFollower, ServedModel, load_served_model
from serving.schemas import EXAMPLE_PATIENT
from store.exceptions import BundleIntegrityError

ALTERED = (
    "artifact bundle.joblib of model netprog-bundle:bad was altered after training (SHA-256 "
    "mismatch); refusing to load it: retrain with `netprog train` or restore it"
)
PATIENT = Patient.model_validate(EXAMPLE_PATIENT)


class FakePredictor:
    """Answers with its own tag; `during` runs in the middle of a prediction."""

    def __init__(self, tag: str, during=None) -> None:
        self.tag = tag
        self.during = during

    def prognosis(self, patient, months_since_treatment=None) -> dict:
        if self.during is not None:
            self.during()
        return {"model": {"tag": self.tag}}

    def batch(self, patients) -> list[dict]:
        return [self.prognosis(patient) for patient in patients]


def served(tag: str, during=None) -> ServedModel:
    return ServedModel(tag, FakePredictor(tag, during), {"tag": tag})  # type: ignore[arg-type]


@dataclass
class Recorded:
    """Stands in for `SwitchMetrics`: what the follower counted."""

    outcomes: list[str] = field(default_factory=list)
    behinds: list[bool] = field(default_factory=list)

    def outcome(self, outcome: str) -> None:
        self.outcomes.append(outcome)

    def behind(self, is_behind: bool) -> None:
        self.behinds.append(is_behind)


@dataclass
class Holder:
    model: ServedModel


def follower(holder, pointer: dict, loads: list[str], refuse=(), **options) -> PointerFollower:
    def load(tag: str) -> ServedModel:
        loads.append(tag)
        if tag in refuse:
            raise BundleIntegrityError(ALTERED)
        return served(tag)

    return PointerFollower(holder, lambda: pointer["tag"], load, metrics=Recorded(), **options)


@pytest.fixture(autouse=True)
def _no_collection(monkeypatch):
    """The follower collects the old model a second after a swap; not in unit tests."""
    monkeypatch.setattr(PointerFollower, "_collect_the_old_model", lambda self: None)


def test_a_promoted_model_is_loaded_and_swapped_in_and_the_swap_is_counted(caplog):
    holder, pointer, loads = Holder(served("m:a")), {"tag": "m:a"}, []
    watcher = follower(holder, pointer, loads)

    assert watcher.check() == "unchanged"
    pointer["tag"] = "m:b"
    with caplog.at_level(logging.INFO, logger="serving.hot_swap"):
        assert watcher.check() == "swapped"

    assert holder.model.tag == "m:b"
    assert loads == ["m:b"]
    assert watcher.metrics.outcomes == ["swapped"]
    assert watcher.metrics.behinds == [False, False]
    assert "now serving m:b (was m:a)" in caplog.text
    assert watcher.check() == "unchanged"
    assert loads == ["m:b"]


def test_a_candidate_failing_verification_is_refused_once_and_the_old_model_keeps_serving(
    caplog,
):
    holder, pointer, loads = Holder(served("m:a")), {"tag": "netprog-bundle:bad"}, []
    watcher = follower(holder, pointer, loads, refuse={"netprog-bundle:bad"})

    with caplog.at_level(logging.INFO, logger="serving.hot_swap"):
        assert watcher.check() == "refused"
        assert watcher.check() == "still-refused"

    assert holder.model.tag == "m:a"
    assert loads == ["netprog-bundle:bad"], "a refused tag is not loaded again"
    assert watcher.metrics.outcomes == ["refused"]
    assert watcher.metrics.behinds == [True]
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert line.getMessage() == f"model netprog-bundle:bad refused; still serving m:a: {ALTERED}"
    state = watcher.state()
    assert state["model_in_service"] == "m:a"
    assert state["production_pointer"] == "netprog-bundle:bad"
    assert state["refused"]["tag"] == "netprog-bundle:bad"
    assert state["refused"]["reason"] == ALTERED

    pointer["tag"] = "m:a"
    assert watcher.check() == "unchanged"
    assert watcher.state()["refused"] is None


def test_an_unexpected_load_failure_is_refused_naming_only_its_kind():
    def broken(tag: str) -> ServedModel:
        raise EOFError("pickle data was truncated: 0x41 0x42")

    holder = Holder(served("m:a"))
    watcher = PointerFollower(holder, lambda: "m:b", broken, metrics=Recorded())

    assert watcher.check() == "refused"
    assert watcher.state()["refused"]["reason"] == "the bundle could not be loaded (EOFError)"


def test_a_pinned_service_reports_the_pointer_and_never_loads_it():
    holder, pointer, loads = Holder(served("m:a")), {"tag": "m:b"}, []
    watcher = follower(holder, pointer, loads, follows=False)

    assert watcher.check() == "pinned"
    watcher.start()

    assert watcher._thread is None
    assert loads == []
    assert watcher.state()["production_pointer"] == "m:b"
    assert watcher.state()["follows_pointer"] is False


def test_a_swap_during_a_request_leaves_its_answer_and_audit_record_on_one_model(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl", b"key", fsync=False)
    service = PrognosisService(served("m:a"), audit)
    service.model = served("m:a", during=lambda: setattr(service, "model", served("m:b")))

    first = service.prognoses([PATIENT, PATIENT], caller="c", route="/v1/prognosis/batch")
    second = service.prognoses([PATIENT], caller="c", route="/v1/prognosis/batch")

    records = list(audit.records())
    assert [a["model"]["tag"] for a in first] == ["m:a", "m:a"]
    assert [a["model"]["tag"] for a in second] == ["m:b"]
    assert [r["model_tag"] for r in records] == ["m:a", "m:a", "m:b"]


def test_the_polling_thread_swaps_within_its_interval_and_stops(monkeypatch):
    holder, pointer, loads = Holder(served("m:a")), {"tag": "m:b"}, []
    watcher = follower(holder, pointer, loads, poll_seconds=0.05)
    watcher.start()
    try:
        for _ in range(100):
            if holder.model.tag == "m:b":
                break
            watcher._stop.wait(0.02)
    finally:
        watcher.stop()
        watcher._thread.join(timeout=5)
    assert holder.model.tag == "m:b"
    assert not watcher._thread.is_alive()


def test_a_registered_bundle_loads_verified_with_its_card_and_a_warm_predictor(model_tag):
    model = load_served_model(model_tag)

    assert model.tag == model_tag
    assert model.card["tag"] == model_tag
    assert model.predictor.bundle.metadata["tag"] == model_tag
