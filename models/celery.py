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
task that had already succeeded), ``lost`` (acknowledged and not run to the end: early ack when the worker died),
``requeued`` (a lost child's task rejected back to the queue), ``reruns`` (a run that started
for a task that had started before: the work done twice), ``redelivered`` (a copy reserved
again). Sources: Celery 5.x user guide, tasks.html ("acks_late", "reject_on_worker_lost"),
optimizing.html#prefetch-limits; kombu 5.x.

Simplifications: a task succeeds when its run ends (no exceptions, retries or results yet); callers do not wait for a blocked publisher (RabbitMQ's memory alarm): a refused
publish is rejected.
"""

from __future__ import annotations

from typing import Callable

from .message import Message


class TaskType:
    """One Celery task (``@app.task``): its name, its queue, how long a run takes
    (``run_time()``), whether it is acknowledged after the run (``acks_late``, Celery's
    ``task_acks_late``, default off: acknowledged just before it runs) and whether a task whose
    pool child dies is rejected back to the queue (``reject_on_worker_lost``, Celery's
    ``task_reject_on_worker_lost``, default off: acknowledged, so lost). ``countdown()``: each
    call is ``apply_async(countdown=…)``, due that long after it is sent (None: due at once).
    ``queued``, ``scheduled``, ``reserved``, ``running`` and ``in_system`` are its boundaries,
    ``counts`` its window counter."""

    __slots__ = ("name", "queue", "run_time", "acks_late", "reject_on_worker_lost", "countdown", "queued", "scheduled", "reserved",
                 "running", "in_system", "counts")

    def __init__(self, name: str, queue: str, run_time: Callable[[], float], queued, scheduled, reserved, running, in_system, counts,
                 acks_late: bool = False, reject_on_worker_lost: bool = False, countdown: Callable[[], float] | None = None):
        self.name = name
        self.queue = queue
        self.run_time = run_time
        self.acks_late = acks_late
        self.reject_on_worker_lost = reject_on_worker_lost
        self.countdown = countdown
        self.queued = queued
        self.scheduled = scheduled
        self.reserved = reserved
        self.running = running
        self.in_system = in_system
        self.counts = counts


class Task(Message):
    """A task message: a :class:`~models.message.Message` that knows its task type, and its ETA
    (``eta_s``, None: due at once)."""

    __slots__ = ("type", "eta_s")

    def __init__(self, id: int, created_s: float, type: TaskType, eta_s: float | None = None):
        super().__init__(id, created_s)
        self.type = type
        self.eta_s = eta_s


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

    def settled(self, task: Task, now: float) -> None:
        """``task`` has its outcome (succeeded, lost, or refused on its way back to the queue)."""
        self.started.discard(task.id)
        sent = self.open_s.pop(task.id, None)
        if sent is not None:
            task.type.in_system.leave(now, sent)

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


class Caller:
    """The code that calls ``task.delay()``: at each arrival of ``arrivals`` (an arrival process:
    ``next_arrival(now)``) it publishes a new task of ``task_type`` to ``queue`` (a
    :class:`~models.broker.Sender`); a refused publish is rejected (``delay()`` raises)."""

    def __init__(self, env, task_type: TaskType, arrivals, queue, fates, ledger: TaskLedger):
        self.env = env
        self.task_type = task_type
        self.arrivals = arrivals
        self.queue = queue
        self.fates = fates
        self.ledger = ledger
        self.process = env.process(self._run())

    def _run(self):
        env = self.env
        task_type = self.task_type
        next_arrival = self.arrivals.next_arrival
        while True:
            at = next_arrival(env.now)
            if at is None:
                return
            yield env.timeout(at - env.now)
            now = env.now
            made = self.fates.new_message(now)
            task = Task(made.id, now, task_type, None if task_type.countdown is None else now + task_type.countdown())
            task_type.counts.add("sent")
            if self.queue.put(task):
                self.fates.admitted(task, now)
                self.ledger.sent(task, now)
            else:
                task_type.counts.add("refused")
                self.fates.rejected(task, now, admitted=False)


class CeleryApp:
    """A Celery application: its task types, the callers sending them, the workers running
    them (:class:`~models.celery_worker.CeleryWorker`) and the transports over its Redis queues
    (:class:`~models.celery_kombu.KombuRedisTransport`). It holds what its workers hold and what
    its transports keep in their unacked indexes."""

    def __init__(self, name: str, task_types: list[TaskType], callers: list[Caller], workers: dict[str, list], transports: list = ()):
        self.name = name
        self.task_types = task_types
        self.callers = callers
        self.workers = workers
        self.transports = list(transports)

    def held_ids(self):
        for group in self.workers.values():
            for worker in group:
                yield from worker.held_ids()
        for transport in self.transports:
            yield from transport.held_ids()
