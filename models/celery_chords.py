"""Celery's chords and groups: tasks run in parallel, and a callback, or the caller's
``GroupResult.get()``, once all have succeeded."""

from __future__ import annotations

from .celery import RetryPolicy, TaskLedger, TaskType, publish

UNLOCK_COUNTDOWN_S = 1.0
"""The first ``chord_unlock`` is due 1 s after the chord is applied (Celery 5.x,
``celery/backends/base.py``: ``Backend.fallback_chord_unlock(…, countdown=1)``)."""


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
    DynamoDB: ``unlock`` None) the write of the last result triggers it; with the others each
    chord sends a ``chord_unlock`` task (``unlock``, see :class:`UnlockCheck`) to the callback's
    queue, due 1 s after the call; a worker runs it like any task, and while some header result is
    missing it retries itself, due ``poll_interval`` after the run; the run that finds every
    result sends the callback. So the join waits for the slowest member, plus the result's write,
    plus (polling) the wait for the next check, which waits in the queue and the worker's buffer
    like any task and takes a child for its run. A header task that fails for good (or is lost) is
    a chord error: the callback is never sent (``chord_errors``).

    ``joined`` is the boundary of chords waiting for their join (its sojourn: from the call to the
    callback's send, or to the error); ``counts`` the header type's counter.

    **A group without a callback** (``group([task] * size).apply_async()``, ``callback`` None)
    whose caller waits with ``GroupResult.get()``: the join is the moment the last member's result
    is written (by counter); a member that fails for good makes ``get()`` raise there
    (``propagate``, the default), counted as ``errors_key`` (``group_errors``)."""

    def __init__(self, env, callback: TaskType | None, queue, fates, ledger: TaskLedger, joined, counts, unlock: TaskType | None = None,
                 errors_key: str = "chord_errors"):
        self.env = env
        self.callback = callback
        self.queue = queue
        self.fates = fates
        self.ledger = ledger
        self.joined = joined
        self.counts = counts
        self.unlock = unlock
        if unlock is not None:
            unlock.chord_join = UnlockDone(self)
        self.errors_key = errors_key

    def start(self, size: int) -> Chord:
        """A chord of ``size`` header tasks is called now."""
        now = self.env.now
        chord = Chord(now, size)
        self.joined.enter(now)
        if self.unlock is not None and not publish(self.unlock, self.queue, self.fates, self.ledger, now, chord):
            self.member_done(chord, succeeded=False)
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
        if chord.left == 0 and self.unlock is None:
            self.send(chord)

    def send(self, chord: Chord) -> None:
        """The join: the callback is sent now."""
        now = self.env.now
        self.joined.leave(now, chord.started_s)
        if self.callback is not None:
            publish(self.callback, self.queue, self.fates, self.ledger, now)


class UnlockCheck(RetryPolicy):
    """``celery.chord_unlock`` (Celery 5.x, ``celery/app/builtins.py``: ``unlock_chord``, with
    ``max_retries=None`` and ``default_retry_delay`` = ``result_chord_retry_interval``, 1 s): a run
    that finds a header result missing raises ``self.retry(countdown=interval)``, a new message
    due ``interval_s`` after the run (counted as the type's ``failures`` and ``retries``); the run
    that finds them all, or a chord already in error, succeeds. Simplification: the check sees
    the results as they are at the end of its run."""

    def __init__(self, interval_s: float):
        super().__init__(0.0, float, max_retries=None, default_retry_delay_s=interval_s)

    def fails(self, task=None) -> bool:
        chord = task.chord
        return chord.left > 0 and not chord.failed


class UnlockDone:
    """What a ``chord_unlock`` task's outcome does to its chord (the unlock type's ``chord_join``):
    a success sends the callback (unless the chord is already in error); an unlock lost (its
    worker died holding it, acknowledged) leaves the chord without a join: a chord error."""

    def __init__(self, join: ChordJoin):
        self.join = join

    def member_done(self, chord: Chord, succeeded: bool) -> None:
        if chord.failed:
            return
        if succeeded:
            self.join.send(chord)
        else:
            self.join.member_done(chord, succeeded=False)
