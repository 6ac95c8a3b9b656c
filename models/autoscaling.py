"""Autoscaling a worker pool by target tracking, with a scale-out delay and a cooldown."""

from __future__ import annotations

import math


class Autoscaler:
    """Every ``evaluation_interval_s`` it works out how many workers ``pool`` should have, within
    ``min_workers``..``max_workers``, and acts:

    - ``target_backlog_per_worker``: ceil(messages waiting in the pool's broker / target) — the
      "backlog per instance" rule AWS recommends for scaling on an SQS queue;
    - ``target_utilization``: ceil(workers × utilisation over the last interval / target) — the
      Kubernetes Horizontal Pod Autoscaler's rule (utilisation = busy time / worker time).

    Scale out: the missing workers are started and join the pool ``scale_out_delay_s`` later
    (provisioning, boot, warm-up); workers on their way count as present for later decisions.
    Scale in: the surplus workers are retired gracefully — each finishes its message first (see
    :meth:`~models.workers.WorkerPool.retire_workers`). After any action, no other for
    ``cooldown_s`` (one cooldown for both directions).

    Simplifications: no tolerance band (the HPA ignores changes within 10%) and no separate
    scale-in stabilisation window; the metric is read exactly, with no collection delay; a
    scale-in waits until no worker is on its way. ``actions`` lists ``(time, +n or −n, desired)``.
    """

    def __init__(self, env, pool, min_workers: int, max_workers: int, evaluation_interval_s: float,
                 scale_out_delay_s: float, cooldown_s: float, target_backlog_per_worker=None, target_utilization=None):
        if (target_backlog_per_worker is None) == (target_utilization is None):
            raise ValueError("one target: backlog per worker or utilisation")
        self.env = env
        self.pool = pool
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.interval_s = evaluation_interval_s
        self.scale_out_delay_s = scale_out_delay_s
        self.cooldown_s = cooldown_s
        self.target_backlog_per_worker = target_backlog_per_worker
        self.target_utilization = target_utilization
        self.starting = 0
        self.cooldown_until_s = -math.inf
        self.actions: list[tuple[float, int, int]] = []
        self.process = env.process(self._run())

    def desired(self, utilization: float) -> int:
        """The number of workers the rule asks for now, within min and max."""
        if self.target_backlog_per_worker is not None:
            wanted = math.ceil(self.pool.broker.waiting / self.target_backlog_per_worker - 1e-9)
        else:
            wanted = math.ceil(self.pool.count * utilization / self.target_utilization - 1e-9)
        return max(self.min_workers, min(self.max_workers, wanted))

    def _run(self):
        env = self.env
        pool = self.pool
        busy_before, workers_before = pool.worker_seconds(env.now)
        while True:
            yield env.timeout(self.interval_s)
            now = env.now
            busy, workers = pool.worker_seconds(now)
            utilization = (busy - busy_before) / (workers - workers_before) if workers > workers_before else 0.0
            busy_before, workers_before = busy, workers
            desired = self.desired(utilization)
            if now < self.cooldown_until_s:
                continue
            planned = pool.count + self.starting
            if desired > planned:
                n = desired - planned
                self.starting += n
                env.timeout(self.scale_out_delay_s, n).callbacks.append(self._started)
                self._acted(now, n, desired, "scale_outs")
            elif desired < planned and self.starting == 0:
                n = pool.retire_workers(planned - desired)
                if n:
                    self._acted(now, -n, desired, "scale_ins")

    def _acted(self, now: float, change: int, desired: int, event: str) -> None:
        self.actions.append((now, change, desired))
        self.pool.counts.add(event)
        self.cooldown_until_s = now + self.cooldown_s

    def _started(self, event) -> None:
        self.starting -= event.value
        self.pool.add_workers(event.value)
