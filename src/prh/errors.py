"""The exceptions prh raises on purpose.

Every error a user can cause is raised at a public boundary, names the offending argument and says how to fix it.
Catch :class:`PrhError` to handle all of them.
"""

from __future__ import annotations


class PrhError(Exception):
    """Base class of every error prh raises on purpose."""


class InputError(PrhError, ValueError):
    """An argument has the wrong shape, type, range or value."""


class OfflineError(PrhError, RuntimeError):
    """A model or dataset had to be downloaded but no hub can be reached."""


class MissingFeaturesError(PrhError, FileNotFoundError):
    """Features needed by an alignment run are not in the feature store."""


class ModelLoadError(PrhError, RuntimeError):
    """A model could not be loaded (unknown name, remote code not allowed, missing optional extra, ...)."""


class ExtractionError(PrhError, RuntimeError):
    """Feature extraction failed (out of memory, corrupt input item, ...)."""


class PrhWarning(UserWarning):
    """Something the user should know that is not an error (e.g. code a models file will import; a store entry
    written before checksums); the ``prh`` command prints each as one ``warning: ...`` line."""


class DownloadError(PrhError, RuntimeError):
    """A download failed (unreachable server, HTTP error, transfer cut short) or its file did not check out (size,
    sha256); the message says what was kept for a resume and how to retry (e.g. from a mirror)."""
