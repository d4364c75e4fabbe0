"""The clinician form's fields, derived from `Patient.model_json_schema()`, and their HTML.

The schema gives each field's type, range, unit, allowed values, whether it is required and
its help text; each field's `model.schema.about` gives the wording of its label, its options
and what leaving it empty means. This module adds only presentation: the section a field sits
in and the one cross-field rule the JSON schema cannot express (a WHO grade or a Ki-67
index). A field added to `Patient` appears in the form without a change here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any, Literal

from model.schema import FIELDS, Patient
from serving.schemas import PrognosisRequest

__all__ = [
    "ALTERNATIVES",
    "FormField",
    "form_fields",
    "form_spec_json",
    "render_fields",
]

Control = Literal["number", "select", "checkbox", "tristate"]

REQUEST_LABELS = {"months_since_treatment": "Months since embolotherapy"}
"""Labels of the request's fields beside the patient (a patient field's label is its
`model.schema.about(name).form_label`)."""

UNITS = {"months_since_treatment": "months"}
"""Units of fields whose schema gives none."""

SECTIONS = (
    ("patient", "Patient and tumour"),
    ("history", "History and systemic therapy"),
    ("treatment", "Embolotherapy"),
)
TREATMENT_FIELDS = ("planned_modality", "months_since_treatment")

ALTERNATIVES = (("who_grade", "ki67_percent"),)
"""Fields shown together: the grade is `who_grade`, else derived from Ki-67, else (neither
recorded) imputed like every field that may be "Not recorded" (`model.unknown_fields`)."""
ALTERNATIVE_LEGEND = "Grade: WHO grade or Ki-67 (neither recorded: imputed)"
REQUIRED_ALTERNATIVES: tuple[tuple[str, ...], ...] = ()
"""Groups of which the page requires one value: none since the grade may be imputed."""
NOT_RECORDED = "Not recorded"

REQUEST_FIELDS = ("months_since_treatment",)
"""Fields of the request beside the patient, taken from `PrognosisRequest`'s schema."""


@dataclass(frozen=True)
class FormField:
    """One control of the form, as the schema defines it.

    `scope` is "patient" for `Patient` fields and "request" for fields sent beside the patient.
    `minimum`/`maximum`/`integer` apply to numbers, `options` to selects ((value, text) pairs,
    the empty value meaning "not given").
    """

    name: str
    label: str
    control: Control
    required: bool
    section: str
    scope: str = "patient"
    help: str = ""
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    default: Any = None

    @property
    def control_id(self) -> str:
        return f"field-{self.name}"

    @property
    def range_text(self) -> str:
        if self.minimum is None or self.maximum is None:
            return ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{_number(self.minimum)}–{_number(self.maximum)}{unit}"


def form_fields() -> tuple[FormField, ...]:
    """Every `Patient` field, then the request's optional fields, in schema order."""
    patient = Patient.model_json_schema()
    request = PrognosisRequest.model_json_schema()
    fields = [
        _field(name, spec, name in patient.get("required", ()), "patient")
        for name, spec in patient["properties"].items()
    ]
    fields += [
        _field(name, request["properties"][name], False, "request") for name in REQUEST_FIELDS
    ]
    return tuple(fields)


def _field(name: str, spec: dict, required: bool, scope: str) -> FormField:
    variants = spec.get("anyOf", [spec])
    nullable = any(v.get("type") == "null" for v in variants)
    value = next(v for v in variants if v.get("type") != "null")
    common = {
        "name": name,
        "label": _label(name, spec),
        "required": required and not nullable,
        "section": _section(name, value),
        "scope": scope,
        "help": spec.get("description", ""),
        "unit": spec.get("unit", value.get("unit", UNITS.get(name))),
        "default": spec.get("default"),
    }
    kind = value.get("type")
    if "enum" in value:
        about = FIELDS.get(name)
        wording = about.options if about is not None else {}
        texts = [(str(v), wording[v].text if v in wording else str(v)) for v in value["enum"]]
        not_given = (about.not_given if about is not None else None) or "Not recorded"
        empty = not_given if nullable else "Choose…"
        return FormField(control="select", options=(("", empty), *texts), **common)
    if kind == "boolean":
        control: Control = "tristate" if nullable else "checkbox"
        options = (("", NOT_RECORDED), ("true", "Yes"), ("false", "No")) if nullable else ()
        return FormField(control=control, options=options, **common)
    if kind in ("integer", "number"):
        return FormField(
            control="number",
            minimum=value.get("minimum"),
            maximum=value.get("maximum"),
            integer=kind == "integer",
            **common,
        )
    raise ValueError(
        f"form field {name!r} must be a number, boolean or choice in the schema, but its type "
        f"is {kind!r}; add a control for it to serving/web/form.py"
    )


def _label(name: str, spec: dict) -> str:
    about = FIELDS.get(name)
    if about is not None and about.form_label:
        return about.form_label
    return REQUEST_LABELS.get(name, spec.get("title") or name.replace("_", " ").capitalize())


def _section(name: str, value: dict) -> str:
    if name in TREATMENT_FIELDS:
        return "treatment"
    if value.get("type") == "boolean":
        return "history"
    return "patient"


def _number(value: float) -> str:
    return f"{value:g}"


def form_spec_json(fields: Iterable[FormField] | None = None) -> str:
    """The fields as JSON for the page's own checks, safe inside a `<script>` element."""
    fields = form_fields() if fields is None else fields
    spec = {
        "fields": [asdict(f) | {"id": f.control_id} for f in fields],
        "alternatives": [list(group) for group in REQUIRED_ALTERNATIVES],
    }
    return json.dumps(spec, ensure_ascii=True).replace("<", "\\u003c")


def render_fields(fields: Iterable[FormField] | None = None) -> str:
    """The form's fieldsets as HTML: one labelled control per field, with help and error slots."""
    fields = tuple(form_fields() if fields is None else fields)
    parts = []
    for section, legend in SECTIONS:
        members = [f for f in fields if f.section == section]
        if not members:
            continue
        parts.append(f'<fieldset class="section" id="section-{section}">')
        parts.append(f"<legend>{escape(legend)}</legend>")
        parts.append('<div class="grid">')
        emitted: set[str] = set()
        for form_field in members:
            if form_field.name in emitted:
                continue
            group = next((g for g in ALTERNATIVES if form_field.name in g), None)
            if group is not None:
                parts.append(_render_alternatives(group, fields))
                emitted.update(group)
            else:
                parts.append(_render_field(form_field))
                emitted.add(form_field.name)
        parts.append("</div></fieldset>")
    return "\n".join(parts)


def _render_alternatives(group: tuple[str, ...], fields: tuple[FormField, ...]) -> str:
    members = [f for f in fields if f.name in group]
    group_id = "group-" + "-".join(group)
    inner = "".join(_render_field(f) for f in members)
    return (
        f'<fieldset class="alternatives wide" id="{group_id}" data-group="{",".join(group)}" '
        f'aria-describedby="error-{group_id}">'
        f"<legend>{escape(ALTERNATIVE_LEGEND)}</legend>"
        f'<div class="pair">{inner}</div>'
        f'<p class="error" id="error-{group_id}" data-error-for="{group_id}" hidden></p>'
        "</fieldset>"
    )


def _render_field(form_field: FormField) -> str:
    name, control_id = form_field.name, form_field.control_id
    help_id, error_id = f"help-{name}", f"error-{name}"
    described = f'aria-describedby="{help_id} {error_id}"'
    # A checkbox always has an answer (unchecked is "no"); `required` would mean "must be ticked".
    required = form_field.required and form_field.control != "checkbox"
    common = (
        f'id="{control_id}" name="{escape(name)}" data-scope="{form_field.scope}" {described}'
        + (' required aria-required="true"' if required else "")
    )
    marker = '<span class="required" aria-hidden="true">*</span>' if required else ""
    unit = (
        f'<span class="visually-hidden"> ({escape(form_field.unit)})</span>'
        if form_field.unit and form_field.control == "number"
        else ""
    )
    label = f'<label for="{control_id}">{escape(form_field.label)}{unit}{marker}</label>'
    help_text = escape(form_field.help)
    if form_field.range_text:
        help_text += f' <span class="range">Allowed {escape(form_field.range_text)}.</span>'
    help_html = f'<p class="help" id="{help_id}">{help_text}</p>'
    error_html = f'<p class="error" id="{error_id}" data-error-for="{escape(name)}" hidden></p>'
    if form_field.control == "checkbox":
        checked = " checked" if form_field.default is True else ""
        return (
            f'<div class="field check" data-field="{escape(name)}">'
            f'<input type="checkbox" value="true" {common}{checked}>{label}'
            f"{help_html}{error_html}</div>"
        )
    if form_field.control in ("select", "tristate"):
        options = "".join(
            f'<option value="{escape(value)}"'
            + (" selected" if _is_default(form_field, value) else "")
            + f">{escape(text)}</option>"
            for value, text in form_field.options
        )
        control = f'<select {common} data-kind="{form_field.control}">{options}</select>'
        return (
            f'<div class="field" data-field="{escape(name)}">{label}{control}'
            f"{help_html}{error_html}</div>"
        )
    return _render_number(form_field, common, label, help_html, error_html)


def _render_number(
    form_field: FormField, common: str, label: str, help_html: str, error_html: str
) -> str:
    bounds = ""
    if form_field.minimum is not None:
        bounds += f' min="{_number(form_field.minimum)}"'
    if form_field.maximum is not None:
        bounds += f' max="{_number(form_field.maximum)}"'
    step = "1" if form_field.integer else "any"
    if not form_field.required and form_field.scope == "patient":
        bounds += f' placeholder="{NOT_RECORDED}"'
    mode = "numeric" if form_field.integer else "decimal"
    unit = (
        f'<span class="unit" aria-hidden="true">{escape(form_field.unit)}</span>'
        if form_field.unit
        else ""
    )
    return (
        f'<div class="field" data-field="{escape(form_field.name)}">{label}'
        f'<div class="with-unit"><input type="number" inputmode="{mode}" step="{step}"'
        f'{bounds} {common} data-kind="number">{unit}</div>{help_html}{error_html}</div>'
    )


def _is_default(form_field: FormField, value: str) -> bool:
    default = form_field.default
    if default is None:
        return value == ""
    return value == (json.dumps(default) if isinstance(default, bool) else str(default))
