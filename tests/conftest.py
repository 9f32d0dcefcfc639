import sys

import pytest

from medcode.cli import main


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run the ``medcode`` command line in-process: ``cli(*args) -> (status, stdout, stderr)``."""

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["medcode", *args])
        monkeypatch.setenv("COLUMNS", "200")
        with pytest.raises(SystemExit) as caught:
            main()
        out, err = capsys.readouterr()
        return caught.value.code or 0, out, err

    return run
