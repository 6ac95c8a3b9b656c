import sys
from pathlib import Path

import pytest

from sim.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def call(monkeypatch, capsys):
    """Run ``sim.cli.main`` in this process with ``args`` (paths and numbers as text); (exit
    code, stdout, stderr)."""
    monkeypatch.delenv("ASYNCSIM_DEBUG", raising=False)

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["asyncsim", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call
