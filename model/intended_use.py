"""What the models are for and what they cannot say: the model card's intended use and limits.

Here, below training and serving, because both say it: training in the model card stored with
every model, serving in `GET /v1/model`.
"""

from __future__ import annotations

__all__ = ["INTENDED_USE", "LIMITATIONS"]

INTENDED_USE = (
    "Decision support for a multidisciplinary tumour board considering liver-directed "
    "embolotherapy (TACE, TAE or SIRT) for an adult with liver metastases of a neuroendocrine "
    "tumour: expected hepatic progression-free survival (HPFS: hepatic progression or death, "
    "whichever comes first) and overall survival (OS) with their uncertainty, the cumulative "
    "incidence of hepatic progression (death as a competing event), the factors that move "
    "them, and an observational comparison of the three modalities."
)
LIMITATIONS = [
    "The modality comparison comes from non-randomised treatment choices, adjusted only for "
    "the recorded factors; it is not a causal effect.",
    "Survival beyond the training cohort's adequate follow-up is extrapolation.",
    "Intervals are delta-method intervals of a Cox model (log-log scale) - refitted without "
    "penalty where the cohort is large enough not to need shrinkage, otherwise centred on the "
    "penalised, slightly shrunken estimate - or bootstrap percentile intervals where the "
    "boosted model is primary; they leave out unrecorded factors and differences between "
    "centres.",
    "1 - HPFS is not the chance of hepatic progression, because HPFS also ends at death: that "
    "chance is the cumulative incidence of hepatic progression (death as a competing event).",
    "Validation is internal (held-out patients, cross-validation, leave one centre out); an "
    "external validation in the deploying institution is needed before clinical use.",
]
