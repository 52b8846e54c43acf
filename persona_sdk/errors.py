"""Typed exceptions raised by persona-sdk.

Every error a caller can cause derives from :class:`PersonaError`, so an app can catch
one type. Input errors also derive from :class:`ValueError` and lookups from
:class:`KeyError`, so idiomatic ``except ValueError`` code keeps working.
"""

from __future__ import annotations


class PersonaError(Exception):
    """Base class of every error persona-sdk raises on purpose."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else self.__class__.__name__


class InvalidInputError(PersonaError, ValueError):
    """An argument is malformed: empty or oversized text, bad number, wrong shape."""


class InvalidUserIdError(InvalidInputError):
    """A user id is not 1-128 characters of ``[A-Za-z0-9_.@-]``."""


class UnknownUserError(PersonaError, KeyError):
    """The user has no stored data."""


class MemoryNotFoundError(PersonaError, KeyError):
    """No memory with that id belongs to the user."""


class DataDirError(PersonaError):
    """The data directory cannot be used (it is a file, unwritable, or not a persona store)."""


class StoreError(PersonaError):
    """The SQLite store is unreadable, from a newer version, or was built with another embedder."""


class ModelLoadError(PersonaError):
    """A base model or embedder could not be found or loaded."""


class BasisError(PersonaError):
    """A reward basis file is missing, corrupt, truncated, or was fit for another featurizer."""


class FeaturizerMismatchError(BasisError):
    """A reward basis is used with a featurizer other than the one it was fit with."""


class PopulationDataError(InvalidInputError):
    """A population file for ``persona basis fit`` has missing fields or unusable users."""


class AdapterError(PersonaError):
    """An adapter is missing, corrupt or truncated, or was built for another base model or
    basis; the adapter already in use stays in place."""


class NotEnoughDataError(InvalidInputError):
    """A user has too little data for the requested operation (e.g. a per-user fine-tune)."""
