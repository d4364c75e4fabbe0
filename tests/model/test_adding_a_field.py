"""Adding a boolean predictor touches `model/schema.py`, `data/cohort_spec.yaml` and
`data/fhir_mapping.yaml` only, and every surface picks it up (issue 15's acceptance test).

A hypothetical field, interferon alfa therapy, is added to a temporary copy of the project by
editing those three files alone; a script run in the copy reports what each surface shows of
it: the form, the explanation, the hazard-ratio table, the model card, the FHIR mapping's
notes and the data dictionary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("model", "store", "training", "serving", "netprog", "data")
FIELD = "interferon_therapy"

SCHEMA_FIELD = """    interferon_therapy: Annotated[
        StrictBool,
        Field(description="Interferon alfa before/with treatment."),
        About(factor="interferon therapy"),
    ]
"""
COVARIATE = """  interferon_therapy:
    by_grade: {G1: 0.10, G2: 0.08, G3: 0.05}
    assumption: "hypothetical field of the acceptance test"
"""
HAZARD_RATIO = (
    '      interferon_therapy: {value: 0.8, assumption: "hypothetical field of the acceptance '
    'test"}\n'
)
FHIR_ENTRY = r"""
  interferon_therapy:
    label: interferon alfa
    codes:
      - {system: atc, code: L03AB, prefix: true, display: "Interferons (ATC L03AB)"}
    text: ['\binterferon']
"""

SURFACES_SCRIPT = r'''
"""Run in the copy: what each surface shows of the new field, as JSON on stdout."""
import json
import sys
import traceback
from datetime import date
from pathlib import Path

FIELD = sys.argv[1]
report = {}


def surface(name):
    def wrap(check):
        try:
            report[name] = {"ok": True, "value": check()}
        except Exception:
            report[name] = {"ok": False, "error": traceback.format_exc(limit=4)}
        return check
    return wrap


@surface("schema")
def _():
    from model.schema import BOOLEAN_FIELDS, FEATURE_NAMES, FEATURE_SOURCES, about
    return {
        "boolean": FIELD in BOOLEAN_FIELDS,
        "column": FIELD in FEATURE_NAMES,
        "source": FEATURE_SOURCES.get(FIELD),
        "label": about(FIELD).form_label,
    }


@surface("form")
def _():
    from serving.web.form import form_fields
    field = next(f for f in form_fields() if f.name == FIELD)
    return {"label": field.label, "control": field.control, "section": field.section}


@surface("explanation")
def _():
    from model.explain import FIELD_FACTORS, field_labels
    from model.schema import Patient, example_patients
    patient = Patient(**{**example_patients()[0], FIELD: True})
    return {"factor": FIELD_FACTORS.get(FIELD), "label": field_labels(patient, "TACE")[FIELD]}


@surface("hazard_ratio_table")
def _():
    from training.evaluate import hazard_ratio_table
    from training.synthetic import simulate_cohort
    table = hazard_ratio_table(simulate_cohort(400, seed=1), "os")
    row = table.set_index("feature").loc[FIELD]
    return {
        "factor": row["factor"],
        "level": row["level"],
        "reference": row["reference"],
        "n_level": int(row["n_level"]),
    }


@surface("model_card")
def _():
    from training.model_card import predictors_table
    return next(row for row in predictors_table() if row["column"] == FIELD)


@surface("fhir_notes")
def _():
    from serving.fhir import patient_from_bundle
    path = Path("data/examples/fhir/g2_pancreas_sirt.bundle.json")
    mapped = patient_from_bundle(json.loads(path.read_text()), today=date(2026, 3, 1))
    return {
        "value": getattr(mapped.patient, FIELD),
        "provenance": mapped.provenance[FIELD],
    }


@surface("data_dictionary")
def _():
    from training.dictionary import dictionary_markdown
    return [line for line in dictionary_markdown().splitlines() if f"`{FIELD}`" in line]


print(json.dumps(report, default=str))
'''


def _insert_before(path: Path, anchor: str, text: str) -> None:
    content = path.read_text(encoding="utf-8")
    assert anchor in content, f"{path.name} no longer holds {anchor!r}; update this test"
    path.write_text(content.replace(anchor, text + anchor, 1), encoding="utf-8")


def _add_field(copy: Path) -> None:
    """The three edits a developer makes to add the field, and nothing else."""
    _insert_before(copy / "model" / "schema.py", "    planned_modality: Annotated[", SCHEMA_FIELD)
    spec = copy / "data" / "cohort_spec.yaml"
    _insert_before(spec, "\nmodality_assignment:", "\n" + COVARIATE.rstrip("\n"))
    for endpoint_end in ("\n  os:\n    baseline:", "\nfollow_up:"):
        _insert_before(spec, endpoint_end, "\n" + HAZARD_RATIO.rstrip("\n"))
    mapping = copy / "data" / "fhir_mapping.yaml"
    mapping.write_text(
        mapping.read_text(encoding="utf-8").rstrip("\n") + "\n" + FHIR_ENTRY, encoding="utf-8"
    )


@pytest.fixture(scope="module")
def surfaces(tmp_path_factory) -> dict:
    copy = tmp_path_factory.mktemp("project")
    for name in PACKAGES:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    _add_field(copy)
    (copy / "surfaces.py").write_text(SURFACES_SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "surfaces.py", FIELD],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _shown(surfaces: dict, name: str):
    result = surfaces[name]
    assert result["ok"], f"the {name} surface failed on the new field:\n{result['error']}"
    return result["value"]


def test_the_copy_imports_the_copy_not_this_checkout(surfaces):
    assert _shown(surfaces, "schema") == {
        "boolean": True,
        "column": True,
        "source": FIELD,
        "label": "Interferon therapy",
    }


def test_the_form_shows_the_new_field_with_its_label(surfaces):
    assert _shown(surfaces, "form") == {
        "label": "Interferon therapy",
        "control": "checkbox",
        "section": "history",
    }


def test_the_explanation_names_the_new_factor_and_the_patients_value(surfaces):
    assert _shown(surfaces, "explanation") == {
        "factor": "interferon therapy",
        "label": "interferon therapy",
    }


def test_the_hazard_ratio_table_has_a_row_for_the_new_predictor(surfaces):
    row = _shown(surfaces, "hazard_ratio_table")

    assert (row["factor"], row["level"], row["reference"]) == ("interferon therapy", "yes", "no")
    assert 0 < row["n_level"] < 400


def test_the_model_card_says_how_the_new_predictor_is_handled(surfaces):
    assert _shown(surfaces, "model_card") == {
        "column": FIELD,
        "from": FIELD,
        "handling": "yes = 1, no = 0",
    }


def test_the_fhir_mapping_notes_why_the_new_field_is_false_when_absent(surfaces):
    mapped = _shown(surfaces, "fhir_notes")

    assert mapped["value"] is False
    assert mapped["provenance"]["source"] == "default"
    assert "interferon alfa" in mapped["provenance"]["note"]


def test_the_data_dictionary_lists_the_new_column_as_a_predictor(surfaces):
    (line,) = _shown(surfaces, "data_dictionary")
    cells = [cell.strip() for cell in line.strip("|").split("|")]

    assert cells[:2] == [f"`{FIELD}`", "boolean"]
    assert cells[4:7] == ["yes", "yes", "Interferon alfa before/with treatment."]
