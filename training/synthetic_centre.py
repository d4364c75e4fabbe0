"""Synthetic centres: the reference population changed in stated ways, with the truth to match.

A real centre differs from the published series it adopts a model from: a different baseline
risk (referral, follow-up schedule, imaging intervals), a different case mix (grades, tumour
burden, which modality its board prefers), sometimes a different effect (a centre whose SIRT
dosimetry or patient selection reverses the modality's effect in one grade). A
:class:`CentreSpec` is a :class:`training.synthetic.CohortSpec` with such differences; passed
to :func:`training.synthetic.simulate_cohort` it yields the centre's patients and their true
(`true_*`) survival under the centre's own model, so model updating can be measured against
the oracle (bench/updating.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from model.schema import BURDEN_CATEGORIES, FEATURE_NAMES, GRADES, MODALITIES
from training.synthetic import CohortSpec, simulate_cohort

__all__ = ["CentreSpec", "centre_spec", "simulate_centre"]


@dataclass(frozen=True)
class CentreSpec(CohortSpec):
    """The reference cohort specification with a centre's differences.

    Parameters
    ----------
    hazard_multiplier : float
        Both baseline hazards (hepatic progression and death) times this factor: the Weibull
        scale becomes ``scale * k ** (-1 / shape)``, so ``H0(t)`` is multiplied by `k` at
        every `t` and the shape is kept.
    effect_multipliers : dict
        ``{design column: factor}``: that column's true log hazard ratio, for progression and
        for death, times `factor` (``-1`` reverses the effect, ``0`` removes it).
    """

    hazard_multiplier: float = 1.0
    effect_multipliers: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (np.isfinite(self.hazard_multiplier) and self.hazard_multiplier > 0):
            raise ValueError(
                f"hazard_multiplier must be a positive number, but got {self.hazard_multiplier!r}"
            )
        unknown = sorted(set(self.effect_multipliers) - set(FEATURE_NAMES))
        if unknown:
            raise ValueError(
                f"effect_multipliers must name design columns ({', '.join(FEATURE_NAMES)}), "
                f"but got {', '.join(unknown)}"
            )

    def baseline(self, endpoint: str) -> tuple[float, float]:
        shape, scale = super().baseline(endpoint)
        return shape, scale * self.hazard_multiplier ** (-1.0 / shape)

    def log_hazard_ratios(self, endpoint: str) -> pd.Series:
        ratios = super().log_hazard_ratios(endpoint).copy()
        for name, factor in self.effect_multipliers.items():
            ratios[name] = ratios[name] * float(factor)
        return ratios


def _shares(given: dict[str, float], allowed, what: str) -> dict[str, float]:
    if set(given) != set(allowed) or any(v < 0 for v in given.values()):
        raise ValueError(
            f"{what} must give a non-negative share for each of {', '.join(allowed)}, "
            f"but got {given!r}"
        )
    total = float(sum(given.values()))
    if total <= 0:
        raise ValueError(f"{what} must not all be zero, but got {given!r}")
    return {k: float(given[k]) / total for k in allowed}


def centre_spec(
    *,
    hazard_multiplier: float = 1.0,
    grade_shares: dict[str, float] | None = None,
    burden_shares: dict[str, float] | None = None,
    modality_log_odds_shift: dict[str, float] | None = None,
    effect_multipliers: dict[str, float] | None = None,
    reference: CohortSpec | None = None,
) -> CentreSpec:
    """A centre that differs from `reference` (the shipped specification) in the stated ways.

    Parameters
    ----------
    hazard_multiplier : float
        Baseline hazard of progression and of death times this factor.
    grade_shares : dict, optional
        ``{"G1": p1, "G2": p2, "G3": p3}``, the centre's WHO grade mix (normalised).
    burden_shares : dict, optional
        Share of each tumour-burden category (:data:`model.schema.BURDEN_CATEGORIES`) within
        every grade (normalised), replacing the reference's grade-specific shares.
    modality_log_odds_shift : dict, optional
        ``{"TAE": a, "SIRT": b}`` added to the log-odds (against TACE) of receiving each
        modality: the centre's modality policy.
    effect_multipliers : dict, optional
        As in :class:`CentreSpec`, e.g. ``{"SIRT_in_G2": -1.0}``.
    """
    reference = reference or CohortSpec.load()
    raw = copy.deepcopy(reference.raw)
    covariates = raw["covariates"]
    if grade_shares is not None:
        covariates["who_grade"]["probabilities"] = _shares(grade_shares, GRADES, "grade_shares")
    if burden_shares is not None:
        shares = _shares(burden_shares, BURDEN_CATEGORIES, "burden_shares")
        covariates["tumor_burden_category"]["by_grade"] = {g: dict(shares) for g in GRADES}
    for modality, shift in (modality_log_odds_shift or {}).items():
        if modality not in MODALITIES[1:]:
            raise ValueError(
                f"modality_log_odds_shift must name {' or '.join(MODALITIES[1:])} (against "
                f"{MODALITIES[0]}), but got {modality!r}"
            )
        raw["modality_assignment"]["intercepts"]["value"][modality] += float(shift)
    return CentreSpec(
        raw,
        reference.modality_effects,
        hazard_multiplier=hazard_multiplier,
        effect_multipliers=dict(effect_multipliers or {}),
    )


def simulate_centre(n: int, seed: int, spec: CentreSpec, *, centre: str = "LOCAL") -> pd.DataFrame:
    """`n` patients of one centre, with their truth under the centre's model (`true_*`).

    Patient ids carry the centre's name, so that they never collide with the reference
    cohort's (the promotion gate matches patients by id).
    """
    cohort = simulate_cohort(n, seed, spec, n_centers=1)
    cohort["center"] = centre
    cohort["patient_id"] = [f"{centre}-{seed}-{i:06d}" for i in range(1, n + 1)]
    return cohort
