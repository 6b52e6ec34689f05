"""Errors that the CLI reports as one clear line (file, field, value) instead of a traceback."""


class SidrecError(Exception):
    """Base class: the message is the whole story for the user."""


class ConfigError(SidrecError):
    pass


class DataError(SidrecError):
    pass


class ArtifactError(SidrecError):
    """An artifact on disk is missing, corrupted or does not match the run."""
