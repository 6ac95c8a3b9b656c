"""Worker pools."""

from __future__ import annotations


class WorkerPool:
    """``count`` identical workers, each a long-lived SimPy process looping over one broker: take
    the oldest message (or wait for one), work on it for a service time, then pass it on to
    ``next_hop`` (a pipeline stage) or record it as processed.

    Workers never fail here, and handing a message over takes no time. A message that the next
    stage refuses is rejected. The pool's :class:`~sim.recorder.Boundary` counts messages in
    service, so its time average is the number of busy workers.
    """

    def __init__(self, env, name, source, count, service_time, boundary, recorder, next_hop=None):
        self.env = env
        self.name = name
        self.source = source
        self.count = count
        self.service_time = service_time
        self.boundary = boundary
        self.recorder = recorder
        self.next_hop = next_hop
        self.completed = 0
        self.processes = [env.process(self._work()) for _ in range(count)]

    def _work(self):
        env = self.env
        take, get = self.source.take, self.source.get
        service_time = self.service_time
        boundary = self.boundary
        recorder = self.recorder
        next_hop = self.next_hop
        timeout = env.timeout
        while True:
            message = take()
            if message is None:
                message = yield get()
            started = env.now
            boundary.enter(started)
            yield timeout(service_time())
            now = env.now
            boundary.leave(now, started)
            self.completed += 1
            if next_hop is None:
                recorder.processed(message, now)
            elif not next_hop.put(message):
                recorder.rejected(message, now, admitted=True)

    def held(self) -> int:
        """Messages in service now."""
        return self.boundary.n
