"""The package's one exception hierarchy.

Every failure a user can cause (a malformed file, a missing tag set, a failed copy) surfaces
as a subclass of :class:`SavedModelError` whose message names the file and the problem.
"""

from __future__ import annotations


class SavedModelError(Exception):
    """Base class of every error this package raises on purpose."""

    def __init__(self, problem: str, path: str | None = None) -> None:
        self.problem = problem
        self.path = path
        super().__init__(f"{path}: {problem}" if path else problem)

    def at(self, path: str) -> SavedModelError:
        """This error naming ``path``, when it names none yet (raised where the path is known)."""
        if self.path:
            return self
        located = type(self)(self.problem, path)
        located.__cause__ = self.__cause__
        return located


class FormatError(SavedModelError):
    """A file exists but its contents are malformed, truncated or inconsistent."""


class ChecksumError(FormatError):
    """Stored bytes do not match their recorded crc32c."""


class UnsupportedFormatError(SavedModelError):
    """A valid file in a variant this package does not read (e.g. the chunked .cpb format)."""


class NotFoundError(SavedModelError):
    """Something the caller asked for, or the format requires, is not there."""


class MissingFileError(NotFoundError):
    """A file the SavedModel needs does not exist."""


class MetaGraphNotFoundError(NotFoundError):
    """No meta graph matches the requested tag set."""


class SignatureNotFoundError(NotFoundError):
    """No signature has the requested key."""


class VariableNotFoundError(NotFoundError):
    """No tensor of that name is in the variables bundle."""


class WriteError(SavedModelError):
    """A model could not be written as requested (bad arguments or an existing destination)."""


class StorageError(SavedModelError):
    """Copying, publishing or removing model files failed."""


class InputMismatchError(SavedModelError):
    """Inputs given for a signature (warmup requests) do not fit its keys, dtypes or shapes."""


class ServingError(SavedModelError):
    """A running TF Serving answered something unreadable, or an error, through its REST API."""


class SignatureError(SavedModelError):
    """A model's OMS signature is missing, malformed, untrusted or does not match its files; also
    a signing key or trust file that cannot be used. ``code`` is the validate finding it maps to."""

    code = "signature-invalid"


class SignatureMissingError(SignatureError):
    """Signatures are required and the model carries none."""

    code = "signature-missing"


class SignatureInvalidError(SignatureError):
    """The signature does not verify against what it claims to sign."""

    code = "signature-invalid"


class SignatureUntrustedError(SignatureError):
    """A valid signature by a key or certificate this deployment does not trust."""

    code = "signature-untrusted"


class SignedContentError(SignatureError):
    """The files differ from what was signed: one added (``file-not-signed``), changed
    (``file-changed``) or removed (``file-missing``). ``findings`` lists them all."""

    def __init__(
        self, problem: str, path: str | None = None, findings: list[tuple[str, str, str]] | None = None
    ) -> None:
        super().__init__(problem, path)
        self.findings = findings or []
        self.code = self.findings[0][0] if self.findings else "file-changed"


class LockLostError(StorageError):
    """A lock holder found that another writer broke its lock; its change was not written."""


class PolicyError(SavedModelError):
    """A rollout policy that does not parse or does not fit the schema."""


class RolloutError(SavedModelError):
    """A rollout that cannot start or go on (busy, unreachable server, nothing to send)."""


class RolloutBusyError(RolloutError):
    """Another run is rolling the model out; this one changed nothing."""


class ServerUnreachableError(RolloutError):
    """TF Serving did not answer at all: the rollout needs a running one; nothing was changed."""
