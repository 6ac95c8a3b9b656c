"""A Celery worker: one main process that reserves tasks from a broker queue, and a pool of children
that run them."""

from __future__ import annotations

from collections import deque
from typing import Callable

from simpy import Interrupt

from .broker import Consumer
from .celery import Task, TaskLedger
from .celery_hub import EventLoopLimiter
from .crashes import Crashes, crash_loop

WORKER_DOWN = object()
"""The cause of the interrupt that stops every process of a worker whose main process died."""

CHANNEL_CLOSED = object()
"""The cause of the interrupt that tells the main process to consume again on a new channel."""

CHANNEL_ERROR = object()
"""The cause of the interrupt that tells the main process an unrecoverable channel error ended it."""


class CeleryWorker:
    """One ``celery worker`` instance consuming ``broker`` with ``concurrency`` pool children
    (prefork), as Celery 5.x does (user guide: optimizing.html#prefetch-limits, tasks.html).

    **Prefetch.** The main process keeps reserving tasks (``broker.receive``) while the messages
    it holds unacknowledged are fewer than ``concurrency × prefetch_multiplier`` (the channel's
    QoS prefetch count; multiplier 0: unlimited). Reserved tasks wait in the worker's buffer, in
    order, for a free child: a short task reserved behind long ones waits for them even while
    another worker is idle (head-of-line blocking). With early acknowledgement a running task is
    already acknowledged, so it no longer counts: with multiplier 1 and ``-c 10`` up to 20 tasks
    are held (10 running, 10 reserved), as the Celery docs say. A broker that hands several
    messages at once (an SQS receive of up to 10, RabbitMQ's own prefetch) may put the buffer
    over the window by what one receive returns; kombu asks for at most what is left.

    **ETA and countdown.** A task received before its ETA is held in memory, unacknowledged,
    until due, then reserved like any other (it runs when a child is free: after, not at, its
    ETA); held tasks do not count against the prefetch window: Celery raises the channel's QoS
    prefetch count by one for each (``broker.raise_prefetch``: RabbitMQ's per-channel basic.qos)
    and lowers it when the task is due, so the worker goes on reserving
    (``worker_eta_task_limit`` of 5.6 is not modelled). On a transport that restores what stays unacknowledged (Redis: ``scanner``, the
    scans of :class:`~models.celery_kombu.KombuRedisTransport`, run while the worker is up; SQS:
    its visibility timeout) a copy delivered again is held until the same ETA: every copy runs.

    **A channel the broker closes** (RabbitMQ's ``consumer_timeout``, which a held ETA task
    longer than it reaches): the broker requeues every delivery unacknowledged on it, and the
    worker forgets its ETA tasks (``timer.clear()``), its reserved and rate-limited ones
    (``reserved_requests.clear()``, ``bucket.clear_pending()``), since their delivery tags died
    with the channel. Running tasks go on (``worker_cancel_long_running_tasks_on_connection_loss``
    off, the default): an ``acks_late`` one's ack falls on the dead channel, and its requeued copy
    runs again (a duplicate). What follows depends on how the broker ended the consumer, as
    Celery 5.x's ``Consumer.start`` (``celery/worker/consumer/consumer.py``) sorts the error that
    py-amqp raises (``amqp/exceptions.py``, ``amqp/channel.py``):

    - a consumer cancelled (RabbitMQ 4.3 on quorum queues: basic.cancel, ``ConsumerCancelled``, a
      recoverable connection error), or a closed channel with ``channel_error_retry``
      (``broker_channel_error_retry``, off by default): ``on_close``, then ``blueprint.restart``
      reconnects at once (``ensure_connection`` waits only when connecting fails; the restart
      sleeps 1 s only past 5 restarts a second), and the worker consumes again on a new channel
      at its initial prefetch count;
    - a closed channel otherwise (≤ 4.2: ``PreconditionFailed``, an irrecoverable channel error,
      not among the errors ``start`` retries): "Unrecoverable error", ``WorkController.stop``, a
      warm shutdown: the worker reserves nothing more, its running tasks finish, the process
      exits (``exits``), and its supervisor starts a new one ``restart_s`` later (this model's
      choice, 10 s: Kubernetes' first restart back-off; no growing back-off).

    **Results.** With a result backend (``TaskType.result``), the child writes the task's state
    after its run — SUCCESS, RETRY before a retry, FAILURE — and takes the next task only then
    (``celery/app/trace.py``: ``mark_as_done`` inside the traced call): the write is the child's
    busy time (``busy``), not the run's (``running``, ``run_s``; Celery's logged runtime
    includes it). A retry is published when its RETRY state is written (Celery publishes it
    just before).

    **Acknowledgement** (per task type, :class:`~models.celery.TaskType`): early (the default)
    acks when a child starts the task; ``acks_late`` after the run (and the write). Both ack at once (the main
    process acks; the children do not wait for it).

    **Failures.**

    - ``crashes``: the main process dies (SIGKILL, the node is lost) and takes its children with
      it. Running tasks that were acknowledged early are lost; everything still unacknowledged
      (reserved tasks, late-ack tasks running) goes back by the broker's rule for a consumer whose
      connection died (``disconnect``: RabbitMQ requeues, a plain Redis list loses, SQS waits for
      the visibility timeout). The worker stays down for the restart time, then starts afresh.
    - ``child_crashes``: one pool child dies (the OOM killer) and is replaced after the restart
      time, during which its slot runs nothing. Its task: acknowledged early, lost; late ack,
      acknowledged as failed (WorkerLostError) and lost, unless ``reject_on_worker_lost``, then
      rejected back to the queue (kombu's reject with requeue: LPUSH, the back of a Redis queue;
      here ack and publish again, the back of any queue).

    **Time limits** (per task type): a run that reaches its soft limit raises
    (SoftTimeLimitExceeded) and fails there, retried by the task's retry policy if it has one; a
    run that reaches its hard limit first has its child killed: the task fails for good
    (acknowledged: ``task_acks_on_failure_or_timeout``) and the slot runs nothing for
    ``replacement_s`` while a new child starts.

    ``busy`` counts tasks running (its time average is the busy children), ``counts`` is the
    worker group's window counter (``completed``, ``crashes``, ``children_lost``), ``ledger`` the
    app's :class:`~models.celery.TaskLedger`.
    """

    def __init__(self, env, name: str, broker, concurrency: int, prefetch_multiplier: int, fates, ledger: TaskLedger, busy, counts,
                 crashes: Crashes | None = None, child_crashes: Crashes | None = None, scanner: Callable | None = None,
                 replacement_s: float = 1.0, event_loop_limiter: bool = False, channel_error_retry: bool = False, restart_s: float = 10.0):
        self.env = env
        self.name = name
        self.broker = broker
        self.concurrency = concurrency
        self.limit = concurrency * prefetch_multiplier if prefetch_multiplier > 0 else None
        self.fates = fates
        self.ledger = ledger
        self.busy = busy
        self.counts = counts
        self.consumer = Consumer(name, on_closed=self._channel_closed)
        self.replacement_s = replacement_s
        self.channel_error_retry = channel_error_retry
        self.restart_s = restart_s
        self._drained = None
        self.reserved: deque = deque()
        """(delivery, reserved at) waiting for a child, in order of reception."""
        self.scheduled: dict = {}
        """Delivery → when it was received, for tasks held until their ETA."""
        self.limited: dict = {}
        """Delivery → when it was reserved, for tasks waiting for their rate limit's next slot."""
        self._next_start: dict = {}
        self.limiter = EventLoopLimiter(env, self._release) if event_loop_limiter else None
        self.scanner = scanner
        self._scanning = None
        self._generation = 0
        self.running: dict[int, tuple] = {}
        """Slot → (delivery, started at, acknowledged) of the task each busy child runs."""
        self.writing: set[int] = set()
        """Slots whose child has run its task and is writing its state to the result backend."""
        self._waiting: dict[int, object] = {}
        self._room = None
        self._children: list = []
        self._main = None
        self.up = True
        self._start()
        if crashes is not None:
            env.process(crash_loop(env, crashes, self.crash, self._start))
        if child_crashes is not None:
            for slot in range(concurrency):
                env.process(crash_loop(env, child_crashes, lambda down_s, slot=slot: self._kill_child(slot, down_s)))

    def _start(self) -> None:
        self.up = True
        self._generation += 1
        if self.scanner is not None:
            self._scanning = self.env.process(self.scanner())
        self._main = self.env.process(self._consume())
        self._children = [self.env.process(self._child(slot)) for slot in range(self.concurrency)]

    def crash(self, down_s: float) -> None:
        """The main process dies and its children with it (they come back when the crash loop
        calls :meth:`_start` after ``down_s``)."""
        self.up = False
        self.counts.add("crashes")
        for process in (self._main, *self._children, *([self._scanning] if self._scanning else [])):
            if process.is_alive:
                process.interrupt(WORKER_DOWN)

    def _kill_child(self, slot: int, down_s: float) -> None:
        child = self._children[slot]
        if self.up and child.is_alive:
            child.interrupt(down_s)

    # --- the main process -----------------------------------------------------------------------

    def _consume(self):
        env = self.env
        consumer = self.consumer
        receive = self.broker.receive
        ledger = self.ledger
        try:
            while True:
                if self.limit is not None and len(consumer.held) - len(self.scheduled) >= self.limit:
                    self._room = env.event()
                    yield self._room
                    continue
                deliveries = yield from receive(consumer)
                now = env.now
                if self.limiter is not None and deliveries:
                    self.limiter.poke()
                for delivery in deliveries:
                    task = delivery.message
                    if not ledger.reserved(task, now):
                        task.type.counts.add("redelivered")
                    if task.eta_s is not None and task.eta_s > now:
                        self._schedule(delivery, now)
                    else:
                        self._reserve(delivery, now)
        except Interrupt as stop:
            self._forget_reserved()
            if stop.cause is CHANNEL_CLOSED or stop.cause is CHANNEL_ERROR:
                running = {delivery for delivery, _, acked in self.running.values() if not acked}
                consumer.held = [delivery for delivery in consumer.held if delivery in running]
                self._main = env.process(self._consume() if stop.cause is CHANNEL_CLOSED else self._exit())
                return
            held, consumer.held = consumer.held, []
            self.broker.disconnect(consumer, held)

    def _channel_closed(self, cancelled: bool = False) -> None:
        if self.up and self._drained is None and self._main is not None and self._main.is_alive:
            self._main.interrupt(CHANNEL_CLOSED if cancelled or self.channel_error_retry else CHANNEL_ERROR)

    def _exit(self):
        """The warm shutdown after an unrecoverable channel error: wait for the running tasks,
        end the children, and start again ``restart_s`` later (a crash meanwhile leaves the
        restart to the crash loop)."""
        self.counts.add("exits")
        try:
            while self.running:
                self._drained = self.env.event()
                yield self._drained
            self._drained = self.env.event()
            self.up = False
            for process in (*self._children, *([self._scanning] if self._scanning else [])):
                if process.is_alive:
                    process.interrupt(WORKER_DOWN)
            yield self.env.timeout(self.restart_s)
        except Interrupt:
            return
        finally:
            self._drained = None
        self._start()

    def _stopped_running(self, slot: int):
        """The child in ``slot`` no longer runs its task: its entry, if any (see ``running``)."""
        entry = self.running.pop(slot, None)
        if not self.running and self._drained is not None and not self._drained.triggered:
            self._drained.succeed()
        return entry

    def _forget_reserved(self) -> None:
        """Drop the tasks held until their ETA, rate-limited or reserved (not those running)."""
        self._room = None
        now = self.env.now
        for delivery, since in self.scheduled.items():
            delivery.message.type.scheduled.leave(now, since)
        self.scheduled.clear()
        for delivery, since in self.limited.items():
            delivery.message.type.reserved.leave(now, since)
        self.limited.clear()
        self._next_start.clear()
        if self.limiter is not None:
            self.limiter.clear()
        for delivery, since in self.reserved:
            delivery.message.type.reserved.leave(now, since)
        self.reserved.clear()

    def _schedule(self, delivery, now: float) -> None:
        """Hold a task until its ETA, outside the prefetch window (Celery raises the channel's
        prefetch count by one for each ETA task it holds)."""
        delivery.message.type.scheduled.enter(now)
        self.scheduled[delivery] = now
        self.broker.raise_prefetch(self.consumer, 1)
        generation = self._generation
        self.env.timeout(delivery.message.eta_s - now).callbacks.append(lambda _: self._due(delivery, generation))

    def _due(self, delivery, generation: int) -> None:
        if generation != self._generation or delivery not in self.scheduled:
            return  # the worker died meanwhile
        now = self.env.now
        delivery.message.type.scheduled.leave(now, self.scheduled.pop(delivery))
        self.broker.raise_prefetch(self.consumer, -1)
        self._reserve(delivery, now)

    def _reserve(self, delivery, now: float) -> None:
        """Reserve a task for the pool; a rate-limited one waits for its type's next slot here,
        holding its prefetch slot: spaced 1/rate apart (the ideal limiter), or as the worker's
        event loop lets it through (:class:`~models.celery_hub.EventLoopLimiter`)."""
        task_type = delivery.message.type
        task_type.reserved.enter(now)
        rate = task_type.rate_limit_per_s
        if rate is not None and self.limiter is not None:
            self.limited[delivery] = now
            self.limiter.limit(delivery, task_type, rate)
            return
        if rate is not None:
            at = max(now, self._next_start.get(task_type, now))
            self._next_start[task_type] = at + 1.0 / rate
            if at > now:
                self.limited[delivery] = now
                generation = self._generation
                self.env.timeout(at - now).callbacks.append(lambda _: self._released(delivery, generation))
                return
        self.reserved.append((delivery, now))
        self._wake()

    def _released(self, delivery, generation: int) -> None:
        if generation == self._generation:
            self._release(delivery)

    def _release(self, delivery) -> None:
        """A rate-limited task goes to the pool's queue."""
        if delivery in self.limited:
            self.reserved.append((delivery, self.limited.pop(delivery)))
            self._wake()

    def _wake(self) -> None:
        """Wake the child that has waited longest, if any is idle."""
        if self._waiting:
            slot = next(iter(self._waiting))
            self._waiting.pop(slot).succeed()

    def _ack(self, delivery) -> None:
        self.consumer.held.remove(delivery)
        self.broker.ack(delivery)
        if self._room is not None and not self._room.triggered:
            self._room.succeed()

    # --- the pool's children --------------------------------------------------------------------

    def _child(self, slot: int):
        pause_s = 0.0
        while True:
            try:
                if pause_s:
                    yield self.env.timeout(pause_s)
                    pause_s = 0.0
                yield from self._run_tasks(slot)
            except Interrupt as stop:
                worker_down = stop.cause is WORKER_DOWN
                self._abandon(slot, worker_down)
                if worker_down:
                    return
                self.counts.add("children_lost")
                pause_s = stop.cause

    def _run_tasks(self, slot: int):
        env = self.env
        reserved = self.reserved
        busy = self.busy
        while True:
            while not reserved:
                event = env.event()
                self._waiting[slot] = event
                yield event
            delivery, since = reserved.popleft()
            now = env.now
            task = delivery.message
            task_type = task.type
            task_type.reserved.leave(now, since)
            acked = not task_type.acks_late
            if acked:
                self._ack(delivery)
            self.ledger.start(task)
            if task_type.in_progress:
                task_type.counts.add("overlaps")
            task_type.in_progress += 1
            self.running[slot] = (delivery, now, acked)
            task_type.running.enter(now)
            busy.enter(now)
            run_s = task_type.run_time()
            limit = task_type.time_limit(run_s)
            yield env.timeout(run_s if limit is None else limit[0])
            task_type.in_progress -= 1
            task_type.running.leave(env.now, now)
            killed = limit is not None and limit[1] == "hard_time_limits"
            failed = not killed and (limit is not None or (task_type.retry is not None and task_type.retry.fails(task)))
            if not killed and task_type.result is not None:
                self.writing.add(slot)  # the child writes SUCCESS, RETRY or FAILURE before it is free
                yield env.timeout(task_type.result.backend.write_time())
                self.writing.discard(slot)
            end = env.now
            self._stopped_running(slot)
            busy.leave(end, now)
            self.counts.add("completed")
            if killed:
                task_type.counts.add("hard_time_limits")
                self._failed_for_good(task, end, written=False)
            elif failed:
                if limit is not None:
                    task_type.counts.add("soft_time_limits")
                self._failed_run(task, end)
            else:
                self._succeeded(task, end, now)
            if not acked:
                self._ack(delivery)
            if killed:
                yield env.timeout(self.replacement_s)  # the child killed is replaced

    def _succeeded(self, task, now: float, started_s: float) -> None:
        task_type = task.type
        if task_type.snapshot_s is None or started_s > task_type.snapshot_s:
            task_type.snapshot_s = started_s
        self.ledger.settled(task, now, "SUCCESS", started_s, written=True)
        task.type.counts.add("succeeded")
        if self.fates.settled(task):
            task.type.counts.add("duplicates")
        self.fates.processed(task, now)

    def _failed_for_good(self, task, now: float, written: bool = True) -> None:
        task.type.counts.add("failures")
        task.type.counts.add("failed")
        self.ledger.settled(task, now, "FAILURE", written=written)
        if not self.fates.settled(task):
            self.fates.lost(task, now)

    def _failed_run(self, task, now: float) -> None:
        """The run raised: a retry (a new message, same task id, due after the policy's
        countdown), or, after the last retry, the task fails for good (told as lost). The
        message of the failed run is acknowledged all the same (exceptions are normal outcomes)."""
        task_type = task.type
        policy = task_type.retry
        if policy is None or not policy.may_retry(task.retries):
            self._failed_for_good(task, now)
            return
        task_type.counts.add("failures")
        task_type.counts.add("retries")
        again = Task(task.id, task.created_s, task_type, now + policy.countdown_s(task.retries), task.retries + 1, task.chord)
        if self.broker.put(again):
            self.ledger.retried(again, now)
        else:
            self.ledger.settled(task, now)
            self.fates.rejected(again, now, admitted=True)

    def _abandon(self, slot: int, worker_down: bool) -> None:
        """The child in ``slot`` died: what becomes of its task (see the class docstring)."""
        self._waiting.pop(slot, None)
        entry = self._stopped_running(slot)
        if entry is not None:
            delivery, started, acked = entry
            now = self.env.now
            task = delivery.message
            if slot in self.writing:
                self.writing.discard(slot)
            else:
                task.type.in_progress -= 1
                task.type.running.leave(now, started)
            self.busy.leave(now, started)
            if acked:
                self._lost(task)
            elif not worker_down:
                if task.type.reject_on_worker_lost:
                    self._requeue(delivery)
                else:
                    self._ack(delivery)
                    self._lost(task)
        if not worker_down and self.reserved:
            self._wake()

    def _lost(self, task) -> None:
        now = self.env.now
        self.ledger.settled(task, now)
        task.type.counts.add("lost")
        if not self.fates.settled(task):
            self.fates.lost(task, now)

    def _requeue(self, delivery) -> None:
        task = delivery.message
        self._ack(delivery)
        task.type.counts.add("requeued")
        if not self.broker.put(task):
            self.ledger.settled(task, self.env.now)
            self.fates.rejected(task, self.env.now, admitted=True)

    def held_ids(self):
        """Tasks reserved or running here (unacknowledged, or acknowledged and running)."""
        yield from (d.message.id for d in self.consumer.held)
        yield from (d.message.id for d, _, _ in self.running.values())
