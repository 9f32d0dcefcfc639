"""Error types that the command line turns into one clear sentence and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class MedcodeError(Exception):
    """Base class: an error a user can fix, reported without a traceback."""

    exit_code = 1


class CodeError(MedcodeError, ValueError):
    """A code that is malformed or not in the code set it claims to belong to."""

    exit_code = 2

    def __init__(self, code: str, problem: str) -> None:
        self.code = code
        self.problem = problem
        super().__init__(f"{code!r}: {problem}")


class DataFileError(MedcodeError):
    """A data file (YAML/CSV) with invalid content; names the file, the line and the problem."""

    exit_code = 2

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {problem}")
