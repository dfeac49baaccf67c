"""The Crypt4GH error tree: one class per way a file or key can be refused.

# SECURITY: messages name what failed and where (segment index, byte count, path) and never
# carry key bytes, passphrases or plaintext.
"""

from __future__ import annotations

from governance.errors import GovernanceError


class Crypt4GHError(GovernanceError):
    """A Crypt4GH file, header or key was refused."""


class Crypt4GHHeaderError(Crypt4GHError):
    """The header is malformed or uses a feature we do not support (edit list, other methods)."""


class Crypt4GHWrongKeyError(Crypt4GHError):
    """No header packet opens with the reader's private key."""


class Crypt4GHSegmentError(Crypt4GHError):
    """A payload segment failed authentication: tampered, cut mid-segment, or another data key."""


class Crypt4GHTruncatedError(Crypt4GHError):
    """The payload ends before the size the manifest records, or mid-way through a segment."""


class Crypt4GHIntegrityError(Crypt4GHError):
    """Every segment authenticated but the file differs from the manifest (size, MAC sequence, sha256)."""


class Crypt4GHKeyFileError(Crypt4GHError):
    """A Crypt4GH key file is malformed, unsupported, or its passphrase is wrong."""


class KeyStoreError(GovernanceError):
    """The keystore refused: a master key or a sealed dataset key is unusable."""


class MasterKeyError(KeyStoreError):
    """The master key is missing, malformed, or its file is readable by others."""


class WrongMasterKeyError(KeyStoreError):
    """The master key given is not the one the keystore's dataset keys are sealed under."""


class KeyRecordError(KeyStoreError):
    """A sealed dataset key file is malformed or fails authentication (altered, or moved)."""


class DatasetKeyNotFoundError(KeyStoreError):
    """The dataset (or the key version asked for) has no key in the keystore."""

    exit_code = 4


class DatasetKeyExistsError(KeyStoreError):
    """The dataset already has a key; rotate it instead of creating it again."""

    exit_code = 5
