"""The one error hierarchy of the project.

Every error a user can cause is a :class:`PvcError` subclass whose message is a single
line saying what is wrong. The CLI prints that line and exits non-zero; the API maps the
class to an HTTP status. Anything else that escapes is a bug and is reported with its
traceback.
"""

from __future__ import annotations


class PvcError(Exception):
    """Base of every user-facing error; ``str(error)`` is a one-line explanation."""

    #: HTTP status the API daemon answers with for this kind of error.
    http_status = 400
    #: Process exit code the CLI uses for this kind of error.
    exit_code = 1

    def __init__(self, message: str) -> None:
        # Keep the message on one line whatever the caller passed in.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        """The one-line explanation."""
        return str(self)


class InvalidInput(PvcError):
    """The request itself is wrong: malformed XML, an unknown selector, a bad value."""

    http_status = 400
    exit_code = 2


class NotFound(PvcError):
    """A VM, node or network named in the request does not exist."""

    http_status = 404
    exit_code = 3


class Conflict(PvcError):
    """Another writer changed the entity between our read and our write, or it already exists."""

    http_status = 409
    exit_code = 4


class PreconditionFailed(PvcError):
    """The request is well formed but makes no sense in the current cluster state."""

    http_status = 412
    exit_code = 5


class StoreUnavailable(PvcError):
    """ZooKeeper cannot be reached (or lost quorum) within the allowed time."""

    http_status = 503
    exit_code = 6


class HypervisorError(PvcError):
    """libvirt refused or failed an action on a host (start, shutdown, migration, ...)."""

    http_status = 502
    exit_code = 7
