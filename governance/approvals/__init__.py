"""Agreements, requests, grants, revocation, termination, waivers, artefacts and decisions
from stored state: the workflow services (DESIGN §2, §3.4)."""
