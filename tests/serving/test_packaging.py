"""The Bento: what bentofile.yaml packages, and that `bentoml build` carries the model."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import bentoml
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bentofile() -> dict:
    return yaml.safe_load((ROOT / "bentofile.yaml").read_text(encoding="utf-8"))


def test_the_bento_serves_the_netprognosis_service(bentofile):
    assert bentofile["service"] == "serving.service:NetPrognosis"
    assert bentofile["labels"]["license"] == "GPL-3.0-or-later"


def test_the_bento_includes_the_code_packages_and_data(bentofile):
    included = " ".join(bentofile["include"])

    for folder in ("model/", "training/", "serving/", "data/"):
        assert folder in included


def test_the_bento_requires_every_dependency_of_the_project(bentofile):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

    assert set(project["project"]["dependencies"]) <= set(bentofile["python"]["packages"])


def test_secrets_and_audit_files_are_kept_out_of_the_bento(bentofile):
    excluded = bentofile["exclude"]

    assert {"**/*.salt", "**/*.jsonl", ".env", "tests/"} <= set(excluded)


def build_bento(model_tag: str, tmp_path: Path) -> tuple[str, Path]:
    """`bentoml build` of this project serving `model_tag`: the Bento's tag and folder."""
    env = {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "NETPROG_MODEL_TAG": model_tag,
        "NETPROG_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }
    build = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag", str(ROOT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    bento_tag = build.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = bento_tag.split(":")
    return bento_tag, Path(os.environ["BENTOML_HOME"]) / "bentos" / name / version


@pytest.mark.slow
def test_bentoml_build_makes_a_bento_that_carries_the_served_model(model_tag, tmp_path):
    bento_tag, bento_dir = build_bento(model_tag, tmp_path)

    info = yaml.safe_load((bento_dir / "bento.yaml").read_text(encoding="utf-8"))
    [service] = info["services"]
    assert [m["tag"] for m in service["models"]] == [model_tag]
    assert (bento_dir / "src" / "serving" / "service.py").is_file()
    assert (bento_dir / "src" / "data" / "examples" / "batch.json").is_file()
    assert not list(bento_dir.rglob("*.salt"))
    bentoml.bentos.delete(bento_tag)
