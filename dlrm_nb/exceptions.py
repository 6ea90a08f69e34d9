"""Errors of the workbook. Each message says what was wrong and what to do next."""

from __future__ import annotations


class DlrmNbError(Exception):
    """Base class of every error this package raises on purpose: a user error, whose message
    says what was wrong and what to do; shown as that one line, never as a traceback."""

    def _render_traceback_(self) -> list[str]:
        """What IPython (JupyterLab, papermill's kernels) shows for this error instead of a
        traceback: the one line ``ErrorClass: message``."""
        return [f"{type(self).__name__}: {self}"]


class InvalidValueError(DlrmNbError):
    """A setting outside what is allowed; ``allowed`` says what is (the notebooks' parameter
    checks and the command line apply the same rules and show the same words)."""

    def __init__(self, name: str, value: object, allowed: str) -> None:
        self.name, self.value, self.allowed = name, value, allowed
        super().__init__(f"{name} {value!r} is not valid: {allowed}")


class MalformedLineError(DlrmNbError):
    """A raw Criteo line that cannot be parsed."""

    def __init__(self, path: str, line: int, field: str, value: str, allowed: str) -> None:
        self.path, self.line, self.field, self.value = path, line, field, value
        super().__init__(
            f"{path}, line {line}, field {field}: {value!r} is not valid ({allowed}). "
            "Fix or remove the line, or rerun with --skip-malformed to skip such lines "
            "(they are counted in the manifest)."
        )


class InputFileError(DlrmNbError):
    """A raw or preprocessed input file that is missing, truncated or of the wrong size."""


class SettingsMismatchError(DlrmNbError):
    """An output folder that was started with other settings or inputs."""


class ForeignOutputError(DlrmNbError):
    """An output folder that holds files this tool did not make."""


class AccuracyLogError(DlrmNbError):
    """An accuracy log, label source or trace that cannot be read or does not fit."""


class LoadgenLogError(DlrmNbError):
    """A run folder without LoadGen's logs, or logs that cannot be read."""


class AggregationError(DlrmNbError):
    """Bad aggregation settings or a malformed trace file."""


class CheckpointError(DlrmNbError):
    """A checkpoint that cannot be loaded safely, or does not fit the model."""


class ParameterError(DlrmNbError):
    """A notebook parameter or a params file entry is not valid."""


class NotebookFailed(DlrmNbError):
    """A notebook raised; the executed copy holds the traceback and papermill's error banner."""


class OutputExistsError(DlrmNbError):
    """An output that exists already; nothing the user made is overwritten without asking."""


class FolderLockedError(DlrmNbError):
    """An output folder another live process is writing (its lock file names the process)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception by the command line so that a stop runs the same
    cleanup as Ctrl-C (temporary files removed, locks released, ``run.json`` updated)."""
