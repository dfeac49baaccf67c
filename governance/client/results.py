"""What a batch check gives back, and the sentences that tell a caller what to do about a deny."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from governance.client.errors import AccessDeniedError
from governance.policy.decision import Decision, Reason

# Where a researcher fixes each kind of deny, relative to the service's base URL. Codes not
# listed here (forbidden by the terms, revoked, terminated) have no endpoint that fixes them;
# the decision's own remedy says who to ask.
_WHERE: dict[str, str] = {
    "no_grant": "request it at {base}/v1/requests (POST) or ask a steward",
    "purpose_not_covered": "request a grant for this purpose at {base}/v1/requests (POST) or ask a steward",
    "grant_expired": "ask a steward to renew it, or request again at {base}/v1/requests (POST)",
    "agreement_not_accepted": "accept it at {base}/v1/agreements/{dataset}/accept (POST)",
    "agreement_outdated": "accept the current version at {base}/v1/agreements/{dataset}/accept (POST)",
    "signed_agreement_missing": "upload it at {base}/v1/forms/{dataset} (POST); a steward confirms the signature",
    "email_unverified": "ask for a link at {base}/v1/me/email/verification (POST)",
    "outside_key_scope": "create a key covering this dataset at {base}/v1/me/api-keys (POST), or use another key",
}


def _dataset_of(reason: Reason, resource: str) -> str:
    if reason.terms:
        return reason.terms
    head, sep, _ = resource.partition(":")
    return head if sep and head != "artefact" else "<dataset>"


def advice(decision: Decision, *, resource: str, base_url: str) -> str:
    """One sentence per reason, each saying what happened and what to do: e.g. "you hold no grant
    covering genebody/train40 (no_grant): request it at https://gov.example/v1/requests (POST)
    or ask a steward"."""
    remedies = {r.code.value: r.text for r in decision.remedies}
    parts: list[str] = []
    for reason in decision.reasons:
        code = reason.code.value
        where = _WHERE.get(code)
        if where is not None:
            todo = where.format(base=base_url, dataset=_dataset_of(reason, resource))
        else:
            todo = remedies.get(code, "ask the dataset's steward")
        cited = f" [{reason.rule}]" if reason.rule else ""
        parts.append(f"{reason.message} ({code}{cited}): {todo}")
    return "; ".join(parts) or "denied without a stated reason: ask the dataset's steward"


def denied_message(action: str, purpose: str, denied: Sequence[tuple[str, Decision]], *, total: int, base_url: str,
                   limit: int = 3) -> str:
    """The message of an `AccessDeniedError`: the count, then each distinct decision once with an
    example resource, at most `limit` of them."""
    first_resource, first = denied[0]
    if total == 1 and len(denied) == 1:
        return f"{action} {first_resource} for {purpose} denied: {advice(first, resource=first_resource, base_url=base_url)}"
    distinct: dict[Decision, tuple[str, int]] = {}
    for resource, decision in denied:
        example, n = distinct.get(decision, (resource, 0))
        distinct[decision] = (example, n + 1)
    items = [f"{n} like {example}: {advice(decision, resource=example, base_url=base_url)}"
             for decision, (example, n) in list(distinct.items())[:limit]]
    if len(distinct) > limit:
        items.append(f"and {len(distinct) - limit} more distinct decisions")
    return f"{action} for {purpose} denied for {len(denied)} of {total} resources: " + " | ".join(items)


@dataclass(frozen=True)
class BatchResult:
    """Every checked resource with its decision, in the order given to `check_batch`.

    Iterating gives `(resource, decision)` pairs. A resource listed more than once (in different
    chunks) keeps each occurrence's own decision; `decision_for` answers with the most recent."""

    action: str
    purpose: str
    destination: str | None
    resources: tuple[str, ...] = field(repr=False)
    decisions: tuple[Decision, ...] = field(repr=False)
    base_url: str = field(default="", repr=False)
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.resources) != len(self.decisions):
            raise ValueError(f"{len(self.resources)} resources but {len(self.decisions)} decisions")
        index = self._index
        for i, resource in enumerate(self.resources):
            index[resource] = i  # INVARIANT: the last occurrence wins, the most recent decision

    def __repr__(self) -> str:
        return (f"BatchResult(action={self.action!r}, purpose={self.purpose!r}, checked={self.checked}, "
                f"permitted={self.permitted}, denied={self.denied})")

    def __iter__(self) -> Iterator[tuple[str, Decision]]:
        return zip(self.resources, self.decisions, strict=True)

    def __len__(self) -> int:
        return len(self.resources)

    def __contains__(self, resource: object) -> bool:
        return resource in self._index

    def decision_for(self, resource: str) -> Decision:
        """The decision on `resource`; `KeyError` if it was not in the batch."""
        try:
            return self.decisions[self._index[resource]]
        except KeyError:
            raise KeyError(f"{resource!r} was not in this batch") from None

    @property
    def checked(self) -> int:
        return len(self.resources)

    @property
    def permitted(self) -> int:
        return sum(1 for d in self.decisions if d.permitted)

    @property
    def denied(self) -> int:
        return self.checked - self.permitted

    @property
    def all_permitted(self) -> bool:
        return all(d.permitted for d in self.decisions)

    @property
    def permitted_resources(self) -> list[str]:
        return [r for r, d in self if d.permitted]

    @property
    def denied_resources(self) -> list[str]:
        return [r for r, d in self if not d.permitted]

    def groups(self) -> list[tuple[Decision, list[str]]]:
        """Resources sharing a decision, permits first, each list in input order."""
        out: dict[Decision, list[str]] = {}
        for resource, decision in self:
            out.setdefault(decision, []).append(resource)
        return sorted(out.items(), key=lambda kv: not kv[0].permitted)

    def raise_for_denied(self) -> BatchResult:
        """`AccessDeniedError` naming what was denied and what to do, unless everything was
        permitted; returns the result itself so calls chain."""
        denied = [(r, d) for r, d in self if not d.permitted]
        if denied:
            raise AccessDeniedError(denied_message(self.action, self.purpose, denied, total=self.checked, base_url=self.base_url),
                                    action=self.action, purpose=self.purpose, denied=denied)
        return self
