"""``kind: redis``: Redis as a queue — a list (LPUSH/BRPOP, or the reliable BLMOVE/LREM pattern) or
a stream read by a consumer group — with crashes, persistence and ``maxmemory``.

The models are in :mod:`models.redis` (what lists and streams share: blocking reads, memory,
crashes and persistence), :mod:`models.redis_list`, :mod:`models.redis_stream` and
:mod:`models.redis_persistence`; their docstrings say what Redis does and where the model simplifies.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from models.redis_eviction import POLICIES, EvictionPolicy
from models.redis_list import RedisList
from models.redis_persistence import DEFAULT_SAVE_RULES
from models.redis_stream import RedisStream

from ...distributions import Uniform
from ...fields import Crashes, Duration, Name, PositiveDuration, Price, Strict
from ..base import DEAD_LETTER

LIST_RELIABLE_KEYS = ("processing_timeout", "monitor_interval")
STREAM_KEYS = ("min_idle_time", "claim_interval", "claim_count", "max_deliveries", "dead_letter")


class RedisSpec(Strict):
    """A Redis server holding one queue.

    ``mode: list`` (default): LPUSH + BRPOP, at-most-once — a worker that dies holding a message, or
    fails it, loses it. With ``reliable: true``: BLMOVE into a processing list, LREM after the work,
    and a monitor that every ``monitor_interval`` pushes back the items held longer than
    ``processing_timeout`` — at-least-once: nothing is lost to workers, late or crashed workers
    cause duplicates.

    ``mode: stream``: a consumer group. XREADGROUP hands each entry to one consumer and keeps it
    pending until XACK; every ``claim_interval`` each consumer runs XAUTOCLAIM, taking over entries
    idle for at least ``min_idle_time`` (up to ``claim_count`` at a time, Redis's default 100).
    With ``max_deliveries``, an idle entry already delivered that many times goes to the
    ``dead_letter`` stream (another broker, by name) instead.

    ``max_messages``: ``maxmemory``, counted in messages (waiting, plus the processing list or
    pending entries). With ``maxmemory_policy: noeviction`` (the default, as in Redis) a write that
    finds it full fails and the publisher is refused; a reliable list's BLMOVE is ``denyoom`` and is
    refused too, so its consumers stall until an LREM frees room. ``allkeys-lru``, ``allkeys-lrm``,
    ``allkeys-lfu`` and ``allkeys-random`` evict instead: the queue's key goes whole, and every
    message in it is lost at once (``evictions``, ``evicted``) — a reliable list's processing list
    first, except with ``allkeys-random`` (either). ``volatile-lru``, ``volatile-lrm``,
    ``volatile-lfu``, ``volatile-random`` and ``volatile-ttl`` evict only keys with a TTL, and a
    queue's keys have none: they behave as ``noeviction`` (redis.io, *Key eviction*; see
    :mod:`models.redis_eviction`). ``crashes``: the server fails and restarts;
    ``persistence`` says what it comes back with — ``none`` (empty), ``rdb`` (the last snapshot;
    the default, as in Redis: snapshots by the ``save`` rules, redis.conf's ``[[3600, 1], [300,
    100], [60, 10000]]`` unless given, or one every ``rdb_interval``), ``aof-everysec`` (all but the
    last second), ``aof-no`` (all but what the OS had not flushed, up to 30 s), ``aof-always``
    (everything acknowledged). Writes since the durable point are lost; pops and acknowledgements
    since are undone, so those messages are processed again. While it restarts, publishers are
    refused, consumers wait for it and acknowledgements fail.

    ``command_time`` (⚑ none by default: not modelled; about 10 µs is redis.io's ~100,000 commands a
    second unpipelined) makes the server execute one command at a time, every client's in turn,
    and ``round_trip`` (default 0) is added to each reply a consumer waits for: the broker itself
    saturates when the work is cheap (``commands``, ``server_utilization``).

    ``price_per_hour`` (⚑ no default): what the server costs an hour (a node: ElastiCache bills
    node-based clusters per node-hour), counted for the whole window in the run's ``cost``.

    The defaults of ``processing_timeout`` (60 s), ``monitor_interval`` (10 s), ``min_idle_time``
    (60 s) and ``claim_interval`` (10 s) are this model's choices: Redis leaves them to the
    application.
    """

    name: Name
    kind: Literal["redis"]
    mode: Literal["list", "stream"] = "list"
    reliable: Annotated[bool, Field(strict=True)] = False
    processing_timeout: PositiveDuration = 60.0
    monitor_interval: PositiveDuration = 10.0
    min_idle_time: PositiveDuration = 60.0
    claim_interval: PositiveDuration = 10.0
    claim_count: Annotated[int, Field(ge=1, strict=True)] = 100
    max_deliveries: Optional[Annotated[int, Field(ge=1, strict=True)]] = None
    dead_letter: Annotated[Optional[Name], DEAD_LETTER] = None
    max_messages: Optional[Annotated[int, Field(ge=1, strict=True)]] = None
    maxmemory_policy: Literal[POLICIES] = "noeviction"
    persistence: Literal["none", "rdb", "aof-everysec", "aof-no", "aof-always"] = "rdb"
    save: Optional[Annotated[list[tuple[PositiveDuration, Annotated[int, Field(ge=1, strict=True)]]], Field(min_length=1)]] = None
    rdb_interval: Optional[PositiveDuration] = None
    command_time: Optional[PositiveDuration] = None
    round_trip: Duration = 0.0
    crashes: Optional[Crashes] = None
    price_per_hour: Optional[Price] = None

    @model_validator(mode="after")
    def _keys_fit_the_mode(self):
        given = self.model_fields_set
        if self.mode == "stream":
            wrong = [k for k in ("reliable", *LIST_RELIABLE_KEYS) if k in given]
            if wrong:
                raise ValueError(f"{', '.join(wrong)}: for mode list only (a stream is acknowledged with XACK and recovered with XAUTOCLAIM)")
        else:
            wrong = [k for k in STREAM_KEYS if k in given]
            if wrong:
                raise ValueError(f"{', '.join(wrong)}: for mode stream only")
            if not self.reliable:
                wrong = [k for k in LIST_RELIABLE_KEYS if k in given]
                if wrong:
                    raise ValueError(f"{', '.join(wrong)}: only with reliable: true (a plain list has no processing list)")
        if (self.max_deliveries is None) != (self.dead_letter is None):
            raise ValueError("max_deliveries and dead_letter go together: entries delivered max_deliveries times go to the dead_letter stream")
        if self.dead_letter == self.name:
            raise ValueError("dead_letter must name another broker, not this one")
        for key in ("rdb_interval", "save"):
            if key in given and self.persistence != "rdb":
                raise ValueError(f"{key}: only with persistence: rdb (persistence is {self.persistence})")
        if "maxmemory_policy" in given and self.max_messages is None:
            raise ValueError("maxmemory_policy: only with max_messages (without maxmemory nothing is evicted or refused)")
        if "round_trip" in given and self.command_time is None:
            raise ValueError("round_trip: only with command_time (the server's capacity is not modelled without it)")
        if self.save is not None and self.rdb_interval is not None:
            raise ValueError("give the save rules (save) or a fixed snapshot interval (rdb_interval), not both")
        return self

    def consumer_capacity_per_s(self, server) -> tuple[float, str]:
        """What ``server`` (a :class:`~sim.components.base.Server`) can take from this queue a
        second, and the per-message overhead that lowers it ("" when none is modelled)."""
        return server.capacity_per_s, ""

    def bounds_queue(self) -> bool:
        return self.max_messages is not None

    def dead_letter_targets(self) -> list[str]:
        return [self.dead_letter] if self.dead_letter is not None else []


def build(spec: RedisSpec, context):
    """The Redis broker of ``spec``, drawing from its own random streams."""
    options = dict(
        max_messages=spec.max_messages,
        persistence=spec.persistence,
        rdb_interval=spec.rdb_interval,
        save_rules=DEFAULT_SAVE_RULES if spec.save is None else tuple(spec.save),
        crashes=context.crashes(spec.crashes, spec.name),
        window_start_s=context.window_start_s,
        command_s=spec.command_time,
        round_trip_s=spec.round_trip,
        eviction=EvictionPolicy(spec.maxmemory_policy, context.sampler(Uniform(0.0, 1.0), "eviction")
                                if spec.maxmemory_policy == "allkeys-random" else None),
    )
    boundary = context.boundary(spec.name)
    counts = context.counter(spec.name)
    if spec.mode == "stream":
        target = spec.dead_letter
        return RedisStream(
            context.env, spec.name, boundary, counts, context.fates,
            in_flight=context.boundary(f"{spec.name}:in_flight", keep_sojourns=False),
            min_idle_time=spec.min_idle_time,
            claim_interval=spec.claim_interval,
            claim_count=spec.claim_count,
            max_deliveries=spec.max_deliveries,
            dead_letter=(lambda: context.broker(target)) if target is not None else None,
            **options,
        )
    if spec.reliable:
        phase = float(context.rng(spec.name, "monitor").uniform(0.0, spec.monitor_interval))
        return RedisList(
            context.env, spec.name, boundary, counts, context.fates,
            in_flight=context.boundary(f"{spec.name}:in_flight", keep_sojourns=False),
            reliable=True,
            processing_timeout=spec.processing_timeout,
            monitor_interval=spec.monitor_interval,
            monitor_phase=phase,
            **options,
        )
    return RedisList(context.env, spec.name, boundary, counts, context.fates, **options)


Spec = RedisSpec
