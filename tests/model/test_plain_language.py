"""Out of 100 people and plain words: counts that are the answer's probabilities rounded to
whole people, intervals in words, and a patient's text without jargon."""

from __future__ import annotations

import math
import re

import pytest

from model.plain_language import out_of_100, plain_summaries, whole_people

JARGON = re.compile(
    r"\b(HPFS|OS|hazard|SHAP|interval|modality|CI|cumulative|incidence|median|probability)\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize(
    ("probability", "people"), [(0.625, 63), (0.615, 62), (0.6149, 61), (0.0, 0), (1.0, 100)]
)
def test_people_are_rounded_half_up(probability, people):
    assert whole_people(probability) == people


def _half_up(p: float) -> int:
    return math.floor(round(100 * p, 6) + 0.5)


@pytest.mark.parametrize(
    "fields", [{}, {"who_grade": "G3", "tumor_burden_percent": 80}, {"planned_modality": "SIRT"}]
)
def test_each_array_is_the_answers_probabilities_in_whole_people_and_adds_up_to_100(
    prognosis_predictor, prognosis_patient, fields
):
    answer = prognosis_predictor.prognosis(prognosis_patient(**fields))

    counts = answer["out_of_100"]
    assert [m["modality"] for m in counts["modalities"]] == ["TACE", "TAE", "SIRT"]
    for entry in counts["modalities"]:
        hpfs = next(m for m in answer["hpfs"]["modalities"] if m["modality"] == entry["modality"])
        os = next(m for m in answer["os"]["modalities"] if m["modality"] == entry["modality"])
        assert entry["planned"] == hpfs["planned"]
        assert [a["month"] for a in entry["at"]] == [12, 24, 36]
        for at in entry["at"]:
            key = str(at["month"])
            alive = _half_up(os["survival_at"][key]["value"])
            free = min(_half_up(hpfs["survival_at"][key]["value"]), alive)
            assert at["progression_free"] == free
            assert at["died"] == 100 - alive
            assert at["progression_free"] + at["alive_after_progression"] + at["died"] == 100
            low, high = (_half_up(os["survival_at"][key][b]) for b in ("lower", "upper"))
            assert at["alive_range"] == [low, high]
            assert f"about {alive} of 100, between {low} and {high}" in at["text"]


def test_a_progression_free_share_above_the_survival_share_is_capped_at_the_alive():
    block = {
        "modalities": [
            {
                "modality": m,
                "planned": m == "TACE",
                "survival_at": {
                    h: {"value": v, "lower": v - 0.05, "upper": v + 0.05}
                    for h in ("12", "24", "36")
                },
            }
            for m, v in (("TACE", 0.70), ("TAE", 0.50), ("SIRT", 0.40))
        ]
    }
    os_block = {
        "modalities": [
            {
                **m,
                "survival_at": {
                    h: {**v, "value": v["value"] - 0.02} for h, v in m["survival_at"].items()
                },
            }
            for m in block["modalities"]
        ]
    }

    counts = out_of_100({"hpfs": block, "os": os_block})

    first = counts["modalities"][0]["at"][0]
    assert (first["progression_free"], first["alive_after_progression"], first["died"]) == (
        68,
        0,
        32,
    )


def test_the_patient_words_avoid_jargon_and_say_synthetic_and_observational_plainly(
    prognosis_predictor, prognosis_patient
):
    answer = prognosis_predictor.prognosis(prognosis_patient(planned_modality="TAE"))
    words = answer["plain_language"]["patient"]

    text = " ".join([*words["treatments"], words["data_warning"], words["comparison_warning"]])
    assert JARGON.search(text) is None, JARGON.search(text)
    assert words["treatments"][0].startswith(
        "Out of 100 people like you who have bland embolisation"
    )
    assert "made-up" in words["data_warning"]
    assert "by chance" in words["comparison_warning"]
    clinician = answer["plain_language"]["clinician"]
    assert clinician[0].startswith("Of 100 patients like this one treated with TAE (planned)")
    assert "synthetic data" in clinician[-1]


def test_a_model_trained_on_real_data_says_so_in_plain_words():
    counts = {"modalities": [{"modality": "TACE", "planned": True, "at": []}]}

    words = plain_summaries(counts, synthetic=False)

    assert "made-up" not in words["patient"]["data_warning"]
    assert "earlier patients" in words["patient"]["data_warning"]
