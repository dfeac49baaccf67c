"""The admin approval console: server-rendered pages under /console (Jinja2, no JavaScript
needed), over the same `governance` services as the API."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console.render import STATIC


def install(app: FastAPI) -> None:
    from api.console import admin, catalog, pages

    app.include_router(pages.router)
    app.include_router(admin.router)
    app.include_router(catalog.router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
