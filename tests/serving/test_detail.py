"""`detail`: the default answer is the whole prognosis; "summary" is the same without curves."""

from __future__ import annotations

import pytest

from serving.detail import with_detail
from serving.schemas import Prognosis
from tests.serving.conftest import example


def _curves(value, path=""):
    """The paths of every `curve` in an answer (None is no curve)."""
    if isinstance(value, dict):
        found = [f"{path}.curve"] if value.get("curve") is not None else []
        for key, item in value.items():
            found += _curves(item, f"{path}.{key}")
        return found
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _curves(item, f"{path}[{i}]")]
    return []


def _without_id(answer):
    return {k: v for k, v in answer.items() if k != "prediction_id"}


def test_the_default_answer_is_the_full_one_with_every_curve(client):
    request = example("unknown_primary_follow_up.json")
    default = client.post("/v1/prognosis", json=request).json()
    full = client.post("/v1/prognosis", json={**request, "detail": "full"}).json()

    assert _without_id(default) == _without_id(full)
    # Per endpoint: its own, three modalities', the conditional one; the incidence; and the
    # similar patients' Kaplan-Meier curve per endpoint.
    assert len(_curves(default)) == 2 * (1 + 3 + 1) + 1 + 2


def test_a_summary_is_the_full_answer_without_its_curves(client):
    request = example("unknown_primary_follow_up.json")
    full = client.post("/v1/prognosis", json=request).json()
    summary = client.post("/v1/prognosis", json={**request, "detail": "summary"}).json()

    Prognosis.model_validate(summary)
    assert _curves(summary) == []
    assert _without_id(summary) == _without_id(with_detail(full, "summary"))
    assert summary["hpfs"]["median_months"] == full["hpfs"]["median_months"]
    assert (
        summary["os"]["modalities"][1]["survival_at"] == full["os"]["modalities"][1]["survival_at"]
    )


def test_a_batch_summary_drops_the_curves_of_every_patient(client):
    batch = example("batch.json")
    answers = client.post("/v1/prognosis/batch", json={**batch, "detail": "summary"}).json()

    assert len(answers) == len(batch["patients"])
    assert all(_curves(answer) == [] for answer in answers)


@pytest.mark.parametrize("detail", ["brief", "", None])
def test_an_unknown_detail_is_400_naming_the_allowed_levels(client, detail):
    request = {**example("g1_gut_tace.json"), "detail": detail}
    response = client.post("/v1/prognosis", json=request)

    assert response.status_code == 400
    assert "summary" in response.text
