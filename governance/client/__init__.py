"""The loader client: ask the governance service before reading a file.

    from governance.client import Client

    with Client("https://governance.example", api_key) as gov:
        gov.require("genebody:train40/subject01/img_0001.jpg", "read", "research/non-commercial/academic")
        result = gov.check_batch(paths, "read", "research/non-commercial/academic")
        for path in result.permitted_resources:
            ...
        result.raise_for_denied()   # AccessDeniedError: why, and where to fix it

`GovernedDataset(client, subset=..., purpose=..., private_key=..., public_key_id=..., object_root=...)`
is a map-style dataset over encrypted files: headers released up front, decrypted locally.

Decisions are `governance.policy.decision.Decision` values, exactly as the engine makes them.
This package is an edge module: it (and `governance/cli.py`) may import httpx; the core may not.
"""

from governance.client.client import Client
from governance.client.dataset import GovernedDataset
from governance.client.errors import (
    AccessDeniedError,
    AuthenticationFailedError,
    GovernanceClientError,
    InvalidRequestError,
    Problem,
    ProtocolError,
    RateLimitedError,
    RequestRejectedError,
    ServiceUnavailableError,
)
from governance.client.results import BatchResult
from governance.policy.decision import Decision

__all__ = [
    "AccessDeniedError",
    "AuthenticationFailedError",
    "BatchResult",
    "Client",
    "Decision",
    "GovernanceClientError",
    "GovernedDataset",
    "InvalidRequestError",
    "Problem",
    "ProtocolError",
    "RateLimitedError",
    "RequestRejectedError",
    "ServiceUnavailableError",
]
