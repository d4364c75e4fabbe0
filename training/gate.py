"""The promotion gate: a candidate replaces production only if non-inferior on unseen patients.

Both models' primary full-data fits (what would be served) are evaluated on the same rows:
the candidate's held-out patients and the production model's held-out patients, each set
without the patients the other model was trained on (:mod:`training.holdout` makes these
exclusions empty when both runs used the held-out rule). On every usable set and for both
endpoints, by paired bootstrap of those same patients (:mod:`training.gate_statistics`), the
lower bound of the 95 % interval of ΔC (candidate minus production, Harrell's and Uno's C)
must lie above -`NON_INFERIORITY_MARGIN`, and the 95 % interval of the candidate's calibration
slope at 24 months must overlap `CALIBRATION_SLOPE_RANGE`. A point estimate alone decided
before: on a few hundred patients noise flipped it either way.

When the candidate's held-out set has fewer than `OPTIMISM_HELD_OUT_EVENTS` events for either
endpoint (an update keeps none by default), its place is taken by the patients the candidate
was fitted on, less any production was: the candidate's procedure is refitted on bootstrap
resamples of them and the same checks use optimism-corrected figures and intervals
(:mod:`training.gate_optimism`). Production's held-out set is judged as before.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from model.bundle import ModelBundle
from model.schema import ENDPOINTS, FEATURE_NAMES, OUTCOME_COLUMNS, PATIENT_FIELDS
from store import registry
from training import evaluate, gate_optimism
from training.exceptions import GateRefusedError, RegistryError
from training.fit import survival_target
from training.gate_optimism import (
    OPTIMISM_BOOTSTRAP,
    OPTIMISM_HELD_OUT_EVENTS,
    Refit,
    optimism_corrected,
)
from training.gate_procedure import procedure_of
from training.gate_statistics import (
    CALIBRATION_SLOPE_RANGE,
    GATE_BOOTSTRAP,
    NON_INFERIORITY_MARGIN,
    SLOPE_HORIZON,
    UNO_TAU,
    paired_concordance,
    slope_overlaps,
    slope_with_interval,
)
from training.holdout import patient_hashes
from training.pipeline import predict_rows

__all__ = [
    "CALIBRATION_SLOPE_RANGE",
    "MAX_HARRELL_C_DROP",
    "MIN_EVENTS",
    "NON_INFERIORITY_MARGIN",
    "OPTIMISM_HELD_OUT_EVENTS",
    "checks_table",
    "compare_on_rows",
    "evaluate_gate",
    "promote",
]

logger = logging.getLogger(__name__)

MAX_HARRELL_C_DROP = NON_INFERIORITY_MARGIN
"""The old name of the margin, kept for callers."""
MIN_EVENTS = 10
"""Fewest events per endpoint for an evaluation set to count: fewer give no usable slope."""


@dataclass
class EvaluationSet:
    """Held-out rows that neither model was fitted on, and how they were chosen."""

    name: str
    rows: pd.DataFrame
    n_excluded: int
    note: str
    refit: Refit | None = None
    """The candidate's procedure when these are its own patients (optimism-corrected route)."""

    @property
    def method(self) -> str:
        return "held-out" if self.refit is None else OPTIMISM_METHOD

    def describe(self, used: bool) -> dict:
        return {
            "name": self.name,
            "method": self.method,
            "n_patients": len(self.rows),
            "n_excluded": self.n_excluded,
            "events": _events(self),
            "used": used,
            "note": self.note,
        }


LOCAL_SET = "candidate's own"
"""The name of the set of patients the candidate was fitted on (optimism-corrected route)."""
OPTIMISM_METHOD = "optimism-corrected bootstrap"


def _unseen_by(rows: pd.DataFrame | None, seen: set[str] | None, name: str, other: str):
    """`rows` without the patients `other` was trained on (`seen`, keyed hashes)."""
    if rows is None:
        return None
    if seen is None:
        note = (
            f"the {other} model does not record its training patients; some of these rows may "
            f"be among them, which can only flatter it"
        )
        return EvaluationSet(name, rows, 0, note)
    keep = ~pd.Series(patient_hashes(rows["patient_id"]), index=rows.index).isin(seen)
    note = f"{int((~keep).sum())} patient(s) the {other} model was trained on left out"
    return EvaluationSet(name, rows[keep].reset_index(drop=True), int((~keep).sum()), note)


def _evaluation_sets(candidate: str, production: str | None) -> list[EvaluationSet]:
    sets = []
    seen_by_production = registry.training_patients(production) if production else None
    candidate_rows = _unseen_by(
        registry.holdout_rows(candidate), seen_by_production, "candidate held-out", "production"
    )
    if candidate_rows is not None:
        sets.append(candidate_rows)
    if production is not None:
        production_rows = _unseen_by(
            registry.holdout_rows(production),
            registry.training_patients(candidate),
            "production held-out",
            "candidate",
        )
        if production_rows is not None:
            sets.append(production_rows)
    if len(sets) == 2 and _same_rows(sets[0].rows, sets[1].rows):
        note = "the candidate's and production's held-out rows are identical; evaluated once"
        sets = [EvaluationSet("shared held-out", sets[0].rows, 0, note)]
    return sets


def _events(evaluation_set: EvaluationSet) -> dict[str, int]:
    return {e: int(evaluation_set.rows[f"{e}_event"].sum()) for e in ENDPOINTS}


def _with_local_route(
    sets: list[EvaluationSet], candidate: str, bundle: ModelBundle, production: str | None
) -> list[EvaluationSet]:
    """`sets` with the candidate's held-out set replaced by its own patients, validated by
    bootstrap, when it has fewer than `OPTIMISM_HELD_OUT_EVENTS` events for an endpoint."""
    held = next((s for s in sets if s.name == "candidate held-out"), None)
    if held is not None and min(_events(held).values()) >= OPTIMISM_HELD_OUT_EVENTS:
        return sets
    rows = registry.fitted_rows(candidate)
    refit = procedure_of(bundle)
    if rows is None or refit is None:
        return sets
    if production is None:
        local = EvaluationSet(LOCAL_SET, rows, 0, "no production model to compare with")
    else:
        seen = registry.training_patients(production)
        local = _unseen_by(rows, seen, LOCAL_SET, "production")
    if local is None or not _usable(local):
        return sets
    local.refit = refit
    local.note = (
        "the patients the candidate was fitted on, its procedure refitted on bootstrap "
        f"resamples of them (optimism-corrected figures); {local.note}"
    )
    if held is not None:
        local.note += (
            f"; it replaces the candidate's {len(held.rows)} held-out patients "
            f"({', '.join(f'{n} {e.upper()}' for e, n in _events(held).items())} events), "
            f"fewer than {OPTIMISM_HELD_OUT_EVENTS} events for an endpoint"
        )
    return [local, *(s for s in sets if s is not held)]


def _same_rows(first: pd.DataFrame, second: pd.DataFrame) -> bool:
    wanted = ["patient_id", *PATIENT_FIELDS, "modality", *OUTCOME_COLUMNS]
    columns = [c for c in wanted if c in first and c in second]
    if len(first) != len(second) or (set(first.columns) ^ set(second.columns)) & set(wanted):
        return False
    ordered = [f[columns].sort_values("patient_id").reset_index(drop=True) for f in (first, second)]
    return ordered[0].equals(ordered[1])


def _predictions(bundle: ModelBundle, endpoint: str, rows: pd.DataFrame):
    """The primary full-data fit's risk and its survival at the slope's horizon."""
    risk, survival = predict_rows(bundle.models[endpoint][bundle.primary[endpoint]], rows)
    return risk, survival[:, int(SLOPE_HORIZON)]


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _slope_check(set_name: str, endpoint: str, slope: dict, production: dict | None) -> dict:
    return {
        "set": set_name,
        "endpoint": endpoint,
        "check": "calibration_slope_24",
        "candidate": slope["slope"],
        "production": None if production is None else production["slope"],
        "lower": slope["lower"],
        "upper": slope["upper"],
        "limit": list(CALIBRATION_SLOPE_RANGE),
        "passed": slope_overlaps(slope),
        "note": slope["note"],
    }


def _concordance_checks(set_name: str, endpoint: str, figures: dict) -> list[dict]:
    return [
        {
            "set": set_name,
            "endpoint": endpoint,
            "check": name,
            "candidate": entry["candidate"],
            "production": entry["production"],
            "difference": entry["difference"],
            "lower": entry["lower"],
            "upper": entry["upper"],
            "limit": -NON_INFERIORITY_MARGIN,
            "passed": _finite(entry["lower"]) and entry["lower"] > -NON_INFERIORITY_MARGIN,
            "n_resamples": entry["n_resamples"],
        }
        for name, entry in figures.items()
    ]


def _checks(
    evaluation_set: EvaluationSet,
    candidate: ModelBundle,
    production: ModelBundle | None,
    seed: int = 0,
    n_resamples: int = GATE_BOOTSTRAP,
    optimism_resamples: int = OPTIMISM_BOOTSTRAP,
    n_jobs: int = 1,
) -> list[dict]:
    """Per endpoint: ΔC (Harrell, Uno) with paired bootstrap intervals and the candidate's
    calibration slope with its interval, on `evaluation_set`."""
    if evaluation_set.refit is not None:
        return _optimism_checks(
            evaluation_set, candidate, production, seed, optimism_resamples, n_jobs
        )
    checks = []
    for endpoint in ENDPOINTS:
        y = survival_target(evaluation_set.rows, endpoint)
        risk, survival = _predictions(candidate, endpoint, evaluation_set.rows)
        theirs = None
        if production is not None:
            their_risk, their_survival = _predictions(production, endpoint, evaluation_set.rows)
            theirs = slope_with_interval(y, their_survival)
        slope = slope_with_interval(y, survival)
        checks.append(_slope_check(evaluation_set.name, endpoint, slope, theirs))
        if production is None:
            continue
        figures = paired_concordance(y, risk, their_risk, n_resamples=n_resamples, seed=seed)
        checks += _concordance_checks(evaluation_set.name, endpoint, figures)
    return checks


def _optimism_checks(
    evaluation_set: EvaluationSet,
    candidate: ModelBundle,
    production: ModelBundle | None,
    seed: int,
    n_resamples: int,
    n_jobs: int,
) -> list[dict]:
    """The same checks on the candidate's own patients, optimism-corrected."""
    assert evaluation_set.refit is not None
    figures = optimism_corrected(
        evaluation_set.rows, candidate, production, evaluation_set.refit, _predictions,
        n_resamples=n_resamples, seed=seed, n_jobs=n_jobs,
    )  # fmt: skip
    checks = []
    for endpoint, entry in figures.items():
        slope = entry["slope"]
        theirs = None if production is None else {"slope": slope["production"]}
        check = _slope_check(evaluation_set.name, endpoint, slope, theirs)
        checks.append({**check, **_optimism_terms(slope)})
        if production is None:
            continue
        concordance = {name: entry[name] for name in ("harrell_c", "uno_c")}
        for check in _concordance_checks(evaluation_set.name, endpoint, concordance):
            checks.append({**check, **_optimism_terms(concordance[check["check"]])})
    return checks


def _optimism_terms(entry: dict) -> dict:
    return {
        "method": OPTIMISM_METHOD,
        "apparent": entry.get("apparent", entry.get("apparent_difference")),
        "optimism": entry["optimism"],
        "n_resamples": entry["n_resamples"],
        "note": entry["note"],
    }


_C_NAMES = {"harrell_c": "Harrell", "uno_c": "Uno"}


def _failure_text(check: dict) -> str:
    where = f"{check['endpoint'].upper()} on the {check['set']} patients"
    interval = "95 % interval"
    if check.get("method") == OPTIMISM_METHOD:
        interval = "optimism-corrected 95 % interval"
    if check["check"] in _C_NAMES:
        if not _finite(check["lower"]):
            return f"{where}: ΔC ({_C_NAMES[check['check']]}) is not computable"
        return (
            f"{where}: non-inferiority not shown: the lower bound of the {interval} of ΔC "
            f"({_C_NAMES[check['check']]}), {_number(check['lower'])}, is not above "
            f"-{NON_INFERIORITY_MARGIN} (ΔC {_signed(check['difference'])}, candidate "
            f"{_number(check['candidate'])} against production {_number(check['production'])})"
        )
    low, high = CALIBRATION_SLOPE_RANGE
    if not _finite(check["lower"]):
        return f"{where}: calibration slope at 24 months is not computable ({check['note']})"
    return (
        f"{where}: the {interval} of the calibration slope at 24 months, "
        f"{_number(check['lower'])}-{_number(check['upper'])} (slope "
        f"{_number(check['candidate'])}), does not overlap {low}-{high}"
    )


def _signed(value) -> str:
    return f"{value:+.3f}" if _finite(value) else "not computable"


def _number(value) -> str:
    return f"{value:.3f}" if _finite(value) else "not computable"


def _compatible(bundle: ModelBundle, tag: str) -> str | None:
    if tuple(bundle.feature_names) != FEATURE_NAMES:
        return (
            f"{tag} was trained on another patient schema (version {bundle.schema_version}); "
            "the models cannot be compared on the same rows"
        )
    return None


def _usable(evaluation_set: EvaluationSet) -> bool:
    return all(evaluation_set.rows[f"{e}_event"].sum() >= MIN_EVENTS for e in ENDPOINTS)


def _incompatible(
    new: ModelBundle, candidate: str, old: ModelBundle | None, production: str | None
) -> list[str]:
    problems = [_compatible(new, candidate)]
    if old is not None and production is not None:
        problems.append(_compatible(old, production))
    return [problem for problem in problems if problem]


def _judged_sets(candidate: str, new: ModelBundle, production: str | None) -> list[EvaluationSet]:
    """The held-out sets, the candidate's own patients in place of its held-out ones where
    those have fewer than `OPTIMISM_HELD_OUT_EVENTS` events."""
    return _with_local_route(_evaluation_sets(candidate, production), candidate, new, production)


def evaluate_gate(
    candidate: str,
    production: str | None = None,
    *,
    optimism_resamples: int | None = None,
    n_jobs: int = 1,
) -> dict:
    """Evaluate `candidate` against `production` (default: the current production model).

    Parameters
    ----------
    optimism_resamples, n_jobs : int
        Resamples of the optimism-corrected route, where it is taken (default
        :data:`training.gate_optimism.OPTIMISM_BOOTSTRAP`), and the processes that share them
        (the figures do not depend on `n_jobs`).

    Returns
    -------
    dict
        candidate, production, criteria, evaluation_sets (name, method, n_patients, n_excluded,
        events, used, note), checks (set, endpoint, check, candidate, production, limit,
        passed; on the candidate's own patients also method, apparent, optimism), failures
        (sentences), passed, evaluated_at.
    """
    candidate = str(registry.get_model(candidate).tag)
    production = production if production is not None else registry.production_tag()
    if production == candidate:
        production = None
    new = registry.load_bundle(candidate)
    old = registry.load_bundle(production) if production else None
    failures = _incompatible(new, candidate, old, production)
    sets = [] if failures else _judged_sets(candidate, new, production)
    usable = [s for s in sets if _usable(s)]
    resamples = optimism_resamples or gate_optimism.OPTIMISM_BOOTSTRAP
    checks = [
        check
        for s in usable
        for check in _checks(s, new, old, optimism_resamples=resamples, n_jobs=n_jobs)
    ]
    failures += [_failure_text(check) for check in checks if not check["passed"]]
    if not failures and not usable:
        failures.append(
            f"no held-out patients that neither model was trained on with at least "
            f"{MIN_EVENTS} events per endpoint (sets: "
            + (", ".join(f"{s.name} {len(s.rows)} patients" for s in sets) or "none")
            + "); retrain with a larger --holdout-fraction or promote with --force --reason"
        )
    return evaluate.to_jsonable(
        {
            "candidate": candidate,
            "production": production,
            "criteria": CRITERIA,
            "evaluation_sets": [s.describe(s in usable) for s in sets],
            "checks": checks,
            "failures": failures,
            "passed": not failures,
            "verdict": _verdict(not failures, production),
            "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


def compare_on_rows(
    candidate: ModelBundle,
    production: ModelBundle | None,
    rows: pd.DataFrame,
    *,
    seed: int = 0,
    n_resamples: int = GATE_BOOTSTRAP,
    refit: Refit | None = None,
    n_jobs: int = 1,
) -> dict:
    """The gate's checks, failures and verdict for two bundles on `rows` (no registry needed).

    With `refit` (the candidate's procedure), `rows` are the patients the candidate was fitted
    on and the checks are optimism-corrected over `n_resamples` refits; else `rows` are
    held-out patients.
    """
    evaluation_set = EvaluationSet("given", rows, 0, "", refit=refit)
    checks = _checks(
        evaluation_set, candidate, production, seed, n_resamples,
        optimism_resamples=n_resamples, n_jobs=n_jobs,
    )  # fmt: skip
    failures = [_failure_text(check) for check in checks if not check["passed"]]
    return evaluate.to_jsonable(
        {
            "checks": checks,
            "failures": failures,
            "passed": not failures,
            "verdict": _verdict(not failures, "production" if production is not None else None),
        }
    )


CRITERIA = {
    "non_inferiority_margin": NON_INFERIORITY_MARGIN,
    "delta_c": "lower bound of the paired-bootstrap 95 % interval of candidate minus "
    "production, Harrell's C and Uno's C, above -margin",
    "calibration_slope_24": list(CALIBRATION_SLOPE_RANGE),
    "slope_rule": "the candidate's 95 % interval of the calibration slope at 24 months overlaps "
    "the range",
    "bootstrap_resamples": GATE_BOOTSTRAP,
    "uno_tau_months": UNO_TAU,
    "min_events": MIN_EVENTS,
    "model": "each bundle's primary full-data fit per endpoint",
    "few_held_out_events": f"with fewer than {OPTIMISM_HELD_OUT_EVENTS} held-out events for "
    "an endpoint, the candidate's procedure is validated on the patients it was fitted on "
    f"(less any production was) by {OPTIMISM_BOOTSTRAP} bootstrap refits: optimism-corrected "
    "figures with location-shifted intervals (Harrell 1996; Noma et al. 2021), the same limits",
}


def _verdict(passed: bool, production: str | None) -> str:
    low, high = CALIBRATION_SLOPE_RANGE
    rule = (
        f"the lower bound of the 95 % interval of ΔC (Harrell and Uno) is above "
        f"-{NON_INFERIORITY_MARGIN} and the calibration slope's 95 % interval overlaps "
        f"{low}-{high}"
    )
    if production is None:
        rule = f"the calibration slope's 95 % interval overlaps {low}-{high}"
    if passed:
        return f"promoted on non-inferiority: {rule}, for both endpoints on every evaluation set"
    return f"refused: non-inferiority not shown; promotion needs {rule}"


def promote(tag: str, *, force: bool = False, reason: str = "", n_jobs: int = 1) -> dict:
    """Run the gate and move the production pointer to `tag` if it passes (or is forced).

    Parameters
    ----------
    force : bool
        Promote even when the gate refuses; `reason` is then required and recorded.
    reason : str
        Why; recorded in the pointer history with the gate's decision.
    n_jobs : int
        Processes for the gate's bootstrap refits, where it takes that route.

    Returns
    -------
    dict
        The gate decision (see :func:`evaluate_gate`) with `forced`, `reason` and `promoted`.

    Raises
    ------
    GateRefusedError
        When the candidate fails the gate and `force` is not set; production is unchanged.
    """
    if force and not reason.strip():
        raise RegistryError(
            "a forced promotion must say why (--reason TEXT, recorded in the pointer history), "
            "but no reason was given"
        )
    current = registry.production_tag()
    if str(registry.get_model(tag).tag) == current:
        raise RegistryError(f"{current} is already production; nothing to promote")
    decision = evaluate_gate(tag, current, n_jobs=n_jobs)
    decision.update(forced=force and not decision["passed"], reason=reason, promoted=False)
    if not decision["passed"] and not force:
        listed = "\n".join(f"  - {failure}" for failure in decision["failures"])
        raise GateRefusedError(
            f"candidate {decision['candidate']} was refused by the promotion gate; production "
            f"stays {current}:\n{listed}\nTo promote it anyway: netprog promote "
            f'{decision["candidate"]} --force --reason "why"',
            decision,
        )
    registry.set_production(
        decision["candidate"],
        reason=reason or "passed the promotion gate",
        gate={k: decision[k] for k in ("passed", "forced", "failures", "checks")},
        expected_production=current,
    )
    decision["promoted"] = True
    logger.info("production is now %s", decision["candidate"])
    return decision


def _evidence(check: dict) -> str:
    if check["check"] == "calibration_slope_24":
        if not _finite(check["lower"]):
            return "slope not computable"
        return f"95% CI {_number(check['lower'])}-{_number(check['upper'])} vs 0.8-1.25"
    if not _finite(check.get("lower")):
        return "ΔC not computable"
    return (
        f"ΔC {_signed(check['difference'])}, 95% CI {_signed(check['lower'])} to "
        f"{_signed(check['upper'])} vs -{NON_INFERIORITY_MARGIN}"
    )


def checks_table(decision: dict) -> list[list[str]]:
    """The decision's checks as rows: set, endpoint, check, candidate, production, result."""
    return [
        [
            c["set"],
            c["endpoint"],
            c["check"],
            _number(c["candidate"]),
            _number(c["production"]) if c["production"] is not None else "–",
            f"{'pass' if c['passed'] else 'FAIL'}: {_evidence(c)}",
        ]
        for c in decision["checks"]
    ]
