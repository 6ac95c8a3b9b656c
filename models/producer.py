"""Open-loop producers."""

from __future__ import annotations


class Producer:
    """Sends a new message at each arrival to ``target``, whatever happens to earlier ones (an open
    loop: a slow or full downstream does not slow the producer). A message the target refuses is
    rejected; retries belong to client policies, not to this producer.

    ``target`` is anything with ``put(message) -> bool``.
    """

    def __init__(self, env, name, arrivals, target, recorder):
        self.env = env
        self.name = name
        self.arrivals = arrivals
        self.target = target
        self.recorder = recorder
        self.sent = 0
        self.process = env.process(self._run())

    def held_ids(self):
        """An open-loop producer holds nothing: each message goes out as it is made."""
        return ()

    def _run(self):
        env = self.env
        recorder = self.recorder
        put = self.target.put
        next_arrival = self.arrivals.next_arrival
        while True:
            at = next_arrival(env.now)
            if at is None:
                return
            yield env.timeout(at - env.now)
            now = env.now
            message = recorder.new_message(now)
            self.sent += 1
            if put(message):
                recorder.admitted(message, now)
            else:
                recorder.rejected(message, now, admitted=False)
