"""The one answer path: predict, audit, answer, shared by the JSON, FHIR and CDS Hooks routes.

Every prediction, whichever route asked, is recorded in the audit log before it is returned,
under a fresh prediction id and a keyed digest of exactly what `/v1/prognosis` would digest
for the same patient; when the record cannot be written, no prediction is returned (503).

The record holds nothing the prediction computes (its id, route, model, caller and input
digest), so it is written and forced to disk (fsync, some 4 ms on the reference machine's
disk: as long as the prediction itself) on a writer thread while the prediction is computed,
and the answer waits for both. A prediction that can be refused for its input (conditional
survival asked where it is undefined, 422) is computed before its record is written, as
before, so that no record stands for an answer that was refused.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Annotated, Any

import bentoml
import numpy as np
from fastapi import Depends
from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from model.schema import Patient
from serving.audit import AuditEntry, AuditLog, caller_id
from serving.exceptions import AuditWriteError
from serving.hot_swap import ServedModel
from serving.security import CALLER_STATE_KEY

__all__ = [
    "Answers",
    "PrognosisService",
    "audit_payload",
    "caller_of",
    "current_service",
    "error_answer",
    "json_answer",
    "media_type_rejection",
    "refusal",
]

logger = logging.getLogger(__name__)

AUDIT_WRITER_THREADS = 4
"""Audit appends in flight at once per worker (each waits mostly on its fsync)."""


def audit_payload(patient: Patient, months_since_treatment: float | None = None) -> dict:
    """What a prediction's input digest covers: the patient and the follow-up time, so that
    one patient has one digest whichever route asked."""
    return {
        "patient": patient.model_dump(mode="json"),
        "months_since_treatment": months_since_treatment,
    }


def caller_of(request: Request) -> str:
    """The audit log's name for whoever sent `request` (set by the request guard)."""
    return caller_id(getattr(request.state, CALLER_STATE_KEY, None))


class PrognosisService:
    """Predicts, audits and answers with the served model.

    Parameters
    ----------
    model : ServedModel
        The served model (tag, predictor, card). A hot switch (`serving.hot_swap`) replaces
        it by one assignment; each call takes it once, so its prediction, its answer's
        `model` block and its audit record always name the same model.
    audit : AuditLog
        Where every prediction and every piece of feedback is recorded before it is answered.
    """

    def __init__(self, model: ServedModel, audit: AuditLog) -> None:
        self.model = model
        self.audit = audit
        # Several threads, so that the fsyncs of concurrent requests overlap (group commit).
        self._writer = ThreadPoolExecutor(AUDIT_WRITER_THREADS, thread_name_prefix="audit")

    @property
    def model_tag(self) -> str:
        """The tag of the model in service now."""
        return self.model.tag

    def prognosis(
        self,
        patient: Patient,
        *,
        caller: str,
        route: str,
        months_since_treatment: float | None = None,
        contributions_over_time: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> dict:
        """The audited prognosis of one patient: its prediction id, the predictor's answer and
        `extra` (for the FHIR route: the mapped patient and its provenance).

        `contributions_over_time` asks the predictor for each field's contribution at 12, 24
        and 36 months (:meth:`model.predictor.Predictor.prognosis`).

        Raises
        ------
        ModelError
            The model cannot answer for this patient (422).
        AuditWriteError
            The audit record could not be written; the prediction is refused (503).
        """
        model = self.model
        payload = audit_payload(patient, months_since_treatment)

        def predict() -> list[dict]:
            return [
                model.predictor.prognosis(
                    patient,
                    months_since_treatment,
                    contributions_over_time=contributions_over_time,
                )
            ]

        if months_since_treatment is not None:
            # Refusable for its input (422): computed before its record is written.
            results = predict()
            [answer] = self._audited(model.tag, caller, route, [payload], lambda: results, extra)
            return answer
        [answer] = self._audited(model.tag, caller, route, [payload], predict, extra)
        return answer

    def prognoses(self, patients: Sequence[Patient], *, caller: str, route: str) -> list[dict]:
        """The audited prognoses of several patients, in their order (raises as `prognosis`)."""
        model = self.model
        payloads = [audit_payload(patient) for patient in patients]
        return self._audited(
            model.tag, caller, route, payloads, lambda: model.predictor.batch(list(patients))
        )

    def record_feedback(
        self, entries: Sequence[Mapping[str, Any]], *, caller: str, route: str
    ) -> None:
        """Record CDS Hooks feedback, one `feedback` record per entry, keyed by the card's id.

        Each entry holds ``card``, ``entry`` (digested, never stored) and the coded
        ``service``, ``outcome``, ``chosen_modality`` and ``override_reason`` (kept in clear).

        Raises
        ------
        AuditWriteError
            The records could not be written; the feedback is refused (503).
        """
        records = [
            AuditEntry(
                prediction_id=entry["card"],
                route=route,
                model_tag=self.model_tag,
                caller=caller,
                input_hmac=self.audit.input_digest(entry["entry"]),
                kind="feedback",
                feedback={
                    k: entry[k]
                    for k in ("service", "outcome", "chosen_modality", "override_reason")
                },
            )
            for entry in entries
        ]
        self._append(records, "feedback")

    def _audited(
        self,
        model_tag: str,
        caller: str,
        route: str,
        payloads: Sequence[dict],
        predict: Callable[[], Sequence[dict]],
        extra: Mapping[str, Any] | None = None,
    ) -> list[dict]:
        """`predict()`'s answers under fresh prediction ids, once their records are on disk.

        `model_tag` is the model that `predict` uses, read once by the caller: a hot switch
        between the record and the answer cannot make them disagree.
        """
        entries = [
            AuditEntry(
                prediction_id=str(uuid.uuid4()),
                route=route,
                model_tag=model_tag,
                caller=caller,
                input_hmac=self.audit.input_digest(payload),
            )
            for payload in payloads
        ]
        written: Future = self._writer.submit(self._append, entries, "prediction")
        try:
            results = predict()
        finally:
            # The record stands whether or not the answer can be sent: wait for it either way.
            written.result()
        return [
            {"prediction_id": entry.prediction_id, **result, **(extra or {})}
            for entry, result in zip(entries, results, strict=True)
        ]

    def _append(self, entries: Sequence[AuditEntry], what: str) -> None:
        try:
            self.audit.append(entries)
        except AuditWriteError as error:
            logger.error("%s refused, not audited: %s", what, error)
            raise


def current_service() -> PrognosisService:
    """The answer path of the BentoML service handling the current request.

    For the routes of mounted FastAPI apps (FHIR, CDS Hooks), as a dependency (`Answers`).
    """
    service = getattr(bentoml.get_current_service(), "answers", None)
    if not isinstance(service, PrognosisService):
        raise RuntimeError(
            "the current BentoML service must carry a PrognosisService as `answers`; mount "
            "the FHIR and CDS Hooks apps on serving.service:NetPrognosis"
        )
    return service


Answers = Annotated[PrognosisService, Depends(current_service)]
"""A route parameter that receives the service's answer path."""


def json_answer(body: object, status_code: int = 200, media_type: str | None = None) -> Response:
    """A JSON answer, encoded once by pydantic-core (NumPy scalars as Python values)."""
    return Response(
        to_json(body, fallback=_plain_value),
        status_code=status_code,
        media_type=media_type or "application/json",
    )


def error_answer(status_code: int, message: str) -> JSONResponse:
    """The API's error body: `{"error": message}`."""
    return JSONResponse({"error": message}, status_code=status_code)


def media_type_rejection(request: Request, allowed: Sequence[str]) -> JSONResponse | None:
    """A 415 answer when the body's media type is not one of `allowed` (none given is JSON)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type not in allowed:
        return error_answer(415, f"Content-Type must be one of {', '.join(allowed)}")
    return None


def refusal(error: AuditWriteError, what: str = "prediction") -> JSONResponse:
    """The 503 of an answer refused because its audit record could not be written."""
    return error_answer(503, f"{what} refused: {error.public_message}")


def _plain_value(value: object) -> object:
    """NumPy scalars as Python values: the predictor's dicts should hold none, but may."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
