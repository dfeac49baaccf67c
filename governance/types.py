"""Stable vocabulary shared by every layer: actions, destinations, effects, reason codes."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What a subject asks to do (DESIGN §2)."""

    DISCOVER = "discover"
    READ = "read"
    DERIVE = "derive"
    COPY_INTERNAL = "copy_internal"
    EXPORT = "export"
    PUBLISH_DERIVATIVE = "publish_derivative"


class Destination(StrEnum):
    """Where an export goes; `internal` is the same organisation and site."""

    INTERNAL = "internal"
    ORGANISATION = "organisation"
    THIRD_PARTY = "third_party"
    PUBLIC = "public"


class Effect(StrEnum):
    PERMIT = "permit"
    FORBID = "forbid"
    DENY = "deny"


class Layer(StrEnum):
    """Whether a rule speaks of the licensed data itself or of data derived from it."""

    DATA = "data"
    DERIVED = "derived"


class ReasonCode(StrEnum):
    """Stable reason codes (shared/acceptance/README.md). Never rename one; add new ones."""

    NO_GRANT = "no_grant"
    GRANT_EXPIRED = "grant_expired"
    GRANT_REVOKED = "grant_revoked"
    ACCESS_TERMINATED = "access_terminated"
    PURPOSE_NOT_COVERED = "purpose_not_covered"
    PURPOSE_FORBIDDEN = "purpose_forbidden"
    ACTION_FORBIDDEN = "action_forbidden"
    NOT_GRANTED_BY_TERMS = "not_granted_by_terms"
    INHERITED_RESTRICTION = "inherited_restriction"
    DESTINATION_FORBIDDEN = "destination_forbidden"
    EMAIL_UNVERIFIED = "email_unverified"
    EMAIL_NOT_INSTITUTIONAL = "email_not_institutional"
    AGREEMENT_NOT_ACCEPTED = "agreement_not_accepted"
    AGREEMENT_OUTDATED = "agreement_outdated"
    SIGNED_AGREEMENT_MISSING = "signed_agreement_missing"
    NO_TERMS_RECORDED = "no_terms_recorded"
    UNKNOWN_RESOURCE = "unknown_resource"
    UNKNOWN_PURPOSE = "unknown_purpose"
    UNKNOWN_ACTION = "unknown_action"
    ACCOUNT_DISABLED = "account_disabled"
    OUTSIDE_KEY_SCOPE = "outside_key_scope"


class NoteCode(StrEnum):
    """Notes on a decision that are not reasons to deny."""

    WAIVED = "waived"
    WAIVER_IGNORED = "waiver_ignored"
    SOURCE_TERMS_UNRECORDED = "source_terms_unrecorded"
    ORIGIN_UNRECORDED = "origin_unrecorded"
