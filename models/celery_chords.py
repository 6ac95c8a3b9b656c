"""Celery's chords and groups: tasks run in parallel, and a callback, or the caller's
``GroupResult.get()``, once all have succeeded."""

from __future__ import annotations

from .celery import TaskLedger, TaskType, publish


class Chord:
    """One chord in progress: when it was called, how many header results are still to come, and
    whether one of them failed (then the callback never runs)."""

    __slots__ = ("started_s", "left", "failed")

    def __init__(self, started_s: float, size: int):
        self.started_s = started_s
        self.left = size
        self.failed = False


class ChordJoin:
    """``chord(header)(callback)`` as Celery 5.x joins it (user guide, canvas.html#chords): the
    header's ``size`` tasks go to their queue at once; the callback (a task of ``callback``) is
    sent when the last header result is written. With a backend that counts (Redis, Memcached,
    DynamoDB: ``poll_interval_s`` None) the write of the last result triggers it; with the others
    a ``chord_unlock`` task checks every ``poll_interval_s`` (1 s) from the call, and the callback
    goes at the first check that finds every result. A header task that fails for good (or is
    lost) is a chord error: the callback is never sent (``chord_errors``). So the join waits for the
    slowest member, plus the result's write, plus (polling) the wait for the next check.

    ``joined`` is the boundary of chords waiting for their join (its sojourn: from the call to the
    callback's send, or to the error); ``counts`` the header type's counter. Simplification: the
    ``chord_unlock`` checks are timers, not tasks on the queue (they take no worker time).

    **A group without a callback** (``group([task] * size).apply_async()``, ``callback`` None)
    whose caller waits with ``GroupResult.get()``: the join is the moment the last member's result
    is written (by counter); a member that fails for good makes ``get()`` raise there
    (``propagate``, the default), counted as ``errors_key`` (``group_errors``)."""

    def __init__(self, env, callback: TaskType | None, queue, fates, ledger: TaskLedger, joined, counts, poll_interval_s: float | None = None,
                 errors_key: str = "chord_errors"):
        self.env = env
        self.callback = callback
        self.queue = queue
        self.fates = fates
        self.ledger = ledger
        self.joined = joined
        self.counts = counts
        self.poll_interval_s = poll_interval_s
        self.errors_key = errors_key

    def start(self, size: int) -> Chord:
        """A chord of ``size`` header tasks is called now."""
        now = self.env.now
        chord = Chord(now, size)
        self.joined.enter(now)
        if self.poll_interval_s is not None:
            self.env.process(self._unlock(chord))
        return chord

    def member_done(self, chord: Chord, succeeded: bool) -> None:
        """A header task's result is written now (``succeeded``: SUCCESS), or it has none."""
        if chord.failed:
            return
        if not succeeded:
            chord.failed = True
            self.counts.add(self.errors_key)
            self.joined.leave(self.env.now, chord.started_s)
            return
        chord.left -= 1
        if chord.left == 0 and self.poll_interval_s is None:
            self._send(chord)

    def _unlock(self, chord: Chord):
        while not chord.failed:
            yield self.env.timeout(self.poll_interval_s)
            if chord.left == 0 and not chord.failed:
                self._send(chord)
                return

    def _send(self, chord: Chord) -> None:
        now = self.env.now
        self.joined.leave(now, chord.started_s)
        if self.callback is not None:
            publish(self.callback, self.queue, self.fates, self.ledger, now)
