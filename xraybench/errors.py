"""Errors a user can act on.

Every exception the CLI shows as a one-line message (never a traceback) derives from
`XRayBenchError`; anything else is a bug and keeps its traceback.
"""


class XRayBenchError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class DataError(XRayBenchError):
    """The data set is missing, malformed, or holds unreadable files."""


class PluginError(XRayBenchError):
    """A plugin is unknown, broken, or returned something the harness cannot use.

    ``traceback``: the broken plugin's own traceback (its import, its hook), which the one-line
    message leaves out; commands print it with ``--traceback``, for the plugin's author."""

    def __init__(self, message: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback


class ParamError(XRayBenchError):
    """A `--param key=value` names an unknown key or a value of the wrong type."""


class PluginFailure(Exception):
    """A plugin raised or returned garbage while fitting or predicting; the message is one line
    naming the stage. Recorded as the run's (or trial's, or check's) error, never shown as a traceback."""


def first_line(exc: BaseException) -> str:
    """An exception's message, first line only (its type's name when it has none): for one-line errors."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
