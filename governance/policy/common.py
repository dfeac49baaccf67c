"""Pieces the evaluator and the artefact decisions share."""

from __future__ import annotations

import re
from dataclasses import dataclass

from governance.policy.compile import CRule
from governance.policy.decision import Note, Obligation, Reason
from governance.types import Action, Destination

ACTIONS = {a.value: a for a in Action}
DESTINATIONS = {d.value: d for d in Destination}
BAD_PATH = re.compile(r"[\x00-\x1f\x7f\\]")
MAX_PATH = 4096
BAD_NAMES = frozenset({"", ".", ".."})
# A file whose origin the manifest does not record may come from any origin its subset lists.
UNRECORDED = frozenset({"\0unrecorded"})


def echo(value: object) -> str:
    """Quote caller input in a message without letting it grow or break lines."""
    text = repr(str(value))
    return text if len(text) <= 80 else text[:77] + "...'"


def valid_path(path: str) -> str | None:
    """None when a dataset-relative path is well-formed, else what is wrong with it."""
    if not path:
        return "the path is empty"
    if len(path) > MAX_PATH:
        return "the path is too long"
    if path[0] == "/":
        return "the path is absolute"
    if path[-1] == "/" or "//" in path:
        return "the path has an empty part"
    if BAD_PATH.search(path):
        return "the path contains a control character or backslash"
    if "." in path and "/." in "/" + path:
        for seg in path.split("/"):
            if seg in (".", ".."):
                return f"the path has a '{seg}' part"
    return None


@dataclass(frozen=True, slots=True)
class TermsOutcome:
    """The subject-independent half of a decision: what the terms say about a request."""

    permits: tuple[CRule, ...]
    forbids: tuple[tuple[CRule, Reason], ...]
    obligations: tuple[Obligation, ...]
    notes: tuple[Note, ...]
