"""The procedure's published harms per modality (`data/procedure_harms.yaml`), checked once.

Population figures with their source, never personal predictions; where no source study
reports a figure (radioembolization in this product's sources) the answer says "not
reported". They go into every prognosis (`procedure_harms`), the form's harms table, the
patient handout and the CDS card's detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from model.schema import MODALITIES
from serving.exceptions import HarmsFileError

__all__ = ["HARMS_PATH", "NOT_REPORTED", "harms_markdown", "load_procedure_harms"]

HARMS_PATH = Path(__file__).resolve().parents[1] / "data" / "procedure_harms.yaml"
NOT_REPORTED = "not reported"


def _figure_text(value: float, unit: str) -> str:
    return f"{value:g} {unit}"


def _item(measure: dict, entry: dict | None, sources: dict, modality: str) -> dict:
    base = {
        "measure": measure["key"],
        "label": measure["label"],
        "plain_label": measure["plain"],
        "unit": measure["unit"],
    }
    if entry is None:
        return {
            **base,
            "value": None,
            "reported": False,
            "text": NOT_REPORTED,
            "note": "no source study reports it",
            "source": None,
        }
    if entry.get("source") not in sources:
        raise HarmsFileError(
            f"{modality} {measure['key']}: `source` must be one of {sorted(sources)}, but got "
            f"{entry.get('source')!r}; add the study under `sources` in {HARMS_PATH.name}"
        )
    return {
        **base,
        "value": float(entry["value"]),
        "reported": True,
        "text": _figure_text(float(entry["value"]), measure["unit"]),
        "note": entry.get("note"),
        "source": sources[entry["source"]]["short"],
    }


def parse_procedure_harms(raw: Mapping[str, Any]) -> dict:
    """The JSON-ready harms of `raw` (the YAML's content), after checking it.

    Raises
    ------
    HarmsFileError
        A modality or measure is missing, or a figure cites an unknown source.
    """
    sources = raw.get("sources") or {}
    measures = raw.get("measures") or []
    given = raw.get("modalities") or {}
    missing = [m for m in MODALITIES if m not in given]
    if missing or not measures:
        raise HarmsFileError(
            f"{HARMS_PATH.name} must list every modality ({', '.join(MODALITIES)}) and at least "
            f"one measure, but lacks {missing or 'measures'}; write null where nothing is "
            "reported"
        )
    modalities = []
    for name in MODALITIES:
        entries = given[name] or {}
        unknown = sorted(set(entries) - {m["key"] for m in measures})
        if unknown:
            raise HarmsFileError(
                f"{name}: every figure must be one of the `measures`, but got {unknown}"
            )
        items = [_item(m, entries.get(m["key"]), sources, name) for m in measures]
        modalities.append(
            {"modality": name, "reported": any(i["reported"] for i in items), "items": items}
        )
    return {
        "scope": " ".join(str(raw["scope"]).split()),
        "modalities": modalities,
        "sources": [
            {
                "key": key,
                "short": s["short"],
                "citation": " ".join(s["citation"].split()),
                "population": " ".join(s["population"].split()),
            }
            for key, s in sources.items()
        ],
    }


@cache
def load_procedure_harms(path: Path = HARMS_PATH) -> dict:
    """The harms of `path` (default `data/procedure_harms.yaml`), read and checked once."""
    return parse_procedure_harms(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def harms_markdown(harms: Mapping[str, Any] | None) -> list[str]:
    """The harms as markdown lines for a CDS card's detail (empty without harms)."""
    if not harms:
        return []
    lines = ["**Procedure risks (published population figures, not predictions for this patient)**"]
    for entry in harms["modalities"]:
        parts = "; ".join(f"{item['label']}: {item['text']}" for item in entry["items"])
        cited = sorted({item["source"] for item in entry["items"] if item["reported"]})
        source = f" (source: {', '.join(cited)})" if cited else " (no source study reports them)"
        lines.append(f"- {entry['modality']}: {parts}{source}")
    return lines
