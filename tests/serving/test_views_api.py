"""The clinician's and patient's views through the API: harms with their source beside the
prognosis, contributions over time only on request, and the CDS card's detail with the harms."""

from __future__ import annotations

import pytest

from model.schema import MODALITIES
from serving.exceptions import HarmsFileError
from serving.harms import load_procedure_harms, parse_procedure_harms
from serving.schemas import Prognosis
from tests.serving.conftest import example

RUUTIAINEN = "Ruutiainen et al., J Vasc Interv Radiol 2007"
PUBLISHED = {
    ("TACE", "mortality_30_day"): 1.4,
    ("TACE", "toxicity_grade_3_or_worse"): 25.0,
    ("TACE", "hospital_stay_days"): 1.5,
    ("TAE", "mortality_30_day"): 1.4,
    ("TAE", "toxicity_grade_3_or_worse"): 22.0,
    ("TAE", "hospital_stay_days"): 1.5,
}


def test_every_answer_carries_the_published_harms_with_their_source_and_none_for_sirt(client):
    answer = client.post("/v1/prognosis", json=example("g2_pancreas_sirt.json")).json()

    harms = answer["procedure_harms"]
    assert [m["modality"] for m in harms["modalities"]] == list(MODALITIES)
    for entry in harms["modalities"]:
        for item in entry["items"]:
            key = (entry["modality"], item["measure"])
            if entry["modality"] == "SIRT":
                assert item["value"] is None
                assert item["text"] == "not reported"
                assert item["source"] is None
            else:
                assert item["value"] == PUBLISHED[key]
                assert item["source"] == RUUTIAINEN
    assert harms["modalities"][2]["reported"] is False
    assert "not a prediction for this patient" in harms["scope"]
    assert "219 embolization procedures" in harms["sources"][0]["population"]
    Prognosis.model_validate(answer)


def test_contributions_over_time_come_only_when_asked_and_validate(client):
    request = example("g2_pancreas_sirt.json")

    plain = client.post("/v1/prognosis", json=request).json()
    asked = client.post("/v1/prognosis", json={**request, "contributions_over_time": True}).json()

    assert "contributions_over_time" not in plain
    over_time = Prognosis.model_validate(asked).contributions_over_time
    assert over_time.horizons == [12, 24, 36]
    for curve in (over_time.hpfs, over_time.os):
        for at in curve.at:
            total = sum(item.contribution for item in at.items)
            assert abs(total - (at.value - at.reference_value)) < 1e-6
    assert asked["hpfs"]["median_months"] == plain["hpfs"]["median_months"]


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_option_must_be_a_boolean(client, value):
    request = {**example("g2_pancreas_sirt.json"), "contributions_over_time": value}

    response = client.post("/v1/prognosis", json=request)

    assert response.status_code == 400


def test_the_answer_has_out_of_100_plain_words_and_patients_like_this(client):
    answer = Prognosis.model_validate(
        client.post("/v1/prognosis", json=example("g1_gut_tace.json")).json()
    )

    assert answer.out_of_100 is not None
    assert all(
        at.progression_free + at.alive_after_progression + at.died == 100
        for m in answer.out_of_100.modalities
        for at in m.at
    )
    assert answer.plain_language.patient.treatments[0].startswith("Out of 100 people like you")
    assert answer.similar_patients is not None
    assert answer.similar_patients.synthetic is True


def test_the_cds_card_detail_lists_the_harms_with_the_source_and_not_reported_for_sirt(
    make_client,
):
    # Its own service instance, as in test_cds_hooks.py: the CDS routes need the current one.
    client = make_client()
    request = example("fhir/cds_patient_view.json")
    answer = client.post("/cds-services/net-embolotherapy-prognosis", json=request)

    detail = answer.json()["cards"][0]["detail"]
    lines = detail.splitlines()
    assert (
        "**Procedure risks (published population figures, not predictions for this patient)**"
        in lines
    )
    [tace] = [line for line in lines if line.startswith("- TACE: Death within 30 days")]
    assert "1.4 % of procedures" in tace
    assert "25 % of procedures" in tace
    assert "1.5 days" in tace
    assert RUUTIAINEN in tace
    [tae] = [line for line in lines if line.startswith("- TAE: Death within 30 days")]
    assert "22 % of procedures" in tae
    [sirt] = [line for line in lines if line.startswith("- SIRT:")]
    assert sirt.count("not reported") == 3
    assert "no source study reports them" in sirt


def test_a_harms_file_without_sirt_or_with_an_unknown_source_is_refused():
    raw = {
        "scope": "x",
        "sources": {"a": {"short": "A", "citation": "A", "population": "p"}},
        "measures": [{"key": "m", "label": "M", "plain": "m", "unit": "%"}],
        "modalities": {"TACE": {"m": {"value": 1, "source": "a"}}, "TAE": {"m": None}},
    }

    with pytest.raises(HarmsFileError, match="SIRT"):
        parse_procedure_harms(raw)
    raw["modalities"]["SIRT"] = {"m": {"value": 2, "source": "b"}}
    with pytest.raises(HarmsFileError, match="source"):
        parse_procedure_harms(raw)


def test_the_shipped_harms_file_quotes_ruutiainen_2007_as_the_seeds_give_it():
    harms = load_procedure_harms()

    tace = {i["measure"]: i for i in harms["modalities"][0]["items"]}
    assert tace["toxicity_grade_3_or_worse"]["note"] == "11 of 44 chemoembolization procedures"
    assert "3 deaths among 219 procedures" in tace["mortality_30_day"]["note"]
