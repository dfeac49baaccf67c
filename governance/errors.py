"""One error tree for the core.

A deny is a value (`governance.policy.decision.Decision`); an exception is a bug or bad input.
Every message is one sentence saying what is wrong and where.
"""

from __future__ import annotations

import os
from pathlib import Path


class GovernanceError(Exception):
    """Base of every error the core raises on purpose. `exit_code` is the CLI's exit status."""

    exit_code = 2


class FileFormatError(GovernanceError):
    """A file we read (policy, scenario) is malformed; renders as `path:line:column: message`."""

    def __init__(self, path: str | Path, msg: str, *, line: int = 1, column: int = 1) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.msg = msg
        super().__init__(self.render())

    def render(self) -> str:
        return f"{display_path(self.path)}:{self.line}:{self.column}: {self.msg}"


class YamlError(FileFormatError):
    """The YAML itself is refused (syntax, duplicate key, tag, alias bomb, size, depth)."""


class PolicyFileError(FileFormatError):
    """A policy file is well-formed YAML but says something wrong."""


class ScenarioFileError(FileFormatError):
    """A scenario file does not follow the format of shared/acceptance/README.md."""


class PolicyLoadError(GovernanceError):
    """Loading a policy directory failed; holds every problem found, each with its position."""

    def __init__(self, problems: list[FileFormatError]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.path, p.line, p.column))
        first = self.problems[0].render() if self.problems else "no problems recorded"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first + more)


class PolicyDirectoryError(GovernanceError):
    """The policy directory is missing or lacks a required file."""


class LineageError(GovernanceError):
    """A lineage graph is invalid (cycle, unknown node)."""


class ClassifierConfigError(GovernanceError):
    """An allow or deny list entry for institutional e-mail is unusable."""


class WorkflowError(GovernanceError):
    """A workflow operation was asked with input that cannot be right (unknown subset, no reason)."""


class ForbiddenError(GovernanceError):
    """The actor lacks the role this operation needs."""

    exit_code = 3


class NotFoundError(GovernanceError):
    """The named user, request, grant or record does not exist."""

    exit_code = 4


class ConflictError(GovernanceError):
    """The record changed under us (another approver decided first); nothing was written."""

    exit_code = 5


def display_path(path: str | Path) -> str:
    """Show a path relative to the working directory when it lies below it."""
    p = str(path)
    try:
        rel = os.path.relpath(p)
    except ValueError:
        return p
    return p if rel.startswith("..") else rel
