"""Celery-like task queues: task types, the callers that send them, and the app that holds both.

A Celery *task* is a message on a broker queue naming the function to run; ``task.delay()``
publishes it to the queue its routing gives (``task_routes``); a worker consuming that queue runs
it (see :mod:`models.celery_worker`). The broker is the *transport*: the model goes through the
:class:`~models.broker.Broker` protocol only, so the queue's own semantics (a Redis list, a
RabbitMQ queue, an SQS queue) still apply underneath — what a disconnect, a refusal or a
redelivery does is the broker kind's.

Measured per task type, each on its own boundary (Little's law is checked on each):

- ``queued``: from ``delay()`` to the first time a worker reserves the task (its queue wait);
  a copy the broker delivers again is not counted again;
- ``scheduled``: a task with an ETA, from a worker's reception to its ETA, held in the
  worker's memory, unacknowledged (every copy);
- ``reserved``: from a worker's reception (or the ETA) to the start of the run, in the
  worker's prefetch buffer (every copy that is reserved);
- ``running``: the run itself, in a pool child;
- ``in_system``: from ``delay()`` to the task's outcome (its first success, or its loss): the
  latency its caller would see if it waited for the task (results are not modelled yet).

Counted per task type: ``sent``, ``refused`` (the broker refused the publish: rejected),
``runs`` (runs started, every copy), ``succeeded``, ``duplicates`` (a run that succeeded for a
task that had already succeeded), ``failures`` (runs that raised), ``retries``, ``failed``
(failed for good after its last retry, or killed by a hard time limit: told as lost),
``soft_time_limits``, ``hard_time_limits``, ``overlaps`` (a run that started while
another run of the type was in progress), ``beat_duplicates``, ``lost`` (acknowledged and not run to the end: early ack when the worker died),
``requeued`` (a lost child's task rejected back to the queue), ``reruns`` (a run that started
for a task that had started before: the work done twice), ``redelivered`` (a copy reserved
again). Sources: Celery 5.x user guide, tasks.html ("acks_late", "reject_on_worker_lost"),
optimizing.html#prefetch-limits; kombu 5.x.

Simplifications: no results; callers do not wait for a blocked publisher (RabbitMQ's memory alarm): a refused
publish is rejected.
"""

from __future__ import annotations

import math
from typing import Callable

from .arrivals import arrival_events
from .message import Message


class RetryPolicy:
    """``autoretry_for`` as Celery 5.x does it (``celery/app/autoretry.py``, ``Task.retry``): each
    run fails with ``probability`` (``draw()`` is uniform on [0, 1)); a failed run publishes a new
    message with the same task id to the same queue, due after a countdown, unless it was the
    last allowed (``max_retries``, default 3; None: for ever), when the task fails for good.
    The countdown of retry k (k = 1, 2…) is ``default_retry_delay_s`` (180 s), or with
    ``backoff_factor`` (``retry_backoff``; 0: off) min(``backoff_max_s``, factor × 2^(k−1))
    (``retry_backoff_max``, 600 s), and with ``jitter`` (``retry_jitter``, on) a whole number of
    seconds drawn uniformly from 0 to that (``random.randrange(countdown + 1)``); the jitter
    applies only with the backoff, as in Celery."""

    __slots__ = ("probability", "max_retries", "default_retry_delay_s", "backoff_factor", "backoff_max_s", "jitter", "draw")

    def __init__(self, probability: float, draw: Callable[[], float], max_retries: int | None = 3, default_retry_delay_s: float = 180.0,
                 backoff_factor: int = 0, backoff_max_s: float = 600.0, jitter: bool = True):
        self.probability = probability
        self.draw = draw
        self.max_retries = max_retries
        self.default_retry_delay_s = default_retry_delay_s
        self.backoff_factor = backoff_factor
        self.backoff_max_s = backoff_max_s
        self.jitter = jitter

    def fails(self, task=None) -> bool:
        """Whether the run of ``task`` that just ended raised."""
        return self.draw() < self.probability

    def may_retry(self, retries: int) -> bool:
        """Whether a task that has been retried ``retries`` times may be retried again."""
        return self.max_retries is None or retries < self.max_retries

    def countdown_s(self, retries: int) -> float:
        """The countdown of the retry that follows ``retries`` earlier ones."""
        if not self.backoff_factor:
            return self.default_retry_delay_s
        countdown = min(self.backoff_max_s, self.backoff_factor * 2 ** retries)
        if self.jitter:
            countdown = math.floor(self.draw() * (math.floor(countdown) + 1))
        return countdown


class TaskType:
    """One Celery task (``@app.task``): its name, its queue, how long a run takes
    (``run_time()``), whether it is acknowledged after the run (``acks_late``, Celery's
    ``task_acks_late``, default off: acknowledged just before it runs) and whether a task whose
    pool child dies is rejected back to the queue (``reject_on_worker_lost``, Celery's
    ``task_reject_on_worker_lost``, default off: acknowledged, so lost). ``countdown()``: each
    call is ``apply_async(countdown=…)``, due that long after it is sent (None: due at once).
    ``retry``: its failures and retries (:class:`RetryPolicy`; None: it never fails).
    ``rate_limit_per_s``: each worker starts at most this many a second (``rate_limit``).
    ``soft_time_limit_s``, ``hard_time_limit_s``: Celery's ``soft_time_limit`` and ``time_limit``
    (None: no limit, the default). ``result``: how its outcome is stored and waited for (a
    :class:`~models.celery_results.ResultWait`; None: ``ignore_result``). ``chord_size``: each
    call sends that many tasks of this type at once (a chord's header or a group; 0: one task),
    joined by ``chord_join``, a :class:`~models.celery_chords.ChordJoin` (None: no join).
    ``queued``, ``scheduled``, ``reserved``, ``running`` and ``in_system`` are its boundaries,
    ``counts`` its window counter."""

    __slots__ = ("name", "queue", "run_time", "acks_late", "reject_on_worker_lost", "countdown", "retry", "rate_limit_per_s",
                 "soft_time_limit_s", "hard_time_limit_s", "result", "chord_join", "chord_size", "snapshot_s", "queued", "scheduled", "reserved", "running", "in_system", "counts", "in_progress")

    def __init__(self, name: str, queue: str, run_time: Callable[[], float], queued, scheduled, reserved, running, in_system, counts,
                 acks_late: bool = False, reject_on_worker_lost: bool = False, countdown: Callable[[], float] | None = None,
                 retry: RetryPolicy | None = None, rate_limit_per_s: float | None = None, soft_time_limit_s: float | None = None,
                 hard_time_limit_s: float | None = None, result=None, chord_join=None, chord_size: int = 0):
        self.name = name
        self.queue = queue
        self.run_time = run_time
        self.acks_late = acks_late
        self.reject_on_worker_lost = reject_on_worker_lost
        self.countdown = countdown
        self.retry = retry
        self.rate_limit_per_s = rate_limit_per_s
        self.soft_time_limit_s = soft_time_limit_s
        self.hard_time_limit_s = hard_time_limit_s
        self.result = result
        self.chord_join = chord_join
        self.chord_size = chord_size
        self.snapshot_s: float | None = None
        """The start of the latest run that succeeded: what its freshest result was computed from."""
        self.queued = queued
        self.scheduled = scheduled
        self.reserved = reserved
        self.running = running
        self.in_system = in_system
        self.counts = counts
        self.in_progress = 0
        """Runs of this type in progress now, on any worker (a start that finds one overlaps it)."""

    def time_limit(self, run_s: float) -> tuple[float, str] | None:
        """The limit that cuts a run of ``run_s`` short (when, and which), or None."""
        limits = [(limit, key) for limit, key in ((self.soft_time_limit_s, "soft_time_limits"), (self.hard_time_limit_s, "hard_time_limits"))
                  if limit is not None and limit < run_s]
        return min(limits) if limits else None


class Task(Message):
    """A task message: a :class:`~models.message.Message` that knows its task type, its ETA
    (``eta_s``, None: due at once) and how many times the task has been retried (``retries``).
    A retry is a new message with the same task id (the same ``id``). ``chord``: the
    :class:`~models.celery_chords.Chord` it is a header task of, if any."""

    __slots__ = ("type", "eta_s", "retries", "chord")

    def __init__(self, id: int, created_s: float, type: TaskType, eta_s: float | None = None, retries: int = 0, chord=None):
        super().__init__(id, created_s)
        self.type = type
        self.eta_s = eta_s
        self.retries = retries
        self.chord = chord


class TaskLedger:
    """What the app knows of its tasks across workers: when each task waiting for its first
    reservation was sent (for the ``queued`` boundary), when each task without an outcome was
    sent (for ``in_system``), and which tasks have started a run and not finished it (another
    start is a rerun)."""

    def __init__(self):
        self.sent_s: dict[int, float] = {}
        self.open_s: dict[int, float] = {}
        self.started: set[int] = set()

    def sent(self, task: Task, now: float) -> None:
        self.sent_s[task.id] = self.open_s[task.id] = now
        task.type.queued.enter(now)
        task.type.in_system.enter(now)
        if task.type.result is not None:
            task.type.result.awaiting.enter(now)

    def retried(self, retry: Task, now: float) -> None:
        """A run failed and ``retry``, its new message, was published now: its wait until a
        worker reserves it is a queue wait, and its run will not be a rerun."""
        self.started.discard(retry.id)
        self.sent_s[retry.id] = now
        retry.type.queued.enter(now)

    def settled(self, task: Task, now: float, state: str | None = None, data_s: float | None = None, written: bool = False) -> None:
        """``task`` has its outcome (succeeded, failed, lost, or refused on its way back to the
        queue); ``state``: the result written for its caller to see (``SUCCESS``, ``FAILURE``), or
        None (``written``: the child that ran it has just written it); ``data_s``: when the run
        that produced it started. A chord's header task tells its chord once its result is
        written."""
        self.started.discard(task.id)
        sent = self.open_s.pop(task.id, None)
        if sent is None:
            return
        task.type.in_system.leave(now, sent)
        chord = task.chord
        then = None if chord is None else (lambda written_s: task.type.chord_join.member_done(chord, state == "SUCCESS"))
        if task.type.result is not None:
            task.type.result.outcome(sent, state is not None, then, data_s, written)
        elif then is not None:
            then(now)

    def reserved(self, task: Task, now: float) -> bool:
        """A worker reserved ``task`` now; True if this is its first reservation."""
        sent = self.sent_s.pop(task.id, None)
        if sent is None:
            return False
        task.type.queued.leave(now, sent)
        return True

    def start(self, task: Task) -> None:
        task.type.counts.add("runs")
        if task.id in self.started:
            task.type.counts.add("reruns")
        else:
            self.started.add(task.id)


def publish(task_type: TaskType, queue, fates, ledger: TaskLedger, now: float, chord=None) -> bool:
    """``delay()`` at ``now``: a new task of ``task_type`` (due after its countdown) published to
    ``queue``; a refused publish is rejected. Returns whether it was accepted."""
    made = fates.new_message(now)
    task = Task(made.id, now, task_type, None if task_type.countdown is None else now + task_type.countdown(), chord=chord)
    task_type.counts.add("sent")
    if queue.put(task):
        fates.admitted(task, now)
        ledger.sent(task, now)
        return True
    task_type.counts.add("refused")
    fates.rejected(task, now, admitted=False)
    return False


class Caller:
    """The code that calls ``task.delay()``: at each arrival of ``arrivals`` (an arrival process:
    ``next_arrival(now)``) it publishes a new task of ``task_type`` to ``queue`` (a
    :class:`~models.broker.Sender`); a refused publish is rejected (``delay()`` raises).

    Celery beat is a caller too, its arrivals a schedule (:mod:`models.celery_beat`: an interval
    from when it started, or crontab times), and neither skips a send nor waits for the previous
    run to end, so a run that outlasts the interval overlaps the next one. A second beat process
    (``duplicate``: one that should not be running) sends every task again: its sends are counted
    as ``beat_duplicates``."""

    def __init__(self, env, task_type: TaskType, arrivals, queue, fates, ledger: TaskLedger, duplicate: bool = False):
        self.env = env
        self.duplicate = duplicate
        self.task_type = task_type
        self.arrivals = arrivals
        self.queue = queue
        self.fates = fates
        self.ledger = ledger
        self.process = env.process(self._run())

    def _run(self):
        env = self.env
        task_type = self.task_type
        for arrival in arrival_events(env, self.arrivals):
            yield arrival
            now = env.now
            if self.duplicate:
                task_type.counts.add("beat_duplicates")
            join = task_type.chord_join
            chord = None if join is None else join.start(task_type.chord_size)
            for _ in range(max(task_type.chord_size, 1)):
                if not publish(task_type, self.queue, self.fates, self.ledger, now, chord) and chord is not None:
                    join.member_done(chord, succeeded=False)


class CeleryApp:
    """A Celery application: its task types, the callers sending them, the workers running
    them (:class:`~models.celery_worker.CeleryWorker`) and the transports over its Redis queues
    (:class:`~models.celery_kombu.KombuRedisTransport`), and its result backend
    (:class:`~models.celery_results.ResultBackend`, or None). It holds what its workers hold and
    what its transports keep in their unacked indexes."""

    def __init__(self, name: str, task_types: list[TaskType], callers: list[Caller], workers: dict[str, list], transports: list = (),
                 results=None):
        self.name = name
        self.task_types = task_types
        self.callers = callers
        self.workers = workers
        self.transports = list(transports)
        self.results = results
        self.readers: dict = {}
        """Requests reading what its tasks precomputed (:class:`~models.celery_reads.Reader`), by name."""

    def held_ids(self):
        for group in self.workers.values():
            for worker in group:
                yield from worker.held_ids()
        for transport in self.transports:
            yield from transport.held_ids()
