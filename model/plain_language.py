"""The prognosis "out of 100 people" and in plain sentences, for clinicians and for patients.

Built from the answer's own probabilities, so the words and icon arrays can never disagree
with the numbers: of 100 people like this patient at 1, 2 and 3 years, those alive and free of
hepatic progression are 100 x HPFS, those who died 100 x (1 - OS), and the rest are alive after
progression (HPFS ends at progression or death, so OS - HPFS is the chance of being alive after
progression). Counts are rounded half up to whole people.
"""

from __future__ import annotations

import math

from model.schema import MODALITIES

__all__ = ["OUT_OF_100_HORIZONS", "out_of_100", "plain_summaries", "whole_people"]

OUT_OF_100_HORIZONS = (12, 24, 36)
YEARS = {12: "1 year", 24: "2 years", 36: "3 years"}

PLAIN_NAMES = {
    "TACE": "chemoembolisation (TACE)",
    "TAE": "bland embolisation (TAE)",
    "SIRT": "radioembolisation (SIRT)",
}
"""How a patient handout names each treatment."""

PLAIN_SYNTHETIC = (
    "These numbers come from a computer model that learned from made-up (simulated) patients, "
    "not from real patients. They are a demonstration and must not be used to make decisions "
    "about anyone's care."
)
PLAIN_REAL = (
    "These numbers come from a computer model that learned from earlier patients. They are a "
    "guide for talking with your care team, not a promise about what will happen to you."
)
PLAIN_OBSERVATIONAL = (
    "The numbers for the different treatments compare people who happened to receive different "
    "treatments; the treatment was not chosen by chance, as it is in a fair trial. So part of "
    "any difference may come from the people, not from the treatment."
)
PLAIN_POPULATION = (
    "The risks of the procedure are how often problems happened in a published group of "
    "patients. They are not worked out for you."
)


def whole_people(probability: float) -> int:
    """``100 x probability`` rounded half up to a whole person (62.5 -> 63)."""
    # The nudge: 100 * 0.615 is 61.4999... in binary floating point. Probabilities come with
    # 4 decimals, so no true value lies within 1e-9 below a half.
    return math.floor(100.0 * probability + 0.5 + 1e-9)


def _counts(hpfs: dict, os: dict) -> dict:
    alive = whole_people(os["value"])
    # Separate models may put HPFS a hair above OS; nobody is progression-free and dead.
    progression_free = min(whole_people(hpfs["value"]), alive)
    return {
        "progression_free": progression_free,
        "alive_after_progression": alive - progression_free,
        "died": 100 - alive,
        "alive": alive,
        "progression_free_range": [whole_people(hpfs["lower"]), whole_people(hpfs["upper"])],
        "alive_range": [whole_people(os["lower"]), whole_people(os["upper"])],
    }


def _interval_words(count: int, bounds: list[int]) -> str:
    return f"about {count} of 100, between {bounds[0]} and {bounds[1]}"


def out_of_100(prognosis: dict) -> dict:
    """Icon-array counts of 100 people per modality at 1, 2 and 3 years, with words.

    Parameters
    ----------
    prognosis : dict
        The answer so far: its ``hpfs`` and ``os`` modality entries are read.

    Returns
    -------
    dict
        ``horizons``, ``note`` and ``modalities``: per modality ``at``, per month the counts
        ``progression_free``, ``alive_after_progression`` and ``died`` (summing to 100), the
        ``alive`` count, the 95 % intervals as whole people and ``text`` in words.
    """
    hpfs = {e["modality"]: e for e in prognosis["hpfs"]["modalities"]}
    os = {e["modality"]: e for e in prognosis["os"]["modalities"]}
    modalities = []
    for name in MODALITIES:
        at = []
        for month in OUT_OF_100_HORIZONS:
            key = str(month)
            counts = _counts(hpfs[name]["survival_at"][key], os[name]["survival_at"][key])
            pf_words = _interval_words(counts["progression_free"], counts["progression_free_range"])
            counts["text"] = (
                f"After {YEARS[month]}: alive and free of hepatic progression, {pf_words}; "
                f"alive after progression, about {counts['alive_after_progression']}; alive in "
                f"all, {_interval_words(counts['alive'], counts['alive_range'])}; died, about "
                f"{counts['died']}."
            )
            at.append({"month": month, **counts})
        modalities.append({"modality": name, "planned": hpfs[name]["planned"], "at": at})
    return {
        "horizons": list(OUT_OF_100_HORIZONS),
        "note": (
            "Of 100 people like this patient: alive and free of hepatic progression = 100 x "
            "HPFS; died = 100 x (1 - OS); alive after progression = the rest. Each rounded "
            "half up to whole people; ranges are the 95 % intervals."
        ),
        "modalities": modalities,
    }


def _clinician_text(entry: dict, planned: bool) -> str:
    name = entry["modality"]
    parts = []
    for at in entry["at"]:
        parts.append(
            f"after {YEARS[at['month']]}, about {at['progression_free']} would be alive without "
            f"liver progression (between {at['progression_free_range'][0]} and "
            f"{at['progression_free_range'][1]}), about {at['alive_after_progression']} alive "
            f"after it progressed, and about {at['died']} would have died"
        )
    lead = f"Of 100 patients like this one treated with {name}{' (planned)' if planned else ''}"
    return f"{lead}: {'; '.join(parts)}."


def _about(count: int) -> str:
    return "almost none" if count == 0 else f"about {count}"


def _patient_text(entry: dict) -> str:
    sentences = [f"Out of 100 people like you who have {PLAIN_NAMES[entry['modality']]}:"]
    for at in entry["at"]:
        low, high = at["alive_range"]
        progressed = _about(at["alive_after_progression"])
        sentences.append(
            f"After {YEARS[at['month']]}, {_about(at['progression_free'])} are alive and their "
            f"liver tumours have not grown. {progressed.capitalize()} are alive but their liver "
            f"tumours have grown. {_about(at['died']).capitalize()} have died. (The number alive "
            f"could be anywhere from about {low} to {high}.)"
        )
    return " ".join(sentences)


def plain_summaries(counts: dict, *, synthetic: bool) -> dict:
    """A summary a clinician can read aloud, and the patient handout's words.

    Parameters
    ----------
    counts : dict
        :func:`out_of_100` of the answer.
    synthetic : bool
        Whether the model was trained on synthetic data.

    Returns
    -------
    dict
        ``clinician``: one paragraph per modality, planned first; ``patient``: ``treatments``
        (one paragraph per treatment, planned first), ``data_warning``, ``comparison_warning``
        and ``risks_note`` in plain words.
    """
    ordered = sorted(counts["modalities"], key=lambda e: not e["planned"])
    clinician = [_clinician_text(e, e["planned"]) for e in ordered]
    clinician.append(
        "These are model estimates from an observational comparison, not a randomised one; "
        + (
            "the model was trained on synthetic data and is not for clinical use."
            if synthetic
            else "they support the tumour board's judgement and do not replace it."
        )
    )
    return {
        "clinician": clinician,
        "patient": {
            "treatments": [_patient_text(e) for e in ordered],
            "data_warning": PLAIN_SYNTHETIC if synthetic else PLAIN_REAL,
            "comparison_warning": PLAIN_OBSERVATIONAL,
            "risks_note": PLAIN_POPULATION,
        },
    }
