"""Unknown fields at prediction: their distribution given the known ones, and the mixture.

A patient may leave an imputable predictor (:data:`model.schema.IMPUTED_QUANTITIES`) unknown.
The model uses each of them only as a category (grade, burden category, a boolean), so the
prognosis is an exact finite mixture: the patient is completed with every likely combination
of the unknown categories, each weighted by its probability given the known fields, and the
answers are mixed (Sperrin et al. 2020: at prediction time, integrate over what is missing
given what is known, never given the outcome). The probabilities come from one multinomial
logistic model per quantity, fitted on the training cohort (completed by MICE where it had
holes, without the outcome) and kept as coefficients only - the bundle holds no patient row.
With one unknown quantity its probabilities are exact; with several, chained Gibbs draws from
the same models give the joint distribution.

The mixture's point values are the probability-weighted means of the completions' values. Its
interval at every horizon, month and median is the mixture's 2.5 and 97.5 % quantiles (each
completion's answer normal with the spread of its own interval), widened where needed to the
envelope of the intervals of every completion with at least :data:`LIKELY` probability: so the
interval is never narrower than the interval of any likely value of the field and contains
every likely value's point prediction. The explanation and the risk percentile are those of the
most probable completion, which the warning says.

Reference
---------
Sperrin M, Martin GP, Sisk R, Peek N. Missing data should be handled differently for
prediction than for description or causal explanation. J Clin Epidemiol. 2020;125:183-7.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special, stats

from model.bundle import MONTH_GRID
from model.endpoint_predictor import CONDITIONAL_MIN_SURVIVAL, conditional_undefined
from model.modality import MONTH_DIGITS, SURVIVAL_DIGITS, _median_entry, median_months
from model.schema import (
    BURDEN_CATEGORIES,
    DESIGN_COLUMNS,
    FIELDS,
    GRADES,
    PATIENT_FIELDS,
    Patient,
    encode,
    patients_frame,
)

__all__ = ["LIKELY", "FieldModel", "PredictionImputer", "mix_prognoses", "served_survival"]

LIKELY = 0.10
"""A value of an unknown field with at least this probability is "likely": its own interval
lies inside the mixture's, and the warning says how much it moves the answer."""
MIN_MIXTURE_WEIGHT = 0.005
"""Combinations less probable than this are dropped (and the rest renormalised)."""
GIBBS_DRAWS, GIBBS_SWEEPS = 400, 6
_Z = float(stats.norm.ppf(0.975))
_VALUE_KEYS = ("value", "survival", "incidence")
_MIXED = ("hpfs", "os", "hepatic_progression")
_NOT_MIXED = ("explanation", "check_model", "conditional")
"""Not mixed with the completions' prior weights: the conditional answer has its own
(:func:`_mix_conditional`)."""


@dataclass(frozen=True)
class FieldModel:
    """The distribution of one unknown quantity given the patient's other predictors.

    Attributes
    ----------
    name : str
        The quantity (`who_grade` for the grade, a boolean field, `tumor_burden_percent`).
    levels : tuple
        The values a completion gives the field, one per category (for burden, the training
        cohort's mean percent within the category).
    level_names : tuple of str
        The categories as the warning names them.
    features : tuple of str
        The design columns the model reads (the patient's other predictors, no modality).
    coef : ndarray, shape = (n_levels, n_features)
    intercept : ndarray, shape = (n_levels,)
    """

    name: str
    levels: tuple
    level_names: tuple[str, ...]
    features: tuple[str, ...]
    coef: np.ndarray
    intercept: np.ndarray

    def probabilities(self, design: pd.DataFrame) -> np.ndarray:
        """P(level | other predictors), shape = (n_rows, n_levels)."""
        logits = design[list(self.features)].to_numpy() @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)


def level_values(name: str, burden_means: dict[str, float]) -> tuple[tuple, tuple[str, ...]]:
    """The completion values and display names of quantity `name`'s categories."""
    if name == "who_grade":
        return tuple(GRADES), tuple(GRADES)
    if name == "tumor_burden_percent":
        names = tuple(f"{c} %" for c in BURDEN_CATEGORIES)
        return tuple(float(burden_means[c]) for c in BURDEN_CATEGORIES), names
    return (False, True), ("no", "yes")


def other_features(name: str) -> tuple[str, ...]:
    """The design columns that model quantity `name`: every patient column but its own."""
    return tuple(
        c.name for c in DESIGN_COLUMNS if c.source not in ("modality", name) and c.within is None
    )


@dataclass
class PredictionImputer:
    """Per imputable quantity, its :class:`FieldModel`; fitted by `training.unknowns_fit`."""

    models: dict[str, FieldModel] = field(default_factory=dict)
    seed: int = 0

    def completions(self, patient: Patient) -> tuple[list[Patient], np.ndarray, list[dict]]:
        """The likely completions of a patient with unknown fields and their probabilities.

        Returns
        -------
        patients : list of Patient
            The patient with each combination of the unknown quantities' values.
        weights : ndarray, shape = (n_completions,)
            Their probabilities given the known fields (summing to 1), most probable first.
        states : list of dict
            Per completion, ``{quantity: level index}``.
        """
        unknown = list(patient.unknown_fields)
        missing = [n for n in unknown if n not in self.models]
        if missing:
            raise KeyError(missing[0])
        rng = np.random.default_rng(self.seed)
        codes = self._draws(patient, unknown, rng)
        combos, counts = np.unique(codes, axis=0, return_counts=True)
        weights = counts / counts.sum()
        if len(unknown) == 1:
            weights = self._exact(patient, unknown[0])
            combos = np.arange(len(weights))[:, None]
        keep = weights >= MIN_MIXTURE_WEIGHT
        combos, weights = combos[keep], weights[keep] / weights[keep].sum()
        order = np.argsort(-weights, kind="stable")
        states = [dict(zip(unknown, map(int, combos[i]), strict=True)) for i in order]
        return [self._complete(patient, s) for s in states], weights[order], states

    def _complete(self, patient: Patient, state: dict[str, int]) -> Patient:
        update = {name: self.models[name].levels[code] for name, code in state.items()}
        return patient.model_copy(update=update)

    def _frame(self, patient: Patient, unknown: list[str], codes: np.ndarray) -> pd.DataFrame:
        """The design of `patient` completed with each row of `codes` (level indices of the
        `unknown` quantities), one row per row of `codes`."""
        n = len(codes)
        frame = pd.DataFrame({name: [value] * n for name, value in patient.model_dump().items()})
        for j, name in enumerate(unknown):
            levels = np.empty(len(self.models[name].levels), dtype=object)
            levels[:] = self.models[name].levels
            frame[name] = levels[codes[:, j]]
        return encode(frame, modality="TACE")

    def _exact(self, patient: Patient, name: str) -> np.ndarray:
        model = self.models[name]
        probabilities = model.probabilities(self._frame(patient, [name], np.zeros((1, 1), int)))
        return probabilities[0]

    def _draws(self, patient: Patient, unknown: list[str], rng) -> np.ndarray:
        """Gibbs draws of the unknown quantities' level indices, shape = (n_draws, n_unknown)."""
        codes = np.zeros((GIBBS_DRAWS, len(unknown)), dtype=int)
        if len(unknown) == 1:
            return codes
        for _ in range(GIBBS_SWEEPS):
            for j, name in enumerate(unknown):
                probabilities = self.models[name].probabilities(
                    self._frame(patient, unknown, codes)
                )
                cumulative = probabilities.cumsum(axis=1)
                codes[:, j] = (rng.random((len(codes), 1)) > cumulative).sum(axis=1)
        return np.minimum(codes, [len(self.models[n].levels) - 1 for n in unknown])


def _mixture_quantile(values, sds, weights, q: float) -> np.ndarray:
    """The `q` quantile of each row's normal mixture, by bisection; shapes (n_rows, n_comp)."""
    low = (values - 6 * sds).min(axis=1)
    high = (values + 6 * sds).max(axis=1)
    for _ in range(40):
        middle = (low + high) / 2
        cdf = (weights * special.ndtr((middle[:, None] - values) / sds)).sum(axis=1)
        low, high = np.where(cdf < q, middle, low), np.where(cdf < q, high, middle)
    return (low + high) / 2


def _mix_finite(triples: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mixed (value, lower, upper) per row of `triples`, shape (n_rows, n_comp, 3)."""
    values, lowers, uppers = triples[..., 0], triples[..., 1], triples[..., 2]
    sds = np.maximum((uppers - lowers) / (2 * _Z), 1e-9)
    w = np.broadcast_to(weights, values.shape)
    likely = weights >= LIKELY
    likely[0] = True
    mixed_low = _mixture_quantile(values, sds, w, 0.025)
    mixed_high = _mixture_quantile(values, sds, w, 0.975)
    lower = np.maximum(np.minimum(mixed_low, lowers[:, likely].min(axis=1)), lowers.min(axis=1))
    upper = np.minimum(np.maximum(mixed_high, uppers[:, likely].max(axis=1)), uppers.max(axis=1))
    return np.column_stack([values @ weights, lower, upper])


def _mix_with_unreached(triple: np.ndarray, weights: np.ndarray) -> list:
    """A median's (value, lower, upper) where some completion's is None: beyond the grid."""
    filled = np.where(np.isnan(triple), np.inf, triple)
    order = np.argsort(filled[:, 0], kind="stable")
    cumulative = np.cumsum(weights[order])
    middle = int(min(int(np.searchsorted(cumulative, 0.5)), len(order) - 1))
    value = filled[int(order[middle]), 0]
    likely = weights >= LIKELY
    likely[0] = True
    lower, upper = filled[likely, 1].min(), filled[likely, 2].max()
    return [None if not np.isfinite(x) else float(x) for x in (value, lower, upper)]


def _retell_medians(mixed: dict) -> None:
    """Rewrite each median's text (and the main median's `extrapolated`) from its mixed values."""
    for endpoint in ("hpfs", "os"):
        block = mixed[endpoint]
        pairs = [(block["median_months"], block["curve"])]
        pairs += [(m["median_months"], m["curve"]) for m in block["modalities"]]
        for entry, curve in pairs:
            keep = {k: entry[k] for k in ("extrapolated",) if k in entry}
            _retell_median(entry, curve, block["event"])
            entry.update(keep)
        main = block["median_months"]
        follow_up = block["max_follow_up_months"]
        main["extrapolated"] = bool(
            follow_up < MONTH_GRID[-1] if main["value"] is None else main["value"] > follow_up
        )


def _retell_median(entry: dict, curve: list[dict], event: str) -> None:
    """The median of a mixture: where the mixed `curve` crosses 0.5 (not the mean of the
    completions' medians), or not reached where it does not; the mixed (outward) bounds are
    kept, widened to hold the value."""
    months = np.array([point["month"] for point in curve], dtype=float)
    crossing = float(median_months(np.array([p["survival"] for p in curve]), months))
    low, high = entry["lower"], entry["upper"]
    if np.isfinite(crossing):
        value = round(crossing, MONTH_DIGITS)
        low = None if low is None else min(low, value)
        high = None if high is None else max(high, value)
    else:
        value, high = None, None
    entry.update(value=value, lower=low, upper=high)
    entry.update(_median_entry(value, low, high, event=event))


def _triple_targets(node, top=_MIXED, inside=False):
    """Every ``{value-key, lower, upper}`` dict under the `top` keys (None: any), with its
    value key, in a fixed order (the same for prognoses of the same shape)."""
    if isinstance(node, dict):
        key = next((k for k in _VALUE_KEYS if k in node), None)
        if key is not None and "lower" in node and "upper" in node:
            yield node, key
            return
        for name, child in node.items():
            if name not in _NOT_MIXED and (inside or top is None or name in top):
                yield from _triple_targets(child, top, True)
    elif isinstance(node, list):
        first = node[0] if node and isinstance(node[0], dict) else {}
        key = next((k for k in _VALUE_KEYS if k in first), None)
        if key is not None and "lower" in first and "upper" in first:
            # A curve: every point is a triple with the same key (the bulk of an answer).
            yield from ((point, key) for point in node)
            return
        for child in node:
            yield from _triple_targets(child, top, True)


def mix_prognoses(prognoses: list[dict], weights: np.ndarray) -> dict:
    """One prognosis from the prognoses of a patient's completions (most probable first).

    Every value with an interval becomes the mixture's (module docstring); everything else is
    the most probable completion's.
    """
    mixed = copy.deepcopy(prognoses[0])
    _mix_nodes(mixed, prognoses, weights, top=_MIXED)
    _retell_medians(mixed)
    return mixed


def _shown_digits(values: np.ndarray) -> np.ndarray:
    """Per row, the decimals (0 to 4) its values are shown with: the fewest that leave every
    finite value of the row unchanged; 1 for a row with none."""
    digits = np.full(len(values), 4)
    settled = np.zeros(len(values), dtype=bool)
    finite = np.isfinite(values)
    for decimals in range(4):
        exact = (np.abs(np.round(values, decimals) - values) < 1e-9) | ~finite
        now = exact.all(axis=1) & ~settled
        digits[now], settled = decimals, settled | now
    digits[~finite.any(axis=1)] = 1
    return digits


def _mix_nodes(mixed: dict, documents: list[dict], weights: np.ndarray, top) -> None:
    """Set every (value, lower, upper) under the `top` keys of `mixed` (None: all) to the
    mixture of `documents`' with `weights`."""
    targets = list(_triple_targets(mixed, top))
    columns = [
        [(t[key], t["lower"], t["upper"]) for t, key in _triple_targets(document, top)]
        for document in documents
    ]
    triples = (
        np.array(
            [
                [[np.nan if v is None else v for v in triple] for triple in column]
                for column in columns
            ],
            dtype=float,
        )
        .reshape(len(documents), len(targets), 3)
        .transpose(1, 0, 2)
    )
    finite = np.isfinite(triples).all(axis=(1, 2))
    results = np.full((len(targets), 3), np.nan)
    if finite.any():
        results[finite] = _mix_finite(triples[finite], weights)
    for row in np.flatnonzero(~finite):
        results[row] = [
            np.nan if v is None else v for v in _mix_with_unreached(triples[row], weights)
        ]
    digits = _shown_digits(triples.reshape(len(targets), -1))
    scale = 10.0**digits
    # Bounds are rounded outwards, so that they still hold every likely value shown.
    lowers = np.floor(results[:, 1] * scale) / scale
    uppers = np.ceil(results[:, 2] * scale) / scale
    for (target, key), point, low, high, shown in zip(
        targets, results[:, 0], lowers, uppers, digits.tolist(), strict=True
    ):
        for name, number in ((key, point), ("lower", low), ("upper", high)):
            target[name] = None if np.isnan(number) else round(float(number), shown)
    _monotone_bands(mixed, top)


def _monotone_bands(node, top=_MIXED, inside=False) -> None:
    """Make every mixed curve's bounds (under the `top` keys, as :func:`_mix_nodes` mixes)
    monotone like the curve, by widening only.

    The mixture's quantiles are taken month by month, so a bound can rise by a rounding step
    where a survival curve falls; each bound is replaced by its running extreme on the wide
    side (an upper survival bound by the highest later value, a lower by the lowest earlier
    one; the reverse for a cumulative incidence).
    """
    if isinstance(node, dict):
        for name, child in node.items():
            if name not in _NOT_MIXED and (inside or top is None or name in top):
                _monotone_bands(child, top, True)
        return
    if not isinstance(node, list):
        return
    first = node[0] if node and isinstance(node[0], dict) else {}
    key = "survival" if "survival" in first else "incidence" if "incidence" in first else None
    if key is None or "month" not in first or "lower" not in first:
        for child in node:
            _monotone_bands(child, top, True)
        return
    lower = np.array([point["lower"] for point in node], dtype=float)
    upper = np.array([point["upper"] for point in node], dtype=float)
    if key == "survival":
        lower, upper = np.minimum.accumulate(lower), np.maximum.accumulate(upper[::-1])[::-1]
    else:
        lower, upper = np.minimum.accumulate(lower[::-1])[::-1], np.maximum.accumulate(upper)
    for point, low, high in zip(node, lower.tolist(), upper.tolist(), strict=True):
        point["lower"], point["upper"] = low, high


def _mix_conditional(mixed: dict, answers: list[dict], weights: np.ndarray, since: float) -> None:
    """The conditional answer of the mixture, per endpoint.

    Given event-free survival to `since`, a completion k is weighted by its posterior
    probability w_k S_k(s) / sum_j w_j S_j(s), so that the mixture's conditional curve is
    sum_k w_k S_k(t) / sum_k w_k S_k(s): the conditional of the mixed curve. Refused, as for a
    patient with every field known, where the mixture's S(s) is below the floor.
    """
    for endpoint in ("hpfs", "os"):
        blocks = [answer[endpoint]["conditional"] for answer in answers]
        starts = np.array([0.0 if b is None else b["survival_at_start"] for b in blocks])
        start = float(weights @ starts)
        if start < CONDITIONAL_MIN_SURVIVAL:
            raise conditional_undefined(endpoint, mixed[endpoint]["event"], since, start)
        posterior = weights * starts / start
        order = [k for k in np.argsort(-posterior, kind="stable") if blocks[k] is not None]
        kept = [blocks[k] for k in order]
        conditional = copy.deepcopy(kept[0])
        _mix_nodes(conditional, kept, posterior[order] / posterior[order].sum(), top=None)
        conditional["survival_at_start"] = round(start, SURVIVAL_DIGITS)
        median = conditional["median_months"]
        _retell_median(median, conditional["curve"], mixed[endpoint]["event"])
        conditional["median_remaining_months"] = (
            None if median["value"] is None else round(median["value"] - since, MONTH_DIGITS)
        )
        mixed[endpoint]["conditional"] = conditional


def field_label(name: str) -> str:
    """How a warning names an imputed quantity."""
    return "WHO grade (and Ki-67)" if name == "who_grade" else FIELDS[name].form_label


def integrate(predict_known, imputer: PredictionImputer | None, patients, months_since) -> list:
    """Prognoses of `patients`, those with unknown fields as mixtures over their completions.

    Parameters
    ----------
    predict_known : callable
        ``(patients, months_since) -> list of dict`` for patients with every field known.
    imputer : PredictionImputer or None
        The bundle's; None for a bundle trained before unknown fields were allowed.
    patients : list of Patient
    months_since : list of (float or None)
        One per patient.
    """
    expansion = _expand(imputer, patients)
    # A completion is asked for its conditional answer whatever its S(s) (floor 0): the floor
    # applies to the mixture (`_mix_conditional`).
    floors = [
        CONDITIONAL_MIN_SURVIVAL if expansion.plans[i] is None else 0.0 for i in expansion.owners
    ]
    answers = predict_known(expansion.patients, [months_since[i] for i in expansion.owners], floors)
    out = []
    for i, (plan, start) in enumerate(zip(expansion.plans, expansion.starts, strict=True)):
        if plan is None:
            out.append(answers[start])
            continue
        weights, states = plan
        answers_i = answers[start : start + len(weights)]
        mixed = mix_prognoses(answers_i, weights)
        if months_since[i] is not None:
            _mix_conditional(mixed, answers_i, weights, months_since[i])
        _describe(mixed, patients[i], imputer, answers_i, weights, states)
        out.append(mixed)
    return out


@dataclass
class _Expansion:
    """Patients expanded for prediction: each complete one as it is, each with unknown fields
    as its likely completions."""

    patients: list = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    """Per expanded entry, the index of the patient it belongs to."""
    starts: list[int] = field(default_factory=list)
    """Per patient, the position of its first entry."""
    plans: list[tuple | None] = field(default_factory=list)
    """Per patient, None if complete, else its completions' (weights, states)."""


def _expand(imputer: PredictionImputer | None, patients) -> _Expansion:
    from model.exceptions import UnknownFieldsUnsupported

    expansion = _Expansion()
    for i, patient in enumerate(patients):
        expansion.starts.append(len(expansion.patients))
        if not patient.unknown_fields:
            expansion.plans.append(None)
            expansion.patients.append(patient)
            expansion.owners.append(i)
            continue
        if imputer is None:
            raise UnknownFieldsUnsupported(patient.unknown_fields)
        completed, weights, states = imputer.completions(patient)
        expansion.plans.append((weights, states))
        expansion.patients.extend(completed)
        expansion.owners.extend([i] * len(completed))
    return expansion


def _python(value):
    """A cohort cell as `Patient` takes it: None for NaN, Python scalars for numpy's."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def served_survival(imputer: PredictionImputer | None, survival_of, rows: pd.DataFrame):
    """Each cohort row's survival as the service serves it, unknown fields integrated over.

    A row with every predictor known is predicted as it is; a row with unknown ones is the
    probability-weighted mean of its likely completions' curves (:meth:`PredictionImputer.
    completions`, the same mixture as a prognosis). For monitoring and benchmarks on registry
    rows, which may have holes that `encode` refuses.

    Parameters
    ----------
    imputer : PredictionImputer or None
        The bundle's; None (a bundle trained before unknown fields were allowed) refuses rows
        with unknown fields.
    survival_of : callable
        ``(frame) -> ndarray (n_rows, n_times)``: the survival of complete rows (a frame with
        the patient fields and `modality`, the modality received).
    rows : DataFrame
        Cohort rows: the patient fields and `modality`.

    Returns
    -------
    ndarray, shape = (n_rows, n_times)
    """
    fields = [name for name in PATIENT_FIELDS if name in rows]
    patients = [
        Patient(**dict(zip(fields, map(_python, values), strict=True)))
        for values in rows[fields].itertuples(index=False, name=None)
    ]
    incomplete = np.flatnonzero([bool(p.unknown_fields) for p in patients])
    if not len(incomplete):
        return survival_of(rows)
    expansion = _expand(imputer, [patients[i] for i in incomplete])
    weights = np.concatenate([plan[0] for plan in expansion.plans if plan is not None])
    owners = incomplete[expansion.owners]
    frame = patients_frame(expansion.patients)
    frame["modality"] = rows["modality"].to_numpy(dtype=object)[owners]
    mixed = survival_of(frame) * weights[:, None]
    out = np.zeros((len(rows), mixed.shape[1]))
    np.add.at(out, owners, mixed)
    complete = np.setdiff1d(np.arange(len(rows)), incomplete)
    if len(complete):
        out[complete] = survival_of(rows.iloc[complete])
    return out


def _describe(mixed, patient, imputer, answers, weights, states) -> None:
    """Say in the answer which fields were imputed and how much they move it."""
    effects = [
        _effect(name, imputer.models[name], answers, weights, states)
        for name in patient.unknown_fields
    ]
    summary = mixed["patient_summary"]
    summary["imputed_fields"] = list(patient.unknown_fields)
    if "who_grade" in patient.unknown_fields:
        summary["grade_source"] = "imputed"
    if "tumor_burden_percent" in patient.unknown_fields:
        summary["burden_category"] = "not recorded (imputed)"
    parts = "; ".join(e["message"] for e in effects)
    mixed["warnings"].insert(
        0,
        {
            "code": "imputed_fields",
            "message": (
                f"Not recorded, imputed from the other fields: {parts}. The answer averages over "
                "these values with their probabilities and its intervals include them; the "
                "explanation is that of the most probable values. Record the field to narrow it."
            ),
            "fields": list(patient.unknown_fields),
            "effects": effects,
        },
    )


def _survival_24(answer: dict, endpoint: str) -> float:
    return float(answer[endpoint]["survival_at"]["24"]["value"])


def _effect(name, model: FieldModel, answers, weights, states) -> dict:
    """One imputed quantity's likely values and the range of 2-year survival across them."""
    levels = np.array([s[name] for s in states])
    probability = np.array([weights[levels == k].sum() for k in range(len(model.levels))])
    likely = [k for k in range(len(model.levels)) if probability[k] >= LIKELY]
    by_level = {
        endpoint: [
            float(np.average([_survival_24(a, endpoint) for a, lv in zip(answers, levels,
                  strict=True) if lv == k], weights=weights[levels == k]))
            for k in likely
        ]
        for endpoint in ("hpfs", "os")
    }  # fmt: skip
    ranges = {e: (min(v), max(v)) for e, v in by_level.items()}
    values = ", ".join(f"{model.level_names[k]} ({probability[k]:.0%})" for k in likely)
    moves = "; ".join(f"2-year {e.upper()} {lo:.0%} to {hi:.0%}" for e, (lo, hi) in ranges.items())
    return {
        "field": name,
        "label": field_label(name),
        "probabilities": {model.level_names[k]: round(float(p), 3) for k, p in
                          enumerate(probability)},
        "survival_24_months_range": {e: [round(lo, 3), round(hi, 3)] for e, (lo, hi) in
                                     ranges.items()},
        "message": f"{field_label(name)} - likely {values}; across these, {moves}",
    }  # fmt: skip
