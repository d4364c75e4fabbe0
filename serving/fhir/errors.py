"""What is wrong with a FHIR input, item by item, worded without any of its values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.operationoutcome import OperationOutcome

from serving.exceptions import ServingError

__all__ = ["FhirBundleIncomplete", "FhirInputError", "FhirIssue", "FhirValidationError"]


@dataclass(frozen=True)
class FhirIssue:
    """One problem with a FHIR input, worded without any of its values.

    Attributes
    ----------
    code : str
        The OperationOutcome issue type: structure, invalid, value, required, code-invalid
        or conflict.
    message : str
        What must hold, what was found (never a value) and what would fix it.
    field : str, optional
        The patient field concerned.
    expression : str, optional
        Where, as a FHIRPath-like location (``Bundle.entry[3].resource.valueQuantity``).
    codes : tuple of dict
        For a missing item, the codings that would supply it (``system``, ``code``,
        ``display``).
    """

    code: str
    message: str
    field: str | None = None
    expression: str | None = None
    codes: tuple[dict, ...] = ()

    def outcome_issue(self) -> dict:
        """The issue as an OperationOutcome.issue element."""
        issue: dict[str, Any] = {
            "severity": "error",
            "code": self.code,
            "diagnostics": self.message,
        }
        details: dict[str, Any] = {}
        if self.field is not None:
            details["text"] = self.field
        if self.codes:
            details["coding"] = [dict(c) for c in self.codes]
        if details:
            issue["details"] = details
        if self.expression is not None:
            issue["expression"] = [self.expression]
        return issue


class FhirInputError(ServingError):
    """A FHIR input the service cannot turn into a patient; `issues` says why, item by item."""

    status_code = 400
    summary = "the FHIR input is invalid"

    def __init__(self, issues: Sequence[FhirIssue]):
        self.issues = tuple(issues)
        super().__init__(
            f"{self.summary} ({len(self.issues)} issue(s)): "
            + "; ".join(issue.message for issue in self.issues)
        )

    def operation_outcome(self) -> dict:
        """The issues as a FHIR OperationOutcome (validated with fhir.resources)."""
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [issue.outcome_issue() for issue in self.issues],
        }
        return OperationOutcome.model_validate(outcome).model_dump(mode="json", exclude_none=True)

    def kinds(self) -> str:
        """The issue types, for a log line that holds no value."""
        return ", ".join(sorted({issue.code for issue in self.issues}))


class FhirValidationError(FhirInputError):
    """Resources that are not valid FHIR R4: each issue names the resource and the element."""

    status_code = 400
    summary = "the FHIR resources are not valid FHIR R4"


class FhirBundleIncomplete(FhirInputError):
    """Valid FHIR that lacks, contradicts or exceeds what the patient needs (one issue each)."""

    status_code = 422
    summary = "the FHIR resources do not describe a patient the model can answer for"
