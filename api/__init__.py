"""HTTP adapter (FastAPI) over the `governance` core: `api.app:create_app`."""
