"""Rendering the console: the Jinja2 environment (autoescaped), the filters templates use for
times, and the security headers every console response carries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from governance.identity.roles import Role

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"

# SECURITY: scripts and styles only from our own static files; no framing; forms post only here.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _parse(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def ago(value: str | datetime | None, now: datetime | None = None) -> str:
    """A short relative time: "just now", "5 min ago", "3 d ago", "in 12 d"."""
    moment = _parse(value)
    if moment is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future = seconds < 0
    s = abs(seconds)
    if s < 60:
        return "just now" if not future else "in under a minute"
    for size, unit in ((86400 * 365, "y"), (86400, "d"), (3600, "h"), (60, "min")):
        if s >= size:
            n = int(s // size)
            return f"in {n} {unit}" if future else f"{n} {unit} ago"
    return ""  # unreachable


def when(value: str | datetime | None, *, relative: bool = False) -> Markup:
    """A time as `<time>`: UTC text that works without JavaScript; console.js rewrites it into
    the viewer's own time zone. With `relative`, the age follows in brackets."""
    moment = _parse(value)
    if moment is None:
        return Markup('<span class="muted">—</span>')
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%d %H:%M UTC")
    rel = f' <span class="muted">({escape(ago(utc))})</span>' if relative else ""
    return Markup(f'<time datetime="{escape(utc.isoformat())}" title="{escape(text)}">{escape(text)}</time>{rel}')


def short(value: str | None, n: int = 12) -> str:
    return "" if value is None else (value if len(value) <= n else value[:n] + "…")


def who(label: str | None) -> str:
    """An audit actor label for people: "user:<id>" stays as it is unless the page resolved it."""
    return label or ""


def roles_text(actor: Any) -> str:
    """ "approver of genebody · auditor" for the header."""
    parts = []
    for role, ds in sorted(actor.roles, key=lambda r: (r[0].value, r[1])):
        if role.value == "researcher":
            continue
        parts.append(f"{role.value} of {ds}" if ds != "*" else role.value)
    return " · ".join(parts) or "researcher"


env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html", "svg"]),
                  trim_blocks=True, lstrip_blocks=True)
env.filters["when"] = when
env.filters["ago"] = ago
env.filters["short"] = short
env.globals["static_version"] = str(int(max((p.stat().st_mtime for p in STATIC.glob("*")), default=0)))


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a console page with the session's user, CSRF token and flash message in context."""
    session = getattr(request.state, "console", None)
    context.setdefault("session", session)
    context.setdefault("actor", session.principal.actor if session is not None else None)
    context.setdefault("csrf", session.csrf if session is not None else None)
    context.setdefault("flash", getattr(request.state, "flash", None))
    context.setdefault("nav", template.split("/")[0].removesuffix(".html"))
    actor = context["actor"]
    context.setdefault("roles_text", roles_text(actor) if actor is not None else "")
    context.setdefault("is_auditor", actor is not None and actor.has(Role.AUDITOR))
    idle = request.app.state.workspace.settings.console_idle_seconds
    context.setdefault("idle_text", f"{idle // 60} minute{'s' if idle // 60 != 1 else ''}" if idle >= 60 and idle % 60 == 0
                       else f"{idle} second{'s' if idle != 1 else ''}")
    body = env.get_template(template).render(request=request, **context)
    response = HTMLResponse(body, status_code=status, headers=HEADERS)
    if getattr(request.state, "flash", None) is not None:
        response.delete_cookie("gov_flash", path="/console")
    return response
