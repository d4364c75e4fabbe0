"""What a patient field carries beside its type: wording, reference level and cut-offs.

The kinds of :mod:`model.schema`'s field metadata: :class:`About` on every `Patient` field,
:class:`Option` for each allowed value of a choice, :class:`Bands` for a number the model
uses as categories. Read a field's metadata with :func:`model.schema.about`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["About", "Bands", "Option"]


@dataclass(frozen=True)
class Bands:
    """A number cut into categories at fixed points, as the papers define them.

    Parameters
    ----------
    cuts : tuple of float, shape = (n_levels - 1,)
        The cut-offs, increasing.
    equal_goes_up : tuple of bool, shape = (n_levels - 1,)
        Per cut-off, whether a value equal to it falls in the category above it.
    names : tuple of str, optional
        The categories' names, lowest first; by default their ranges (``"<25"``, ``"25-50"``,
        ``">75"``).
    """

    cuts: tuple[float, ...]
    equal_goes_up: tuple[bool, ...]
    names: tuple[str, ...] = ()

    @property
    def levels(self) -> tuple[str, ...]:
        """The categories, lowest first."""
        return self.names or tuple(self._range(i) for i in range(len(self.cuts) + 1))

    def _range(self, i: int, unit: str = "", dash: str = "-") -> str:
        if i == 0:
            return f"<{self.cuts[0]:g}{unit}"
        if i == len(self.cuts):
            return f">{self.cuts[-1]:g}{unit}"
        return f"{self.cuts[i - 1]:g}{dash}{self.cuts[i]:g}{unit}"

    def positions(self, values: Any) -> np.ndarray:
        """Category index per value, shape = (n_values,); a NaN counts as the lowest."""
        numbers = np.asarray(values, dtype=float)
        position: np.ndarray = np.zeros(numbers.shape, dtype=int)
        for cut, up in zip(self.cuts, self.equal_goes_up, strict=True):
            position += numbers >= cut if up else numbers > cut
        return position

    def categorise(self, values: Any) -> np.ndarray:
        """Category name per value, shape = (n_values,), object dtype; None where NaN."""
        numbers = np.asarray(values, dtype=float)
        names = np.asarray(self.levels, dtype=object)[self.positions(numbers)]
        names[np.isnan(numbers)] = None
        return names

    def rule(self, unit: str = "", dash: str = "-") -> str:
        """The cut-offs in words, e.g. ``"<3 % G1, 3-20 % G2, >20 % G3"`` with unit " %"."""
        if not self.names:
            return ", ".join(self._range(i, dash=dash) for i in range(len(self.levels))) + unit
        return ", ".join(
            f"{self._range(i, unit, dash)} {name}" for i, name in enumerate(self.levels)
        )


@dataclass(frozen=True)
class Option:
    """The wording of one allowed value of a choice field.

    Parameters
    ----------
    text : str
        As the form shows it.
    explained : str, optional
        As an explanation names the patient's value; by default `text` in lower case.
    table : str, optional
        As the hazard-ratio table names the level (Table 1's wording); by default the value.
    """

    text: str
    explained: str = ""
    table: str = ""


@dataclass(frozen=True)
class About:
    """What every surface needs to know about one patient field, beside its type and range.

    Parameters
    ----------
    label : str, optional
        The form's label; by default `factor` with a capital letter.
    factor : str, optional
        The factor's name in explanations; None for a field that is not a predictor.
    options : mapping of str to Option, optional
        The wording of each allowed value of a choice field.
    reference : str, optional
        The reference level of a categorical predictor (its value, or its derived category).
    yes, no : str, optional
        How an explanation names a boolean's true and false values; by default `factor` and
        "no " + `factor`.
    table : tuple of (factor, level, reference), optional
        The hazard-ratio table's wording of a boolean's factor and levels (Table 1's words);
        by default (`factor`, "yes", "no").
    bands : Bands, optional
        The cut-offs of the category the model uses in place of the number.
    not_given : str, optional
        What leaving an optional choice empty means, where "Not recorded" would mislead.
    examples : tuple, optional
        The field's value in each of the API's example patients (None: left out). Booleans
        without examples are False in all of them.
    imputable : bool, optional
        Whether the field may be unknown (empty in a cohort, null, absent or "Not recorded" at
        prediction): training imputes it by chained equations, a prognosis integrates over it
        (:mod:`model.unknown_fields`).
    """

    label: str = ""
    factor: str | None = None
    options: Mapping[str, Option] = field(default_factory=dict)
    reference: str | None = None
    yes: str = ""
    no: str = ""
    table: tuple[str, str, str] | None = None
    bands: Bands | None = None
    not_given: str | None = None
    examples: tuple[Any, ...] = ()
    imputable: bool = False

    @property
    def is_predictor(self) -> bool:
        """Whether the field enters the design matrix (itself or through a derived value)."""
        return self.factor is not None

    @property
    def form_label(self) -> str:
        """The label of the form, the dictionary and other places that name the field."""
        if self.label:
            return self.label
        return (self.factor or "")[:1].upper() + (self.factor or "")[1:]

    @property
    def yes_no(self) -> tuple[str, str]:
        """How an explanation names a boolean's (true, false) values."""
        return self.yes or str(self.factor), self.no or f"no {self.factor}"

    @property
    def table_levels(self) -> tuple[str, str, str]:
        """The hazard-ratio table's (factor, level, reference) wording of a boolean."""
        return self.table or (str(self.factor), "yes", "no")
