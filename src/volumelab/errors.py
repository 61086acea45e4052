"""Exceptions raised by volumelab. Every message says what was wrong and what to do."""


class VolumelabError(ValueError):
    """Base class for invalid input to volumelab (bad shapes, values, files or flags)."""


class ProblemError(VolumelabError):
    """A problem's arrays or generation parameters are invalid."""


class ModelError(VolumelabError):
    """A model or prior specification is invalid."""


class OptimizerError(VolumelabError):
    """An optimizer's configuration or budget is invalid."""


class StoreError(VolumelabError):
    """A results store cannot be used as it is: damaged, or written by a newer volumelab. The message names the
    file and the way out (``volumelab store check`` / ``volumelab store repair``); ``reason`` says what is wrong."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason
