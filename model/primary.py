"""The primary survival model as one estimator: inner cross-validation over families, settings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from sksurv.linear_model.coxph import BreslowEstimator
from sksurv.metrics import concordance_index_censored

from model.boosted import BoostedCox
from model.cox_inference import fit_cox_coefficients
from model.exceptions import InvalidEstimatorParameter
from model.penalized import PenalizedCox
from model.splines import RestrictedCubicSplines
from model.survival_base import CoxEstimator

__all__ = ["BOOSTED_GRID", "ENSEMBLE", "Candidate", "PrimarySurvival", "one_se_choice"]

BOOSTED_GRID = {"max_depth": (1, 2, 3), "learning_rate": (0.05, 0.1)}
"""BoostedCox settings searched by inner cross-validation: additive trees (depth 1), one and
two interactions per tree, each at two learning rates (rounds by early stopping). Stated
before any benchmark was run, not tuned on one."""

ENSEMBLE = "ensemble"
STACK_RIDGE = 0.01
"""L2 penalty of the stacking Cox fit: it keeps the weights finite when the members agree."""
COX, BOOSTED = "cox", "boosted"


@dataclass(frozen=True)
class Candidate:
    """One model the inner cross-validation scores."""

    name: str
    family: str
    splines: bool = False
    params: dict = field(default_factory=dict)

    def make(self, seed: int, relax) -> CoxEstimator:
        """A fresh estimator of this candidate."""
        if self.family == COX:
            return PenalizedCox(random_state=seed, relax=relax)
        return BoostedCox(random_state=seed, **self.params)


def one_se_choice(fold_c: dict[str, np.ndarray], preferred: list[str]) -> str:
    """The best `preferred` model unless another beats it by more than one standard error.

    A one-standard-error rule (Breiman et al. 1984; Hastie et al., *Elements of Statistical
    Learning*, 7.10) on Harrell's C per fold: among `preferred` (the Cox family, whose analytic
    intervals have measured coverage) the best mean is kept unless the best of the others is
    higher by more than the standard error of their paired per-fold difference.
    """
    means = {name: float(np.nanmean(c)) for name, c in fold_c.items()}
    best_preferred = max(preferred, key=means.__getitem__)
    others = [name for name in fold_c if name not in preferred]
    if not others:
        return best_preferred
    best_other = max(others, key=means.__getitem__)
    difference = fold_c[best_other] - fold_c[best_preferred]
    difference = difference[np.isfinite(difference)]
    se = float(difference.std(ddof=1) / np.sqrt(difference.size)) if difference.size > 1 else 0.0
    return best_other if means[best_other] - means[best_preferred] > se else best_preferred


def _harrell(event, time, risk) -> float:
    if not event.any():
        return float("nan")
    return float(concordance_index_censored(event, time, risk)[0])


def _fit_predict(candidate, X, Xs, y, train, test, seed, relax):
    """Fit `candidate` on `train`; its log hazard on the training and the test rows."""
    design = Xs if candidate.splines else X
    model = candidate.make(seed, relax).fit(design[train], y[train])
    return model.predict(design[train]), model.predict(design[test])


def _standardised(train_scores, scores):
    """Each member's score standardised by its training spread, shape = (n_samples, n_members)."""
    return np.column_stack(
        [
            (s - t.mean()) / (t.std() if t.std() > 0 else 1.0)
            for t, s in zip(train_scores, scores, strict=True)
        ]
    )


def stacking_weights(oof_z, event, time):
    """Weights of the members' standardised out-of-fold scores: a Cox fit on them, none negative.

    The weights carry the scale as well as the mix, so the stacked log hazard is calibrated
    out of fold; a member with a negative weight is dropped and the others refitted.
    """
    keep = np.ones(oof_z.shape[1], dtype=bool)
    while keep.any():
        weights = np.zeros(oof_z.shape[1])
        weights[keep] = fit_cox_coefficients(oof_z[:, keep], event, time, ridge=STACK_RIDGE)
        if (weights[keep] >= 0).all():
            return weights
        keep &= weights > 0
    return np.zeros(oof_z.shape[1])


class PrimarySurvival(CoxEstimator):
    """Chooses, by inner cross-validation, the survival model that training makes primary.

    The candidates are :class:`PenalizedCox` on the design matrix as given, PenalizedCox on
    the design with restricted cubic splines of its continuous columns
    (:class:`~model.splines.RestrictedCubicSplines`; when it has any), :class:`BoostedCox`
    at each setting of `boosted_grid` (raw columns), and, with `ensemble`, a stack of the best
    Cox and the best boosted candidate: their log hazards, each standardised by its spread on
    its own training rows, weighted by a Cox fit on their out-of-fold values
    (:func:`stacking_weights`), so that the weights, learnt out of fold, carry mix and scale.
    Every candidate is fitted on the same `cv` stratified folds and scored by Harrell's C on
    each fold's test rows (the stack with its out-of-fold weights). With `prefer_cox`, the
    best Cox candidate is chosen unless the stack beats it by more than one standard error
    (:func:`one_se_choice`); a boosted model alone is then never primary, only through the
    stack (which can weight it alone): with the grid's many boosted settings, the best of them
    in inner CV is the luckiest as much as the best (on veterans, 137 patients, it beat the Cox
    family by more than one SE in inner CV and lost by 0.04 on the test rows). Without
    `prefer_cox`, the highest mean C of every candidate wins. The choice is refitted on all
    rows and gets a Breslow baseline on its training log hazard, so its curves are proper
    survival functions.

    The estimator gives curves, not intervals: only the Cox family's delta-method intervals
    have measured coverage (``bench/coverage.py``), which is why the training pipeline keeps
    its interval-bearing primary a Cox model (see ``docs/architecture.md``).

    Parameters
    ----------
    boosted_grid : dict of {str: sequence}, default: BOOSTED_GRID
        BoostedCox parameters, every combination tried.
    splines : bool, default: True
        Also try the Cox family with splines of the continuous columns.
    ensemble : bool, default: True
        Also try the best Cox and boosted candidates averaged.
    prefer_cox : bool, default: True
        Keep the best Cox candidate unless another is better by more than one SE.
    cv : int, default: 5
        Inner stratified-by-event folds.
    relax : bool or "auto", default: False
        Passed to every PenalizedCox.
    keep_families : bool, default: False
        Also keep the best Cox and the best boosted candidate, refitted on all rows, as
        ``family_estimators_`` (the benchmark scores each family alone with them).
    random_state : int or None, default: None
        Seeds the folds and every candidate.
    n_jobs : int or None, default: None
        Folds x candidates fitted in parallel by joblib.

    Attributes
    ----------
    choice_ : str
        The chosen candidate's name (or ``"ensemble"``).
    cv_results_ : dict of {str: ndarray, shape = (cv,)}
        Harrell's C of each candidate on each inner fold.
    estimators_ : list of CoxEstimator
        The refitted member(s) of the choice.
    baseline_ : BreslowEstimator
        Baseline hazard of the chosen model's training log hazard.
    """

    def __init__(
        self,
        *,
        boosted_grid=None,
        splines=True,
        ensemble=True,
        prefer_cox=True,
        cv=5,
        relax=False,
        keep_families=False,
        random_state=None,
        n_jobs=None,
    ):
        self.boosted_grid = boosted_grid
        self.splines = splines
        self.ensemble = ensemble
        self.prefer_cox = prefer_cox
        self.cv = cv
        self.relax = relax
        self.keep_families = keep_families
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _candidates(self, with_splines: bool) -> list[Candidate]:
        grid = BOOSTED_GRID if self.boosted_grid is None else self.boosted_grid
        names = sorted(grid)
        candidates = [Candidate("cox", COX)]
        if with_splines:
            candidates.append(Candidate("cox_splines", COX, splines=True))
        for values in itertools.product(*(grid[n] for n in names)):
            params = dict(zip(names, values, strict=True))
            label = ",".join(f"{n}={v}" for n, v in params.items())
            candidates.append(Candidate(f"boosted({label})", BOOSTED, params=params))
        return candidates

    def _inner_cv(self, X, Xs, y, event, time, candidates, seed):
        if not (isinstance(self.cv, int) and self.cv >= 2):
            raise InvalidEstimatorParameter(f"`cv` must be an integer >= 2, but got {self.cv!r}.")
        folds = list(StratifiedKFold(self.cv, shuffle=True, random_state=seed).split(X, event))
        fitted = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_predict)(c, X, Xs, y, train, test, seed, self.relax)
            for train, test in folds
            for c in candidates
        )
        scores: dict[str, list] = {c.name: [] for c in candidates}
        for k, c in enumerate(itertools.product(range(len(folds)), candidates)):
            scores[c[1].name].append(fitted[k])
        return folds, scores

    def _score_folds(self, folds, scores, event, time, candidates):
        fold_c = {
            name: np.array(
                [
                    _harrell(event[test], time[test], predicted[1])
                    for (_, test), predicted in zip(folds, per_fold, strict=True)
                ]
            )
            for name, per_fold in scores.items()
        }
        members = self._ensemble_members(fold_c, candidates)
        weights = None
        if members:
            oof = np.empty((len(event), len(members)))
            for k, (_, test) in enumerate(folds):
                train_scores = [scores[m][k][0] for m in members]
                oof[test] = _standardised(train_scores, [scores[m][k][1] for m in members])
            weights = stacking_weights(oof, event, time)
            fold_c[ENSEMBLE] = np.array(
                [_harrell(event[test], time[test], oof[test] @ weights) for _, test in folds]
            )
        return fold_c, members, weights

    def _ensemble_members(self, fold_c, candidates) -> list[str]:
        if not self.ensemble:
            return []
        best = []
        for family in (COX, BOOSTED):
            names = [c.name for c in candidates if c.family == family]
            if names:
                best.append(max(names, key=lambda n: np.nanmean(fold_c[n])))
        return best if len(best) == 2 else []

    def fit(self, X, y):
        """Score every candidate by inner cross-validation, refit the choice on all rows.

        Parameters
        ----------
        X : array-like, shape = (n_samples, n_features)
            Finite numeric design matrix.
        y : structured array, shape = (n_samples,)
            Event indicator and time (> 0), as built by :meth:`sksurv.util.Surv.from_arrays`.

        Returns
        -------
        self : PrimarySurvival
        """
        X = self._validate_features(X, reset=True)
        event, time = self._validate_target(X, y, allow_time_zero=False)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.splines_ = RestrictedCubicSplines().fit(X) if self.splines else None
        with_splines = self.splines_ is not None and bool(self.splines_.knots_)
        Xs = self._with_splines(X) if with_splines else X
        candidates = self._candidates(with_splines)
        folds, scores = self._inner_cv(X, Xs, y, event, time, candidates, seed)
        self.cv_results_, members, weights = self._score_folds(
            folds, scores, event, time, candidates
        )
        cox_names = [c.name for c in candidates if c.family == COX]
        if self.prefer_cox:
            contest = {n: c for n, c in self.cv_results_.items() if n in cox_names or n == ENSEMBLE}
            self.choice_ = one_se_choice(contest, cox_names)
        else:
            self.choice_ = max(self.cv_results_, key=lambda n: np.nanmean(self.cv_results_[n]))
        by_name = {c.name: c for c in candidates}
        chosen = members if self.choice_ == ENSEMBLE else [self.choice_]
        self.candidates_ = [by_name[name] for name in chosen]
        self.estimators_ = [self._refit(c, X, Xs, y, seed) for c in self.candidates_]
        self.family_estimators_ = self._families(candidates, X, Xs, y, seed)
        self._fit_baseline(X, event, time, weights)
        return self

    def _with_splines(self, X):
        if self.splines_ is None:
            raise InvalidEstimatorParameter("a spline candidate needs `splines=True`")
        return self.splines_.transform(X)

    def _refit(self, candidate, X, Xs, y, seed):
        return candidate.make(seed, self.relax).fit(Xs if candidate.splines else X, y)

    def _families(self, candidates, X, Xs, y, seed) -> dict[str, CoxEstimator]:
        if not self.keep_families:
            return {}
        refitted = dict(zip((c.name for c in self.candidates_), self.estimators_, strict=True))
        families = {}
        self.family_candidates_ = {}
        for family in (COX, BOOSTED):
            names = [c.name for c in candidates if c.family == family]
            best = max(names, key=lambda n: np.nanmean(self.cv_results_[n]))
            candidate = next(c for c in candidates if c.name == best)
            self.family_candidates_[family] = candidate
            families[family] = (
                refitted[best] if best in refitted else self._refit(candidate, X, Xs, y, seed)
            )
        return families

    def family_input(self, family: str, X):
        """`X` as the kept best candidate of `family` takes it (with spline terms or not)."""
        check_is_fitted(self, "family_candidates_")
        X = self._validate_features(X, reset=False)
        return self._with_splines(X) if self.family_candidates_[family].splines else X

    def _fit_baseline(self, X, event, time, weights):
        self.train_spread_ = []
        self.weights_ = np.ones(1)
        if self.choice_ == ENSEMBLE:
            train_scores = [self._member_score(i, X) for i in range(len(self.estimators_))]
            self.train_spread_ = [(float(s.mean()), float(s.std() or 1.0)) for s in train_scores]
            self.weights_ = weights
        self.baseline_ = BreslowEstimator().fit(self._log_hazard(X), event, time)
        self.unique_times_ = self.baseline_.unique_times_

    def _member_score(self, i, X):
        design = self._with_splines(X) if self.candidates_[i].splines else X
        return self.estimators_[i].predict(design)

    def _log_hazard(self, X):
        if self.choice_ != ENSEMBLE:
            return self._member_score(0, X)
        z = [
            (self._member_score(i, X) - mean) / spread
            for i, (mean, spread) in enumerate(self.train_spread_)
        ]
        return np.column_stack(z) @ self.weights_

    def predict(self, X):
        """Log relative hazard of the chosen model; higher means riskier.

        Parameters
        ----------
        X : array-like, shape = (n_samples, n_features)

        Returns
        -------
        risk_score : ndarray, shape = (n_samples,)
        """
        check_is_fitted(self, "estimators_")
        return self._log_hazard(self._validate_features(X, reset=False))
