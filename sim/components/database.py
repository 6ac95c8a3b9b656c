"""The database behind an outbox or a dual write (its spec; shared by both sections)."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field

from models.database import Database

from ..fields import Crashes, DurationOrDistribution, Strict


class DatabaseSpec(Strict):
    """A database behind a pool of ``connections``: a transaction waits for a free connection and
    holds it for its ``commit_time`` (statements and COMMIT). ``crashes`` roll back the open
    transactions; while it restarts, transactions are refused."""

    commit_time: DurationOrDistribution
    connections: Annotated[int, Field(ge=1, strict=True)] = 10
    crashes: Optional[Crashes] = None


def build_database(spec: DatabaseSpec, owner: str, context) -> Database:
    """The database of an outbox or a dual write, named ``OWNER:database``."""
    name = f"{owner}:database"
    return Database(
        context.env,
        name,
        spec.connections,
        context.boundary(name, "database", keep_sojourns=False),
        context.boundary(f"{owner}:connection-wait", "database", keep_sojourns=True),
        context.counter(name),
        context.crashes(spec.crashes, name),
    )


def measure_database(prefix: str, database: Database, measures) -> None:
    """``PREFIX.database.*``: its own metrics, the wait for a connection, its utilisation series."""
    for key, value in database.metrics(measures.window_s).items():
        measures.metrics[f"{prefix}.database.{key}"] = float(value)
    measures.distribution(f"{prefix}.database.connection_wait_s", database.connection_waits_s())
    measures.series[f"{prefix}.database.utilization"] = measures.level(database.lent) / database.connections
