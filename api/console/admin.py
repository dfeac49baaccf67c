"""Console pages for licensors' actions and oversight: terminations (with re-authentication),
waivers with their letters, and the audit chain's state."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/console", include_in_schema=False)
