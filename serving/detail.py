"""How much of a prognosis the caller asked for: all of it, or everything but the curves.

The curves (121 monthly points with intervals, per endpoint, per modality and for the
incidence of hepatic progression) are some 60 % of a full answer's JSON; a caller that shows
medians, horizons, explanations and the modality comparison asks for ``detail="summary"``
and gets every other field unchanged. The default is ``"full"``: the answer as it always was.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DETAIL_LEVELS", "Detail", "with_detail"]

Detail = Literal["summary", "full"]
DETAIL_LEVELS: tuple[Detail, ...] = ("summary", "full")
_ENDPOINTS = ("hpfs", "os")


def with_detail(answer: dict, detail: Detail) -> dict:
    """`answer` itself for "full"; for "summary", a copy without any `curve`."""
    if detail == "full":
        return answer
    summary = dict(answer)
    for name in _ENDPOINTS:
        endpoint = answer.get(name)
        if endpoint is None:
            continue
        endpoint = _without_curve(endpoint)
        endpoint["modalities"] = [_without_curve(m) for m in endpoint.get("modalities", [])]
        if endpoint.get("conditional"):
            endpoint["conditional"] = _without_curve(endpoint["conditional"])
        summary[name] = endpoint
    if answer.get("hepatic_progression"):
        summary["hepatic_progression"] = _without_curve(answer["hepatic_progression"])
    similar = answer.get("similar_patients")
    if similar:
        # The similar patients' Kaplan-Meier curves are curves too (None, as where a group is
        # too small to show one); their sizes and events stay.
        summary["similar_patients"] = {
            key: {**value, "curve": None} if key in _ENDPOINTS and value else value
            for key, value in similar.items()
        }
    return summary


def _without_curve(part: dict) -> dict:
    return {key: value for key, value in part.items() if key != "curve"}
