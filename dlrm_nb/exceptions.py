"""Errors of the workbook. Each message says what was wrong and what to do next."""

from __future__ import annotations


class DlrmNbError(Exception):
    """Base class of every error this package raises on purpose."""


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
