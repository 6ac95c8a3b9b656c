"""The database behind an outbox or a dual write (its spec; shared by both sections)."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field

from ..fields import Crashes, DurationOrDistribution, Strict


class DatabaseSpec(Strict):
    """A database behind a pool of ``connections``: a transaction waits for a free connection and
    holds it for its ``commit_time`` (statements and COMMIT). ``crashes`` roll back the open
    transactions; while it restarts, transactions are refused."""

    commit_time: DurationOrDistribution
    connections: Annotated[int, Field(ge=1, strict=True)] = 10
    crashes: Optional[Crashes] = None
