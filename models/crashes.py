"""Components that fail and come back: one crash loop for all of them."""

from __future__ import annotations

from typing import Callable


class Crashes:
    """When a component fails: ``time_to_failure()`` draws how long it stays up, ``restart_time()``
    how long it then stays down (two samplers, each on its own random stream)."""

    __slots__ = ("time_to_failure", "restart_time")

    def __init__(self, time_to_failure: Callable[[], float], restart_time: Callable[[], float]):
        self.time_to_failure = time_to_failure
        self.restart_time = restart_time


def crash_loop(env, crashes: Crashes, crash: Callable[[float], None], restart: Callable[[], None] | None = None,
               gone: Callable[[], bool] | None = None):
    """A SimPy process (start it with ``env.process``) that alternates up and down for ever: up
    for a time to failure, then ``crash(down_s)`` (the component fails and will stay down
    ``down_s`` seconds, the restart time drawn at the crash), down for ``down_s``, then
    ``restart()``. It ends instead of crashing when ``gone()`` says the component has left (a
    worker retired from its pool), before drawing a restart time."""
    timeout = env.timeout
    while True:
        yield timeout(crashes.time_to_failure())
        if gone is not None and gone():
            return
        down_s = crashes.restart_time()
        crash(down_s)
        yield timeout(down_s)
        if restart is not None:
            restart()
