"""User-facing errors.

Anything a user can cause (a bad flag, a corrupt tarball, a missing bucket)
raises :class:`UserError` with one line that names the cause. The CLI prints
that line and exits non-zero; it never shows a traceback for these.
"""


class UserError(Exception):
    """An error caused by input the user controls; its message is one clear line."""

    exit_code = 2


class ConfigError(UserError):
    """A config key, type or value the schema does not allow."""


class DataError(UserError):
    """A dataset source that cannot be fetched, verified or parsed safely."""


class StorageError(UserError):
    """Object storage that cannot be reached, read or written."""


class ObjectNotFound(StorageError):
    """The object does not exist (the store itself answered)."""


class IntegrityError(StorageError):
    """The object exists but its bytes do not match the digest stored with it."""
