"""Ingested, encrypted files: ingest, key release and gated reads."""
