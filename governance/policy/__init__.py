"""The policy engine: schema, loader, compiler, evaluator, explanations (each its own stage)."""

from __future__ import annotations

from pathlib import Path

from governance.identity.institutional import InstitutionalClassifier
from governance.policy.compile import CompiledPolicies, compile_policies
from governance.policy.evaluate import Engine
from governance.policy.loader import load_policies


def load_compiled(root: str | Path) -> CompiledPolicies:
    """Load, check and compile a policy directory."""
    return compile_policies(load_policies(root))


def load_engine(root: str | Path, *, classifier: InstitutionalClassifier | None = None) -> Engine:
    """An engine over the policies in `root`."""
    return Engine(load_compiled(root), classifier=classifier)
