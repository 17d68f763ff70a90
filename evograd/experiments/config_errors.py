"""The one error type of config checking (its own module: every config module raises it)."""
from __future__ import annotations

from ..core.validation import ParameterError


class ConfigError(ParameterError):
    """A config (or a --set override) that cannot run; the message names the file and the dotted key."""

    def __init__(self, reason: str, file: str | None = None, key: str | None = None):
        self.reason, self.file, self.key = reason, file, key
        super().__init__(": ".join(str(p) for p in (file, key, reason) if p))
