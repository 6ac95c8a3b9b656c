"""RabbitMQ's memory alarm: back pressure that blocks every publisher."""

from __future__ import annotations


class MemoryAlarm:
    """Blocks publishers while a queue holds more than ``limit`` messages.

    RabbitMQ's memory monitor samples the node's memory every ``memory_monitor_interval`` (2.5 s by
    default); above the high watermark it raises the alarm and stops reading from every publishing
    connection until memory falls back below it, while consumers go on. Here memory is the queue's
    messages, ready and unacknowledged (a queue keeps unacknowledged messages until they are acked),
    as counted by ``level()``, against a limit in messages (a byte watermark is turned into
    messages by the builder). The sampling makes the alarm trip up to one interval late and clear
    up to one interval late, as the real one does.

    ``gate()`` is what publishers check: None when they may publish, else an event that fires when
    the alarm clears. Alarms raised in the measurement window and the time spent in alarm inside it
    are counted (``counts['memory_alarms']``, :meth:`alarm_s`).
    """

    def __init__(self, env, level, limit: int, interval_s: float, window_start_s: float, counts):
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
                self.counts.add("memory_alarms")
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
