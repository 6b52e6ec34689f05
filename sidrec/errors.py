"""Errors that the CLI reports as one clear line (file, field, value) instead of a traceback."""


class SidrecError(Exception):
    """Base class: the message is the whole story for the user."""


class ConfigError(SidrecError):
    pass


class DataError(SidrecError):
    pass


class ArtifactError(SidrecError):
    """An artifact on disk is missing, corrupted or does not match the run."""


def brief(value, limit: int = 60) -> str:
    """``repr`` of a value that an error message echoes, cut to ``limit`` characters of its text
    with the full length said: a 60,000-character id must not come back whole."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(value)
    return f"{text[:limit]!r}... ({len(text)} characters)"
