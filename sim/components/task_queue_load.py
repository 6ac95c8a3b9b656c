"""The long-run load of a ``task_queues:`` app, for ``asyncsim check``: the messages a second
each task type puts on its queue (retries and chords included) and what each worker group can
run, with time limits, crashes and rate limits counted (see :class:`RunOutcome`)."""

from __future__ import annotations

import math

from models.celery_hub import MIN_DELAY_S


def up_fraction(crashes) -> float:
    """The long-run fraction of time a part that fails with ``crashes`` is up."""
    if crashes is None:
        return 1.0
    up = crashes.time_to_failure_distribution().mean
    return up / (up + crashes.restart_time.build().mean)


class RunOutcome:
    """What one run of a task type (a ``TaskSpec``) costs and how it ends, as its time limits
    cut it (:meth:`models.celery.TaskType.time_limit`): the limit that comes first (the hard one
    on a tie) cuts a run of S at L, so a child is busy E[min(S, L)] (``busy_s``); a run cut by
    the hard limit (P(S > L)) has its child killed, and the slot runs nothing while a new child
    starts (``killed``: that probability); a run cut by the soft limit raises, and is retried
    if the task has ``autoretry``, as a run whose ``failure_probability`` draw fails is
    (``retried``: the probability a run is retried). A run not killed is followed by the child's
    write of its state to the result backend (``write_s``, the mean write time, when the task
    stores results). Celery 5.x: ``celery/app/task.py`` (``Task.soft_time_limit``,
    ``Task.time_limit``), ``celery/concurrency/asynpool.py`` (``on_hard_timeout`` kills the
    child), ``celery/app/autoretry.py``, ``celery/app/trace.py`` (``mark_as_done``)."""

    def __init__(self, task, write_s: float = 0.0):
        self.write_s = write_s
        run = task.run_time.build()
        retry_p = task.autoretry.failure_probability if task.autoretry is not None else 0.0
        limits = [(limit_s, not hard) for limit_s, hard in ((task.time_limit, True), (task.soft_time_limit, False)) if limit_s is not None]
        self.max_retries = task.autoretry.max_retries if task.autoretry is not None else 0
        if not limits:
            self.busy_s, self.killed, self.retried = run.mean, 0.0, retry_p
            return
        limit_s, soft = min(limits)
        cut = run.survival(limit_s)
        self.busy_s = run.limited_mean(limit_s)
        if soft:
            self.killed, self.retried = 0.0, (cut + (1 - cut) * retry_p) if task.autoretry is not None else 0.0
        else:
            self.killed, self.retried = cut, (1 - cut) * retry_p

    def runs_per_task(self) -> float:
        """Runs a task takes on average: until one is not retried, or the last retry
        (``max_retries``; None: for ever) is spent: (1 − r^(n+1)) / (1 − r), r the retry probability."""
        r = self.retried
        if self.max_retries is None:
            return math.inf if r >= 1 else 1 / (1 - r)
        tries = self.max_retries + 1
        return float(tries) if r >= 1 else (1 - r**tries) / (1 - r)

    def slot_s(self, replacement_s: float) -> float:
        """How long a run holds its pool slot: its time in the child, the child's result write, and
        the replacement of a child its hard limit killed."""
        return self.busy_s + (1 - self.killed) * self.write_s + self.killed * replacement_s


def write_s(spec, task) -> float:
    """The mean time the child that ran ``task`` spends writing its state (0 without results)."""
    if spec.result_backend is None or task.ignore_result:
        return 0.0
    return spec.result_backend.write_time.build().mean


def calls_per_s(spec, task) -> float:
    """Calls a second of ``task`` in the long run: its arrivals, its beat, or its chords'."""
    if task.arrivals is not None:
        return task.arrivals.mean_rate()
    if task.beat is not None:
        return task.beat.scheduler_count() * task.beat.sends_per_s()
    return sum(calls_per_s(spec, t) for t in spec.tasks if t.chord is not None and t.chord.callback == task.name)


def runs_per_s(spec, task) -> float:
    """Messages a second ``task`` puts on its queue in the long run: a chord's header tasks, and
    retries (those its soft time limit causes too), included."""
    return calls_per_s(spec, task) * task.fan_out() * RunOutcome(task).runs_per_task()


def capacity_per_s(spec, group) -> float:
    """Runs per second ``group`` can make in the long run: count × concurrency / the mean time a
    run of its queues' mix holds a slot (retries included; a run cut at its time limit holds it
    at most that long, and a hard kill adds the child's replacement; the result write included), times the fractions of time
    its workers and children are up; and no more than lets each rate-limited type in the mix
    start at its limit on each worker (with the event-loop limiter, at most one a second under
    load). Prefetch does not change it (a worker with reserved tasks keeps its children busy)."""
    routed = [(runs_per_s(spec, t), t) for t in spec.tasks if t.queue in group.queues]
    rate = sum(r for r, _ in routed)
    if rate == 0:
        return 0.0
    mean_s = sum(r * RunOutcome(t, write_s(spec, t)).slot_s(group.child_replacement_time) for r, t in routed) / rate
    capacity = group.count * group.concurrency / mean_s * up_fraction(group.crashes) * up_fraction(group.child_crashes)
    per_worker = (lambda limit: min(limit, 1.0 / MIN_DELAY_S)) if group.rate_limiter == "event_loop" else (lambda limit: limit)
    limits = [group.count * per_worker(t.rate_limit) * rate / r for r, t in routed if t.rate_limit is not None]
    return min([capacity, *limits])


def queue_capacities_per_s(spec, group) -> dict[str, float]:
    """``group``'s capacity on each queue it consumes. A worker taking from several queues in turn
    (:class:`~models.celery_queues.QueueCycle`) never idles while one holds a task, so its
    queues are stable together when their offered work is under its children: each queue gets a
    share of the capacity in proportion to the runs a second offered to it, so that every queue
    shows the group's whole utilisation (a queue nothing is routed to, the whole capacity)."""
    capacity = capacity_per_s(spec, group)
    offered = {queue: sum(runs_per_s(spec, t) for t in spec.tasks if t.queue == queue) for queue in group.queues}
    total = sum(offered.values())
    return {queue: capacity * rate / total if rate > 0 else capacity for queue, rate in offered.items()}
