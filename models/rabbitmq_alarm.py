"""RabbitMQ's resource alarms (memory, free disk): back pressure that blocks every publisher."""

from __future__ import annotations


class ResourceAlarm:
    """Blocks publishers while ``level()`` is above ``limit``, sampled every ``interval_s``.

    The memory alarm: RabbitMQ's memory monitor samples the node's memory every
    ``memory_monitor_interval`` (2.5 s by default); above the high watermark it raises the alarm and
    stops reading from every publishing connection until memory falls back below it, while
    consumers go on. Here memory is the queue's messages held in memory, ready and unacknowledged (a
    queue keeps unacknowledged messages until they are acked), as counted by ``level()``, against a
    limit in messages (a byte watermark is turned into messages by the builder).

    The disk alarm: "when free disk space drops below a configured limit (50 MB by default), an
    alarm will be triggered and all producers will be blocked"; free space is "normally checked every
    10 seconds" (https://www.rabbitmq.com/docs/disk-alarms). Here the level is the messages the
    queue has written to disk and the limit how many fit before free space falls to the limit.

    The sampling makes an alarm trip up to one interval late and clear up to one interval late, as
    the real ones do. ``gate()`` is what publishers check: None when they may publish, else an event
    that fires when the alarm clears. Alarms raised in the measurement window and the time spent in
    alarm inside it are counted (``counts[counter]``, :meth:`alarm_s`).
    """

    def __init__(self, env, level, limit: int, interval_s: float, window_start_s: float, counts, counter: str = "memory_alarms"):
        self.counter = counter
        self.env = env
        self.level = level
        self.limit = limit
        self.interval_s = interval_s
        self.window_start_s = window_start_s
        self.counts = counts
        self.blocked = None
        self.started_s = 0.0
        self._alarm_s = 0.0
        self.process = env.process(self._monitor())

    def _monitor(self):
        env = self.env
        while True:
            yield env.timeout(self.interval_s)
            over = self.level() > self.limit
            if over and self.blocked is None:
                self.blocked = env.event()
                self.started_s = env.now
                self.counts.add(self.counter)
            elif not over and self.blocked is not None:
                self._alarm_s += self._in_window(env.now)
                blocked, self.blocked = self.blocked, None
                blocked.succeed()

    def _in_window(self, now: float) -> float:
        return max(0.0, now - max(self.started_s, self.window_start_s))

    def gate(self):
        return self.blocked

    def alarm_s(self) -> float:
        """Seconds in alarm inside the measurement window so far (an alarm still on included)."""
        ongoing = self._in_window(self.env.now) if self.blocked is not None else 0.0
        return self._alarm_s + ongoing


class CreditFlow:
    """RabbitMQ's credit-based flow control: a publishing connection that publishes faster than its
    queue can take the messages in is blocked and unblocked "several times a second, in order to
    keep the rate of message ingress at one that the rest of the server ... can handle"; to the
    client it looks as if the network bandwidth were lower (https://www.rabbitmq.com/docs/flow-control).

    The queue process spends ``publish_s`` on each publish, one at a time (``busy_until_s``: when it
    is through with those received so far). A sender starts with ``initial_credit`` messages of
    credit and gets more once the receiver has processed ``more_credit_after`` of them
    (``credit_flow_default_credit``, {400, 200} by default in RabbitMQ's configuration): here the
    publishers are blocked once ``initial_credit`` publishes wait for the queue process, until no
    more than ``initial_credit − more_credit_after`` do. Simplifications: one credit for all the
    queue's publishers (RabbitMQ keeps one per connection and channel); deliveries and acks cost the
    queue process nothing; a message is in the queue at once (its processing delays only the next
    publishers). ``gate()`` is None, or an event that fires when publishers may go on; blocks are
    counted (``counts['flow_blocks']``).
    """

    def __init__(self, env, publish_s: float, counts, initial_credit: int = 400, more_credit_after: int = 200):
        self.env = env
        self.publish_s = publish_s
        self.counts = counts
        self.initial_credit = initial_credit
        self.more_credit_after = more_credit_after
        self.busy_until_s = 0.0
        self.blocked = None

    def published(self, now: float) -> None:
        """The queue process takes one more publish to handle."""
        self.busy_until_s = max(now, self.busy_until_s) + self.publish_s
        if self.blocked is None and self.busy_until_s - now >= self.initial_credit * self.publish_s - 1e-12:
            self.blocked = self.env.event()
            self.counts.add("flow_blocks")
            resume_s = self.busy_until_s - (self.initial_credit - self.more_credit_after) * self.publish_s
            self.env.timeout(resume_s - now).callbacks.append(self._resume)

    def _resume(self, _event) -> None:
        blocked, self.blocked = self.blocked, None
        blocked.succeed()

    def gate(self):
        return self.blocked
