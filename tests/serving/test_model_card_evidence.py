"""The model card shows the evidence base of a model built from published aggregates."""

from __future__ import annotations

from serving.model_card import evidence_summary
from training.fit import load_evidence_base


def test_the_default_card_lists_the_real_patients_behind_each_grade():
    summary = evidence_summary(load_evidence_base())
    texts = {subgroup["grade"]: subgroup["text"] for subgroup in summary["subgroups"]}
    assert texts["G3"].startswith("G3: about 20 patients in the source studies")
    assert "rests on very few patients" in texts["G3"]
    assert "TACE, TAE, SIRT" in texts["G3"]
    assert "rests on very few patients" not in texts["G1"]
    assert set(summary["sources"]) >= {"chen2017", "table1_004"}
    assert summary["sources"]["table1_004"]["patients"] == 184


def test_a_registry_model_has_no_evidence_base():
    assert evidence_summary(None) is None
