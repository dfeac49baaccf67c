"""HTTP adapter (FastAPI) over the `governance` core. The app factory arrives with the API issue."""
