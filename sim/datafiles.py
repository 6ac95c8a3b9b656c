"""The data files a scenario reads (a trace's or an empirical distribution's ``file:``): where they
may be, and how a column is read without ever quoting the file.

A scenario names its data files relative to its own folder, and may read only from that folder
(and the folders below it) unless more are allowed: with ``--allow-path DIR`` on the command line
(:func:`allow_folders`, for the duration of one command) or the environment variable
``ASYNCSIM_ALLOW_PATH`` (folders separated by ``os.pathsep``). A path is compared after symbolic
links are resolved, so a link inside the folder to a file outside it is refused too. A scenario
from someone else can therefore not make asyncsim read, and show, a file such as a password file.

An error about a data file names the file, the line and what is wrong, never the text of the
file (not even its header: a column name is checked, not suggested).
"""

from __future__ import annotations

import csv
import io
import math
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Iterable

import numpy as np

from .problems import short_repr

ALLOW_ENV = "ASYNCSIM_ALLOW_PATH"
"""The environment variable naming more folders data files may be read from."""

_ALLOWED: ContextVar[tuple[Path, ...]] = ContextVar("allowed_data_folders", default=())


def allow_folders(folders: Iterable[str | Path]) -> None:
    """Allow data files in ``folders`` (and below) in the current context (``--allow-path``).
    The command line runs each command in its own context, so this lasts one command."""
    _ALLOWED.set(tuple(Path(f).resolve() for f in folders))


def allowed_folders(base_dir: str | Path) -> list[Path]:
    """Where data files may be: the scenario's folder, ``--allow-path`` folders, ``ASYNCSIM_ALLOW_PATH``."""
    from_env = [Path(p).resolve() for p in os.environ.get(ALLOW_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(base_dir).resolve(), *_ALLOWED.get(), *from_env]


def resolve_data_file(value: str, base_dir: str | Path | None) -> Path:
    """The data file ``value``, relative to ``base_dir`` (the scenario's folder); ValueError if it
    is not a file or lies outside every allowed folder. Without a ``base_dir`` (a scenario model
    validated directly in Python, not loaded through :mod:`sim.loading`) there is no scenario
    folder: the path is relative to the working directory and any folder is allowed."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    path = Path(value)
    if not path.is_absolute():
        path = base / path
    real = path.resolve()
    if base_dir is not None and not any(real.is_relative_to(folder) for folder in allowed_folders(base)):
        raise ValueError(f"{short_repr(value)} is outside the scenario's folder ({short_repr(str(base))}); a data file "
                         f"elsewhere must be allowed with --allow-path DIR or the {ALLOW_ENV} environment variable")
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


def read_column(path: Path, column: str | None, unit_s: float) -> np.ndarray:
    """The finite numbers of one CSV column (the first when ``column`` is None), times ``unit_s``.

    The first line is the header; cells that are not numbers (and rows too short to have the
    column) are skipped. ValueError, naming the file and the line, for a file that cannot be read,
    is not UTF-8, has no such column or no number in it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the file: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(rows, None)
        if not header:
            raise ValueError(f"{path}:1: no header line (a CSV file with the column names first)")
        name = column if column is not None else header[0]
        if name not in header:
            raise ValueError(f"{path}:1: the header has no column {short_repr(name)} ({len(header)} columns)")
        index = header.index(name)
        values = [_number(row[index]) for row in rows if len(row) > index]
    except csv.Error as exc:
        raise ValueError(f"{path}:{rows.line_num}: not a CSV line ({exc})") from None
    numbers = np.array([v for v in values if v is not None], dtype=float)
    if numbers.size == 0:
        which = f"column {short_repr(name)}" if column is not None else "the first column"
        raise ValueError(f"{path}: {which} holds no numbers")
    return numbers * unit_s


def _number(cell: str) -> float | None:
    """The cell's value, or None when it is not a finite number."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
