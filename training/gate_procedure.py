"""What produced a candidate model, as a function the promotion gate repeats on resamples.

An update is repeated as the whole update from its base model; a training run as its registered
fit (:func:`training.fit.fit_bundle`), the primary family per endpoint kept and each family's
hyperparameters tuned again on the resample. The cross-validated choice of family is not
repeated: that would multiply the cost by the folds, for a choice between two families.
"""

from __future__ import annotations

import warnings

from sklearn.exceptions import ConvergenceWarning

from model.bundle import ModelBundle
from store import registry
from training.exceptions import RegistryError
from training.fit import fit_bundle
from training.gate_optimism import Refit

__all__ = ["procedure_of"]


def procedure_of(bundle: ModelBundle) -> Refit | None:
    """What produced `bundle`, to be repeated on resamples: its update or its training fit.

    A training run is repeated as its registered fit: the primary family per endpoint kept,
    each family's hyperparameters tuned again on the resample (not the cross-validated choice
    of family, which would multiply the cost by the folds). None when an update's base model is
    no longer in the store.
    """
    metadata = bundle.metadata
    label = metadata["trained_on"]
    if "updating" in metadata:
        from training.update_run import update_bundle

        try:
            base = registry.load_bundle(metadata["updating"]["from"])
        except RegistryError:
            return None
        return lambda rows, seed: _quietly(
            lambda: update_bundle(base, rows, seed=seed, cohort_label=label)[0]
        )
    params = {
        family: {k: v for k, v in given.items() if k != "device"}
        for family, given in (metadata.get("estimator_params") or {}).items()
    }
    return lambda rows, seed: _quietly(
        lambda: fit_bundle(
            rows,
            seed=seed,
            n_bootstrap=0,
            cohort_label=label,
            primary=bundle.primary,
            primary_ensembles_only=True,
            estimator_params=params,
        )
    )


def _quietly(fit):
    """`fit()` without the warnings a resample is entitled to: a penalised path that zeroes
    every coefficient, or stops short of convergence, on a draw with little signal or many
    repeated patients. Such a fit is still what the procedure gives, so it is scored."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "all coefficients are zero", UserWarning)
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        return fit()
