"""No patient rows in what is served: a Bento built from a model trained on a cohort with
marked patient ids and marked values holds none of them, in any file, pickles included."""

from __future__ import annotations

import pickle
import re
import struct
import tarfile
from pathlib import Path

import bentoml
import joblib
import numpy as np
import pandas as pd
import pytest

from model.schema import encode
from store import registry, training_store
from tests.serving.test_packaging import build_bento
from training import pipeline
from training.synthetic import simulate_cohort

ROOT = Path(__file__).resolve().parents[2]
MARK = 0.4321
"""Every patient's tumour burden ends in .4321 (its category unchanged): a value that only a
patient's own row can hold."""
TEXT_SUFFIXES = (".yaml", ".yml", ".json", ".html", ".md", ".txt", ".py", ".csv", ".js")


def marked_cohort():
    cohort = simulate_cohort(600, seed=29)
    cohort["patient_id"] = [f"MARKEDPATIENT{i:05d}" for i in range(len(cohort))]
    cohort["tumor_burden_percent"] = np.floor(cohort["tumor_burden_percent"]).clip(0, 99) + MARK
    return cohort


def binary_marks(cohort) -> list[bytes]:
    values = cohort["tumor_burden_percent"].to_numpy(dtype=float)
    return sorted({struct.pack("<d", v) for v in values} | {struct.pack("<f", v) for v in values})


def found_in(data: bytes, ids: list[bytes], marks: list[bytes]) -> list[str]:
    found = [i.decode() for i in ids if i in data]
    found += [repr(m) for m in marks if m in data]
    return found[:5]


def scan(path: Path, ids: list[bytes], marks: list[bytes]) -> list[str]:
    """What of the marked ids and values `path` holds, unpickling joblib files to read them."""
    data = path.read_bytes()
    if path.suffix == ".joblib":
        data = pickle.dumps(joblib.load(path), protocol=5)
    elif path.suffix == ".parquet":
        data = pickle.dumps(pd.read_parquet(path), protocol=5)
    text_hits = []
    if path.suffix in TEXT_SUFFIXES:
        text = data.decode("utf-8", errors="replace")
        text_hits = re.findall(r"\d+\.4321\b", text)[:3]
    return text_hits + found_in(data, ids, marks)


@pytest.mark.slow
def test_a_built_bento_holds_no_marked_patient_id_or_value(tmp_path, monkeypatch):
    cohort = marked_cohort()
    monkeypatch.setenv("NETPROG_TRAINING_STORE", str(tmp_path / "training-side"))
    run = pipeline.train(
        cohort,
        seed=29,
        n_bootstrap=3,
        n_splits=3,
        n_jobs=2,
        cohort_label="synthetic",
        promote_if_none=False,
        estimator_params={"coxnet": {"cv": 3, "n_alphas": 30, "l1_ratios": (0.9,)}},
    )
    ids = [p.encode() for p in cohort["patient_id"]]
    marks = binary_marks(cohort)
    side = training_store.folder_of(run.tag)
    # The check itself finds the marks where they are: in the training-side store.
    assert scan(side / registry.HOLDOUT_FILE, ids, marks)
    assert scan(side / registry.DEVELOPMENT_ROWS_FILE, ids, marks)
    bento_tag, _ = build_bento(run.tag, tmp_path)
    try:
        # A built Bento refers to its models; `export` (and `containerize`) copies them in.
        archive = bentoml.export_bento(bento_tag, str(tmp_path / "netprognosis.bento"))
        shipped = tmp_path / "shipped"
        with tarfile.open(archive) as bento_file:
            bento_file.extractall(shipped, filter="data")
    finally:
        bentoml.bentos.delete(bento_tag)
        bentoml.models.delete(run.tag)
    files = [p for p in shipped.rglob("*") if p.is_file()]
    found = {str(p.relative_to(shipped)): hits for p in files if (hits := scan(p, ids, marks))}
    model_files = {p.name for p in files if "models" in p.parts}

    assert "bundle.joblib" in model_files
    assert not model_files & {
        registry.HOLDOUT_FILE,
        registry.TRAINING_IDS_FILE,
        registry.DEVELOPMENT_ROWS_FILE,
    }
    assert found == {}
    [bundle_file] = [p for p in files if p.name == "bundle.joblib"]
    assert not shipped_rows(joblib.load(bundle_file), cohort)


def shipped_rows(bundle, cohort) -> list[str]:
    """What in the served bundle is one value per training patient, or a patient's row."""
    design = encode(cohort).to_numpy(dtype=float)
    background = bundle.shap_background.to_numpy(dtype=float)
    found = [
        f"background row {i} is patient {j}"
        for i, row in enumerate(background)
        for j in np.flatnonzero(np.all(np.isclose(design, row, rtol=0, atol=1e-12), axis=1))
    ]
    for endpoint, families in bundle.models.items():
        for name, model in families.items():
            if len(model.training_log_hazard) >= len(cohort) // 2:
                found.append(f"{endpoint}/{name} keeps one log hazard per patient")
    return found
