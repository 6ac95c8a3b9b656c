"""The database behind an outbox or a dual write: its spec, how it is built and measured (shared
by both sections)."""

from __future__ import annotations

from typing import Annotated, Iterable, Optional

from pydantic import Field

from models.database import Database

from ..fields import Crashes, DurationOrDistribution, Strict
from ..sketch import Distribution
from .base import Finding


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


def connection_waits_s(database: Database) -> Distribution:
    """Waits for a connection of the transactions that asked in the window: zeros for those
    served at once, and the waits of those that queued (and left the queue by the end), in one
    section (the immediate ones were not timed)."""
    queued = database.waiting_boundary.sojourns.distribution().whole()
    return Distribution(queued.offset, queued.counts, queued.zeros + database.immediate_in_window, queued.sums)


def measure_database(prefix: str, database: Database, measures) -> None:
    """``PREFIX.database.*``: its own metrics, the wait for a connection, its utilisation series."""
    for key, value in database.metrics(measures.window_s).items():
        measures.metrics[f"{prefix}.database.{key}"] = float(value)
    measures.distribution(f"{prefix}.database.connection_wait_s", connection_waits_s(database))
    measures.series[f"{prefix}.database.utilization"] = measures.level(database.lent) / database.connections


def database_load(database: DatabaseSpec, requests_per_s: float, relay=None) -> float:
    """The busy fraction of the connection pool: requests' transactions and, for an outbox with a
    polling ``relay``, the relays' queries, marks and publications, counting crash downtime against
    the pool."""
    busy_s = requests_per_s * database.commit_time.build().mean
    if relay is not None and relay.kind == "polling":
        polls_per_s = relay.relays / max(relay.poll_interval, relay.cycle_s())
        busy_s += polls_per_s * (relay.query_time.build().mean + relay.mark_time.build().mean) + requests_per_s * relay.publish_time.build().mean
    up = 1.0
    if database.crashes is not None:
        mean_up = database.crashes.time_to_failure_distribution().mean
        up = mean_up / (mean_up + database.crashes.restart_time.build().mean)
    return busy_s / (database.connections * up)


def database_overload(database: DatabaseSpec, requests_per_s: float, relay=None) -> Iterable[Finding]:
    load = database_load(database, requests_per_s, relay)
    if load >= 1:
        yield Finding("database", f"unstable: the connection pool would be busy {load:.3g} of the time "
                      f"({requests_per_s:.4g} requests/s, relays' queries and crash downtime included); transactions would "
                      "queue for connections without bound. Add connections or shorten the commit time")
