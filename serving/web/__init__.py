"""The clinician's web form, served by the BentoML service at `/` (see docs/form.md)."""

from __future__ import annotations

from serving.web.app import build_web_app
from serving.web.form import FormField, form_fields

__all__ = ["FormField", "build_web_app", "form_fields", "web_app"]

web_app = build_web_app()
"""The app the service mounts at its root."""
