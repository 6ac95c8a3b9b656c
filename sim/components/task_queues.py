"""``task_queues:`` Celery apps: task types sent by callers to queues on brokers (the transport),
and groups of Celery workers that reserve and run them (:mod:`models.celery`,
:mod:`models.celery_worker`)."""

from __future__ import annotations

import difflib
from typing import Annotated, Iterable, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from models.celery import Caller, CeleryApp, RetryPolicy, TaskLedger, TaskType
from models.celery_beat import CrontabSchedule, IntervalSchedule, crontab_values
from models.celery_chords import UNLOCK_COUNTDOWN_S, ChordJoin, UnlockCheck
from models.celery_kombu import KOMBU_REDIS_VISIBILITY_TIMEOUT_S, KOMBU_SQS_VISIBILITY_TIMEOUT_S, KombuRedisTransport, KombuSqsTransport
from models.celery_queues import QueueCycle
from models.celery_reads import Reader, Staleness
from models.celery_results import ResultBackend, ResultWait
from models.celery_worker import CeleryWorker

from ..distributions import Deterministic, Uniform
from ..fields import HOUR_S, NOT_A_BOOL, Crashes, Duration, DurationOrDistribution, Name, PositiveDuration, Price, Rate, Strict
from .base import Finding, Kind, Server, Source
from .producers import ArrivalSpec, arrival_process
from .task_queue_load import queue_capacities_per_s, runs_per_s

TASK_EVENTS = ("sent", "refused", "runs", "succeeded", "duplicates", "failures", "retries", "failed", "soft_time_limits", "hard_time_limits", "overlaps", "beat_duplicates", "chord_errors", "lost", "requeued", "reruns", "redelivered")
GROUP_EVENTS = ("completed", "crashes", "children_lost", "exits")
STAGES = {"queued": "queue_wait_s", "scheduled": "scheduled_s", "reserved": "reserved_s", "running": "run_s", "in_system": "latency_s"}
"""Each task type's boundaries and the metric each gives."""


class AutoretrySpec(Strict):
    """``autoretry_for``, as a probability: each run raises with ``failure_probability`` and is
    retried as Celery does (``max_retries`` 3, null: for ever; ``default_retry_delay`` 180 s;
    ``retry_backoff`` true or a factor N: countdowns N, 2N, 4N… capped at ``retry_backoff_max``
    600 s, drawn uniformly from 0 to that with ``retry_jitter``, on by default)."""

    failure_probability: Annotated[float, Field(ge=0, lt=1), NOT_A_BOOL]
    max_retries: Optional[Annotated[int, Field(ge=0, strict=True)]] = 3
    default_retry_delay: Duration = 180.0
    retry_backoff: Union[Annotated[bool, Field(strict=True)], Annotated[int, Field(ge=1, strict=True)]] = False
    retry_backoff_max: Duration = 600.0
    retry_jitter: Annotated[bool, Field(strict=True)] = True


CronField = Union[Annotated[int, Field(strict=True)], str, list[Annotated[int, Field(strict=True)]]]


class Crontab(Strict):
    """Celery's ``crontab(minute, hour, day_of_week)``: each field a number, a list of numbers, or
    a crontab expression (``"*/15"``, ``"9-17"``, ``"0,30"``, ``"mon-fri"``), ``*`` (every value)
    by default, as Celery parses them (:func:`models.celery_beat.crontab_values`). The simulation
    starts at 00:00 on a Monday."""

    minute: CronField = "*"
    hour: CronField = "*"
    day_of_week: CronField = "*"

    @field_validator("minute", "hour", "day_of_week")
    @classmethod
    def _parses(cls, value, info):
        crontab_values(info.field_name, value)
        return value

    def schedule(self, started_s: float) -> CrontabSchedule:
        return CrontabSchedule(*(crontab_values(field, getattr(self, field)) for field in ("minute", "hour", "day_of_week")), started_s)


class BeatSpec(Strict):
    """Celery beat sends the task every ``every`` (the first time one interval after it starts),
    or at the times of its ``crontab``, without skipping or waiting for the previous run.
    ``schedulers``: how many beat processes run (one is right; each more sends every task again);
    ``started_at``: when each started (default: all at 0), so that a second one sends out of phase
    with an interval schedule (a crontab is on the wall clock: all send together)."""

    every: Optional[PositiveDuration] = None
    crontab: Optional[Crontab] = None
    schedulers: Annotated[int, Field(ge=1, strict=True)] = 1
    started_at: Optional[list[Duration]] = None

    @model_validator(mode="after")
    def _one_schedule(self):
        if (self.every is None) == (self.crontab is None):
            raise ValueError("give either every (an interval) or crontab (minutes, hours and days of the week)")
        if self.started_at is not None:
            if "schedulers" in self.model_fields_set and self.schedulers != len(self.started_at):
                raise ValueError(f"started_at gives {len(self.started_at)} start times for {self.schedulers} schedulers")
            if not self.started_at:
                raise ValueError("started_at needs a start time for each scheduler")
        return self

    def scheduler_count(self) -> int:
        return len(self.started_at) if self.started_at is not None else self.schedulers

    def sends_per_s(self) -> float:
        """Sends a second of one scheduler in the long run."""
        return 1.0 / self.every if self.every is not None else self.crontab.schedule(0.0).sends_per_s

    def schedules(self) -> list:
        """Each beat process's schedule (an arrival process)."""
        starts = self.started_at or [0.0] * self.schedulers
        if self.every is not None:
            return [IntervalSchedule(self.every, start) for start in starts]
        return [self.crontab.schedule(start) for start in starts]


class ChordSpec(Strict):
    """Each call is ``chord([task] * size)(callback)``: ``size`` tasks of this type in parallel,
    then the ``callback`` task (another task of the app, with neither arrivals nor beat) once
    all have succeeded; ``join``: ``counter`` (Redis, Memcached, DynamoDB backends) or ``poll``
    (other backends: a ``chord_unlock`` task on the callback's queue, due 1 s after the call and
    retried every ``poll_interval``, 1 s, until it finds every result; each run takes
    ``unlock_run_time``, by default none: this model's choice). Its runs are the task type
    ``TASK_chord_unlock``; ``asyncsim check`` does not count them."""

    size: Annotated[int, Field(ge=1, strict=True)]
    callback: Name
    join: Literal["counter", "poll"] = "counter"
    poll_interval: PositiveDuration = 1.0
    unlock_run_time: Optional[DurationOrDistribution] = None


class GroupSpec(Strict):
    """Each call is ``group([task] * size).apply_async()``: ``size`` tasks of this type in
    parallel, no callback; with the app's result backend (and not ``ignore_result``) the caller
    waits for all their results (``GroupResult.get()``): ``group_join_s``."""

    size: Annotated[int, Field(ge=1, strict=True)]


class TaskSpec(Strict):
    """One task type: ``delay()`` calls arriving as ``arrivals``, published to ``queue`` (a
    broker), or sent by Celery ``beat``, each run taking ``run_time``; with a ``countdown``, each call is due that long
    after it is sent (``apply_async(countdown=…)``). ``acks_late``: acknowledged after the run (Celery's
    default: just before); ``reject_on_worker_lost``: a task whose pool child dies goes back to
    the queue instead of being acknowledged as failed. ``autoretry``: its runs fail and are
    retried; ``rate_limit``: each worker starts at most that many a second (ideal limiter);
    ``soft_time_limit``: a run that long fails (retried as its ``autoretry`` says);
    ``time_limit``: a run that long has its child killed (the task fails; the child is replaced).
    With the app's ``result_backend`` (unless ``ignore_result``), the caller waits for the result:
    blocking on ``get()``, or polling every ``poll_interval``. ``chord``: each call is a chord of
    tasks of this type and a callback; ``group``: a group of them, without one. A chord's callback task has neither ``arrivals`` nor
    ``beat``: the chords send it."""

    name: Name
    queue: Name
    arrivals: Optional[ArrivalSpec] = None
    beat: Optional[BeatSpec] = None
    run_time: DurationOrDistribution
    countdown: Optional[DurationOrDistribution] = None
    acks_late: bool = False
    reject_on_worker_lost: bool = False
    autoretry: Optional[AutoretrySpec] = None
    rate_limit: Optional[Rate] = None
    soft_time_limit: Optional[PositiveDuration] = None
    time_limit: Optional[PositiveDuration] = None
    ignore_result: bool = False
    poll_interval: Optional[PositiveDuration] = None
    chord: Optional[ChordSpec] = None
    group: Optional[GroupSpec] = None

    @model_validator(mode="after")
    def _one_source(self):
        if self.arrivals is not None and self.beat is not None:
            raise ValueError("give either arrivals (calls from the application) or beat (a periodic task), not both")
        if self.chord is not None and self.group is not None:
            raise ValueError("give either chord (a group and a callback) or group (no callback), not both")
        return self

    def fan_out(self) -> int:
        """Tasks each call sends: a chord's or a group's size, or one."""
        return self.chord.size if self.chord is not None else self.group.size if self.group is not None else 1

    @property
    def is_callback(self) -> bool:
        """Sent by chords only."""
        return self.arrivals is None and self.beat is None


class WorkerGroupSpec(Strict):
    """``count`` Celery worker instances, each ``celery worker -Q <consumes> -c <concurrency>``
    (``consumes``: a queue, or a list of Redis queues taken from in turn, as kombu's BRPOP cycle
    does: :class:`~models.celery_queues.QueueCycle`) with ``worker_prefetch_multiplier`` = ``prefetch_multiplier`` (Celery's default 4; 0: no
    limit). ``crashes``: a worker's main process dies and takes its children with it;
    ``child_crashes``: each pool child dies on its own and is replaced after the restart time;
    ``child_replacement_time``: how long a child killed by a hard time limit takes to replace
    (this model's choice: 1 s). ``rate_limiter``: ``ideal`` spaces a rate-limited type's starts
    1/rate apart; ``event_loop`` behaves as Celery 5.x's worker does (token buckets retried by
    timers that its event loop fires 10 a pass, a pass a second when nothing wakes it).
    ``broker_channel_error_retry`` (Celery's setting, off by default): whether a worker whose
    RabbitMQ channel is closed (a consumer timeout before 4.3) reconnects at once, or, as by
    default, treats it as an unrecoverable error: a warm shutdown, then the process exits
    (``exits``) and its supervisor starts a new one after ``supervisor_restart_time`` (this
    model's choice, 10 s). ``price_per_hour``: what one worker instance (with its
    ``concurrency`` children) costs an hour, paid for the whole window, down or not."""

    name: Name
    consumes: Union[Name, Annotated[list[Name], Field(min_length=1)]]
    count: Annotated[int, Field(ge=1, strict=True)] = 1
    concurrency: Annotated[int, Field(ge=1, strict=True)]
    prefetch_multiplier: Annotated[int, Field(ge=0, strict=True)] = 4
    crashes: Optional[Crashes] = None
    child_crashes: Optional[Crashes] = None
    child_replacement_time: Duration = 1.0
    rate_limiter: Literal["ideal", "event_loop"] = "ideal"
    broker_channel_error_retry: Annotated[bool, Field(strict=True)] = False
    supervisor_restart_time: Duration = 10.0
    price_per_hour: Optional[Price] = None

    @property
    def queues(self) -> list[str]:
        """The queues it consumes, in the order of ``-Q``."""
        return [self.consumes] if isinstance(self.consumes, str) else list(dict.fromkeys(self.consumes))


class TransportOptions(Strict):
    """Celery's ``broker_transport_options`` (kombu's defaults). On Redis a task unacknowledged for
    ``visibility_timeout`` (1 h) is restored to its queue by the next scan; a worker scans when it
    starts, then every ``unacked_restore_interval`` × ``unacked_restore_throttle``. On SQS kombu
    creates the queue with ``visibility_timeout`` (30 min) as its VisibilityTimeout: an SQS
    broker that does not set its own ``visibility_timeout`` (a queue that exists) gets it; each
    receive long-polls ``wait_time_seconds`` (10 s), and an empty one is followed by a pause of
    ``polling_interval`` (1 s)."""

    visibility_timeout: Optional[PositiveDuration] = None
    wait_time_seconds: Annotated[Duration, Field(le=20.0)] = 10.0
    polling_interval: Duration = 1.0
    unacked_restore_interval: PositiveDuration = 10.0
    unacked_restore_throttle: Annotated[int, Field(ge=1, strict=True)] = 10


class ResultBackendSpec(Strict):
    """Celery's ``result_backend``: a result is written ``write_time`` after the run ends and kept
    ``result_expires`` (Celery's default: one day)."""

    write_time: DurationOrDistribution
    result_expires: PositiveDuration = 86400.0


class ReaderSpec(Strict):
    """Requests arriving as ``arrivals`` that read what the task ``reads`` last produced (a
    dashboard served from a table a periodic aggregation refreshes): no wait, but data as old as
    the latest successful run's start."""

    name: Name
    reads: Name
    arrivals: ArrivalSpec


class CeleryAppSpec(Strict):
    """A Celery application: its ``tasks``, the ``workers`` that run them, and the options of
    kombu's Redis transport, used for the queues on Redis brokers."""

    name: Name
    tasks: Annotated[list[TaskSpec], Field(min_length=1)]
    workers: Annotated[list[WorkerGroupSpec], Field(min_length=1)]
    broker_transport_options: TransportOptions = TransportOptions()
    result_backend: Optional[ResultBackendSpec] = None
    readers: list[ReaderSpec] = []

    @model_validator(mode="after")
    def _unique_names(self):
        names = [item.name for item in (*self.tasks, *self.workers, *self.readers)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"the name {', '.join(repr(n) for n in twice)} is given to more than one task, worker group or reader")
        tasks = {t.name for t in self.tasks}
        for reader in self.readers:
            if reader.reads not in tasks:
                raise ValueError(f"readers: {reader.name} reads '{reader.reads}', which is not a task of the app")
        return self

    @model_validator(mode="after")
    def _chords_and_callbacks(self):
        tasks = {t.name: t for t in self.tasks}
        for t in self.tasks:
            if t.chord is None:
                continue
            callback = tasks.get(t.chord.callback)
            if callback is None or not callback.is_callback or callback.chord is not None:
                raise ValueError(f"{t.name}: a chord's callback must be a task of the app with neither arrivals nor beat nor a chord of its own; "
                                 f"'{t.chord.callback}' is not one")
            if self.result_backend is None or t.ignore_result:
                raise ValueError(f"{t.name}: a chord needs its header's results: give the app a result_backend (and not ignore_result)")
            if t.chord.join == "poll" and f"{t.name}_chord_unlock" in tasks:
                raise ValueError(f"{t.name}_chord_unlock: the name of the chord_unlock tasks of {t.name}'s chords; give the task another")
        called = {t.chord.callback for t in self.tasks if t.chord is not None}
        orphans = [t.name for t in self.tasks if t.is_callback and t.name not in called]
        if orphans:
            raise ValueError(f"{', '.join(orphans)}: a task needs arrivals or beat, unless it is a chord's callback")
        return self

    def queues(self) -> set[str]:
        return {t.queue for t in self.tasks} | {q for w in self.workers for q in w.queues}


def unknown(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"'{name}' is not a broker{hint}; brokers: {', '.join(candidates) or 'none'}"


class TaskQueues(Kind):
    section = "task_queues"
    noun = "a Celery app"
    Spec = CeleryAppSpec
    build_order = 7

    def problems(self, spec: CeleryAppSpec, scenario) -> Iterable[Finding]:
        brokers = [b.name for b in scenario.brokers]
        for i, task in enumerate(spec.tasks):
            if task.queue not in brokers:
                yield Finding(f"tasks.{i}.queue", unknown(task.queue, brokers))
            elif not any(task.queue in w.queues for w in spec.workers):
                yield Finding(f"tasks.{i}.queue", f"no worker of {spec.name} consumes '{task.queue}': its tasks would never run")
        kinds = {b.name: b.kind for b in scenario.brokers}
        for i, group in enumerate(spec.workers):
            at = f"workers.{i}.consumes"
            for j, queue in enumerate(group.queues):
                where = at if isinstance(group.consumes, str) else f"{at}.{j}"
                if queue not in brokers:
                    yield Finding(where, unknown(queue, brokers))
                elif len(group.queues) > 1 and kinds[queue] != "redis":
                    yield Finding(where, f"'{queue}' is a {kinds[queue]} queue: a worker consuming several queues is modelled on Redis "
                                         "queues only (kombu's BRPOP cycle)")
        for broker in scenario.brokers:
            if broker.name in spec.queues() and broker.kind == "sqs" and "wait_time" in broker.model_fields_set:
                yield Finding(None, f"the queue '{broker.name}' carries {spec.name}'s tasks: kombu's receives ask for WaitTimeSeconds "
                                    "from broker_transport_options.wait_time_seconds (10 s by default), whatever the queue's wait_time; "
                                    "set it there")
            if broker.name in spec.queues() and broker.kind == "redis" and (broker.mode != "list" or broker.reliable):
                yield Finding(None, f"the queue '{broker.name}' is a Redis {'stream' if broker.mode == 'stream' else 'reliable list'}: kombu's "
                                    "Redis transport reads a plain list (BRPOP) and emulates acknowledgements itself (mode: list, reliable: false)")
        queues = spec.queues()
        others = [(p.name, p.sends_to) for p in (*scenario.producers, *scenario.clients)] + [(w.name, w.consumes) for w in scenario.workers]
        for name, queue in others:
            if queue in queues:
                yield Finding(None, f"'{name}' also uses the queue '{queue}', which carries {spec.name}'s tasks only")

    def flows(self, spec: CeleryAppSpec) -> list:
        """A source per task type (its callers) and a server per worker group."""
        sources = [Source(f"{spec.name}.{t.name}", t.queue, runs_per_s(spec, t)) for t in spec.tasks]
        return sources + [Server(f"{spec.name}.{g.name}", queue, capacity, g.count * g.concurrency)
                          for g in spec.workers for queue, capacity in queue_capacities_per_s(spec, g).items()]

    def build(self, spec: CeleryAppSpec, context) -> CeleryApp:
        """Task types with their boundaries, then the workers (so they consume before the first
        call), then the callers; each draws from streams keyed by APP:TASK or APP:GROUP/i."""
        ledger = TaskLedger()
        env, fates = context.env, context.fates
        queues = {name: self._transport(spec, name, context) for name in sorted(spec.queues())}
        backend = None
        if spec.result_backend is not None:
            b = spec.result_backend
            backend = ResultBackend(env, context.sampler(b.write_time.build(), "write_time", f"{spec.name}:results"), b.result_expires,
                                    context.boundary(f"{spec.name}:results", "tasks", keep_sojourns=False), context.counter(f"{spec.name}:results"))
        types = []
        for t in spec.tasks:
            name = f"{spec.name}:{t.name}"
            stages = [context.boundary(f"{name}:{stage}", "tasks") for stage in STAGES]
            countdown = None if t.countdown is None else context.sampler(t.countdown.build(), "countdown", name)
            result = None
            if backend is not None and not t.ignore_result:
                result = ResultWait(env, backend, context.boundary(f"{name}:awaiting", "tasks"), t.poll_interval, Staleness(context.window_start_s))
            types.append(TaskType(t.name, t.queue, context.sampler(t.run_time.build(), "run_time", name), *stages, context.counter(name),
                                  acks_late=t.acks_late, reject_on_worker_lost=t.reject_on_worker_lost, countdown=countdown,
                                  retry=self._retry(t, context, name), rate_limit_per_s=t.rate_limit,
                                  soft_time_limit_s=t.soft_time_limit, hard_time_limit_s=t.time_limit, result=result))
        workers = {}
        for g in spec.workers:
            group = f"{spec.name}:{g.name}"
            busy, counts = context.boundary(group, "workers", keep_sojourns=False), context.counter(group)
            workers[g.name] = []
            for i in range(g.count):
                queue = self._consumed(g, queues, env)
                scanner = queue.scans if isinstance(queue, (KombuRedisTransport, QueueCycle)) else None
                workers[g.name].append(CeleryWorker(
                    env, f"{group}/{i}", queue, g.concurrency, g.prefetch_multiplier, fates, ledger, busy, counts,
                    crashes=context.crashes(g.crashes, f"{group}/{i}"), child_crashes=context.crashes(g.child_crashes, f"{group}/{i}:children"),
                    scanner=scanner, replacement_s=g.child_replacement_time, event_loop_limiter=g.rate_limiter == "event_loop",
                    channel_error_retry=g.broker_channel_error_retry, restart_s=g.supervisor_restart_time))
        named = {t.name: task_type for t, task_type in zip(spec.tasks, types)}
        unlocks = []
        for t, task_type in zip(spec.tasks, types):
            if t.chord is not None:
                joined = context.boundary(f"{spec.name}:{t.name}:chord_join", "tasks")
                callback = named[t.chord.callback]
                unlock = self._unlock_type(spec, t, callback.queue, context) if t.chord.join == "poll" else None
                if unlock is not None:
                    unlocks.append(unlock)
                task_type.chord_join = ChordJoin(env, callback, queues[callback.queue], fates, ledger, joined, task_type.counts, unlock)
                task_type.chord_size = t.chord.size
            elif t.group is not None:
                if task_type.result is not None:
                    task_type.chord_join = ChordJoin(env, None, None, fates, ledger, context.boundary(f"{spec.name}:{t.name}:group_join", "tasks"),
                                                     task_type.counts, errors_key="group_errors")
                task_type.chord_size = t.group.size
        callers = [caller for t, task_type in zip(spec.tasks, types) for caller in self._callers(spec, t, task_type, queues[t.queue], ledger, context)]
        transports = [q for q in queues.values() if isinstance(q, KombuRedisTransport)]
        app = CeleryApp(spec.name, types + unlocks, callers, workers, transports, backend)
        app.readers = {r.name: Reader(env, named[r.reads], arrival_process(r.arrivals, context, f"{spec.name}:{r.name}"),
                                      Staleness(context.window_start_s), context.counter(f"{spec.name}:{r.name}")) for r in spec.readers}
        return app

    @staticmethod
    def _unlock_type(spec: CeleryAppSpec, header: TaskSpec, queue: str, context) -> TaskType:
        """The ``chord_unlock`` tasks of ``header``'s chords, on their callback's ``queue``."""
        name = f"{spec.name}:{header.name}_chord_unlock"
        stages = [context.boundary(f"{name}:{stage}", "tasks") for stage in STAGES]
        run = header.chord.unlock_run_time
        return TaskType(f"{header.name}_chord_unlock", queue, context.sampler(run.build() if run else Deterministic(0.0), "run_time", name), *stages,
                        context.counter(name), countdown=lambda: UNLOCK_COUNTDOWN_S, retry=UnlockCheck(header.chord.poll_interval))

    @staticmethod
    def _consumed(group: WorkerGroupSpec, queues: dict, env):
        """What one worker of ``group`` reads: its queue, or a cycle over its Redis queues."""
        if len(group.queues) == 1:
            return queues[group.queues[0]]
        return QueueCycle(env, {name: queues[name] for name in group.queues})

    def _callers(self, spec: CeleryAppSpec, task: TaskSpec, task_type: TaskType, queue, ledger: TaskLedger, context) -> list[Caller]:
        """The application's calls (drawn from the stream APP:TASK ``arrivals``), or each beat
        scheduler's sends."""
        env, fates = context.env, context.fates
        if task.is_callback:
            return []
        if task.beat is None:
            return [Caller(env, task_type, arrival_process(task.arrivals, context, f"{spec.name}:{task.name}"), queue, fates, ledger)]
        return [Caller(env, task_type, schedule, queue, fates, ledger, duplicate=k > 0) for k, schedule in enumerate(task.beat.schedules())]

    def _retry(self, task: TaskSpec, context, name: str) -> RetryPolicy | None:
        a = task.autoretry
        if a is None:
            return None
        return RetryPolicy(a.failure_probability, context.sampler(Uniform(0.0, 1.0), "retries", name), a.max_retries, a.default_retry_delay,
                           int(a.retry_backoff), a.retry_backoff_max, a.retry_jitter)

    def _transport(self, spec: CeleryAppSpec, queue: str, context):
        """What the app's callers and workers talk to for ``queue``: the broker itself (RabbitMQ),
        or kombu's transport over it: on Redis one unacked index per queue's database, on SQS its
        polling, with the queue's visibility timeout and the receives' wait time kombu's."""
        broker = context.target(queue)
        broker_spec = next(b for b in context.scenario.brokers if b.name == queue)
        options = spec.broker_transport_options
        if broker_spec.kind == "sqs":
            if "visibility_timeout" not in broker_spec.model_fields_set:
                broker.visibility_timeout_s = options.visibility_timeout or KOMBU_SQS_VISIBILITY_TIMEOUT_S
            broker.wait_time_s = options.wait_time_seconds
            return KombuSqsTransport(context.env, broker, options.polling_interval)
        if broker_spec.kind != "redis":
            return broker
        return KombuRedisTransport(context.env, broker, context.counter(f"{spec.name}:{queue}:kombu"),
                                   options.visibility_timeout or KOMBU_REDIS_VISIBILITY_TIMEOUT_S,
                                   options.unacked_restore_interval, options.unacked_restore_throttle)

    def measure(self, spec: CeleryAppSpec, app: CeleryApp, context, measures) -> None:
        """Per task type its queue wait, time reserved in a worker's buffer and run time (mean and
        percentiles), its throughput and events; per worker group its utilisation and events."""
        prefix = f"task_queues.{spec.name}"
        window = measures.window_s
        for task_type in app.task_types:
            at = f"{prefix}.tasks.{task_type.name}"
            for stage, metric in STAGES.items():
                boundary = getattr(task_type, stage)
                measures.distribution(f"{at}.{metric}", boundary.sojourns)
                measures.metrics[f"{at}.{stage}_mean"] = boundary.area / window
            join = task_type.chord_join
            if join is not None and task_type.chord_size:
                kind = "chord" if join.callback is not None else "group"
                measures.distribution(f"{at}.{kind}_join_s", join.joined.sojourns)
                if kind == "group":
                    measures.counts(at, task_type.counts, ("group_errors",))
            if task_type.result is not None:
                measures.distribution(f"{at}.result_latency_s", task_type.result.awaiting.sojourns)
                measures.distribution(f"{at}.staleness_s", task_type.result.staleness.ages_s)
                measures.metrics[f"{at}.awaiting_mean"] = task_type.result.awaiting.area / window
            measures.counts(at, task_type.counts, TASK_EVENTS)
            measures.metrics[f"{at}.throughput_per_s"] = task_type.counts["succeeded"] / window
        for g in spec.workers:
            at = f"{prefix}.workers.{g.name}"
            busy = context.recorder.boundaries[f"{spec.name}:{g.name}"]
            measures.metrics[f"{at}.utilization"] = busy.area / (g.count * g.concurrency * window)
            measures.counts(at, context.recorder.counters[f"{spec.name}:{g.name}"], GROUP_EVENTS)
        for name, reader in app.readers.items():
            measures.distribution(f"{prefix}.readers.{name}.staleness_s", reader.staleness.ages_s)
            measures.counts(f"{prefix}.readers.{name}", reader.counts, ("reads", "misses"))
        if app.results is not None:
            measures.metrics[f"{prefix}.results.stored_mean"] = app.results.stored.area / window
            measures.counts(f"{prefix}.results", app.results.counts, ("results_written",))
        for transport in app.transports:
            measures.counts(f"{prefix}.transports.{transport.name}", transport.counts, ("restored",))

    def cost_usd(self, spec: CeleryAppSpec, app: CeleryApp, context, window_s: float) -> float | None:
        """The worker groups with a ``price_per_hour``: count × price over the window."""
        priced = [g.count * g.price_per_hour for g in spec.workers if g.price_per_hour is not None]
        return sum(priced) * window_s / HOUR_S if priced else None
