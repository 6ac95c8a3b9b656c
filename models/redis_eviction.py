"""Redis's ``maxmemory-policy``: what a queue's keys become when the data set reaches ``maxmemory``.

As documented (redis.io, *Key eviction*, https://redis.io/docs/latest/develop/reference/eviction/,
and the MAXMEMORY POLICY section of ``redis.conf``): whenever a command adds data, Redis checks
the memory used and, above ``maxmemory``, evicts keys by the policy until it is back below.

- ``noeviction`` (the default): nothing is evicted; commands that would use more memory (LPUSH,
  XADD, and the ``denyoom`` BLMOVE) fail with an OOM error, reads and deletions go on.
- ``allkeys-lru``, ``allkeys-lrm`` (Redis 8.6), ``allkeys-lfu``, ``allkeys-random``: any key may
  go — the least recently used, least recently modified, least frequently used, or one at random.
- ``volatile-lru``, ``volatile-lrm``, ``volatile-lfu``, ``volatile-random``, ``volatile-ttl``:
  only keys with an expiration (TTL). "The volatile-xxx policies behave like noeviction if no keys
  have an associated expiration"; with none suitable "Redis will return an error on write
  operations that require more memory" (redis.conf).

What that means for a queue: a key is evicted whole. A queue is one key (a list, or a stream,
whose consumer group and pending entries live inside it) — two with a reliable list's processing
list — so an eviction drops every message in it at once: accepted, then lost without a trace, where
``noeviction`` refused the write and told the publisher. A queue's keys carry no TTL (LPUSH and
XADD set none), so the ``volatile-*`` policies find nothing to evict and behave as ``noeviction``.

Simplifications: the data set holds this queue's keys only (a cache sharing the instance would
usually lose its cold keys first under LRU or LFU: the queue's keys are touched by every command);
the order is exact where Redis approximates it by sampling (``maxmemory-samples`` 5, an LRU clock
of one second, a logarithmic LFU counter): of a reliable list's two keys, ``lru``, ``lrm`` and
``lfu`` evict the processing list first — under a backlog, which is when memory fills, the waiting
list takes every LPUSH besides the moves, so it is both the more recently and the more often used
(and modified) of the two — and ``allkeys-random`` picks either with equal chance.
"""

from __future__ import annotations

EVICTING = ("allkeys-lru", "allkeys-lrm", "allkeys-lfu", "allkeys-random")
"""The policies that evict a queue's keys."""
POLICIES = ("noeviction", *EVICTING, "volatile-lru", "volatile-lrm", "volatile-lfu", "volatile-random", "volatile-ttl")
"""Every ``maxmemory-policy`` of Redis 8.6 (``lrm`` is new in 8.6; the others since 4.0)."""


class EvictionPolicy:
    """The ``maxmemory-policy`` of one data set; ``draw`` (uniform on [0, 1)) for ``allkeys-random``."""

    __slots__ = ("policy", "evicts", "draw")

    def __init__(self, policy: str = "noeviction", draw=None):
        if policy not in POLICIES:
            raise ValueError(f"maxmemory_policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if policy == "allkeys-random" and draw is None:
            raise ValueError("allkeys-random needs a uniform draw")
        self.policy = policy
        self.evicts = policy in EVICTING
        """Whether keys of the queue are evicted (else writes are refused at maxmemory)."""
        self.draw = draw

    def order(self, keys: list[str]) -> list[str]:
        """The queue's existing ``keys`` (the waiting list or stream first) in the order they go."""
        if len(keys) < 2:
            return keys
        if self.policy == "allkeys-random":
            first = int(self.draw() * len(keys))
            return [keys[first], *keys[:first], *keys[first + 1:]]
        return keys[::-1]
