"""CDS Hooks feedback checked: the outcome, the modality chosen and the coded reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model.schema import MODALITIES
from serving.cds_hooks.cards import suggestion_uuid
from serving.cds_hooks.discovery import CARD_UUID, FEEDBACK_OUTCOMES, OVERRIDE_REASONS
from serving.cds_hooks.requests import CdsRequestError

__all__ = ["feedback_entries"]


def feedback_entries(service_id: str, body: object) -> list[dict]:
    """The feedback entries of a CDS Hooks feedback request, checked.

    Returns
    -------
    list of dict
        One per entry: ``card`` (the prediction id), ``outcome``, ``chosen_modality`` (from an
        accepted suggestion, else None), ``override_reason`` (system and code, else None) and
        ``entry`` (the whole entry, to be digested, never stored).

    Raises
    ------
    CdsRequestError
        The body does not follow CDS Hooks 2.0 feedback.
    """
    entries = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CdsRequestError('the body must be {"feedback": [...]} with at least one entry')
    return [_feedback_entry(service_id, index, entry) for index, entry in enumerate(entries)]


def _feedback_entry(service_id: str, index: int, entry: object) -> dict:
    where = f"feedback[{index}]"
    if not isinstance(entry, dict):
        raise CdsRequestError(f"{where} must be an object")
    card = entry.get("card")
    if not isinstance(card, str) or not CARD_UUID.match(card):
        raise CdsRequestError(f"{where}.card must be the uuid of a card")
    card = card.removeprefix("urn:uuid:").lower()
    outcome = entry.get("outcome")
    if outcome not in FEEDBACK_OUTCOMES:
        raise CdsRequestError(f"{where}.outcome must be accepted or overridden")
    if not isinstance(entry.get("outcomeTimestamp"), str):
        raise CdsRequestError(f"{where}.outcomeTimestamp (an ISO 8601 instant) is required")
    suggestion_ids = _suggestion_ids(entry.get("acceptedSuggestions"), where)
    override = entry.get("overrideReason")
    if override is not None and not isinstance(override, dict):
        raise CdsRequestError(f"{where}.overrideReason must be an object")
    chosen = None
    if outcome == "accepted":
        if not suggestion_ids:
            raise CdsRequestError(f"{where}: an accepted outcome needs acceptedSuggestions")
        chosen = next((m for m in MODALITIES if suggestion_uuid(card, m) in suggestion_ids), None)
    reason = None
    if outcome == "overridden" and override is not None:
        coding = override.get("reason")
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            reason = _known_reason(coding)
    return {
        "service": service_id,
        "card": card,
        "outcome": outcome,
        "chosen_modality": chosen,
        "override_reason": reason,
        "entry": entry,
    }


def _suggestion_ids(accepted: object, where: str) -> set[str]:
    """The ids of the accepted suggestions (none when absent), lower case without `urn:uuid:`."""
    if accepted is None:
        return set()
    if not isinstance(accepted, list) or not all(isinstance(s, dict) for s in accepted):
        raise CdsRequestError(f"{where}.acceptedSuggestions must be a list of objects")
    return {str(s.get("id", "")).removeprefix("urn:uuid:").lower() for s in accepted}


def _known_reason(coding: Mapping[str, Any]) -> dict:
    """An override reason in clear when it is one of ours, else only that it was another."""
    for reason in OVERRIDE_REASONS:
        if coding.get("system") == reason["system"] and coding.get("code") == reason["code"]:
            return {"system": reason["system"], "code": reason["code"]}
    # Reasons from the EHR's own list could carry free text in their code: kept as a digest.
    return {"system": "other", "code": "other"}
