"""Audit: the tamper-evident hash chain, checkpoints, verification (reports come later)."""
