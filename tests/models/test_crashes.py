"""models/crashes.py: up for a time to failure, down for a restart time, hooks called at each turn."""

import simpy

from models.crashes import Crashes, crash_loop


def draws(*values):
    """A sampler returning ``values`` in turn, then failing (no more draws expected)."""
    it = iter(values)
    return lambda: next(it)


def test_the_loop_alternates_up_and_down_and_calls_the_hooks():
    env = simpy.Environment()
    events = []
    crashes = Crashes(draws(10.0, 5.0, 100.0), draws(3.0, 2.0))
    env.process(crash_loop(env, crashes, lambda down_s: events.append(("crash", env.now, down_s)),
                           lambda: events.append(("restart", env.now))))
    env.run(until=50)
    # up 10, down 3, up 5, down 2, then up 100 (beyond the run)
    assert events == [("crash", 10.0, 3.0), ("restart", 13.0), ("crash", 18.0, 2.0), ("restart", 20.0)]


def test_without_a_restart_hook_the_loop_only_waits_the_down_time():
    env = simpy.Environment()
    crashed = []
    env.process(crash_loop(env, Crashes(draws(1.0, 1.0, 1.0, 100.0), draws(0.5, 0.25, 4.0)), lambda down_s: crashed.append(env.now)))
    env.run(until=10)
    assert crashed == [1.0, 2.5, 3.75]


def test_a_component_gone_ends_the_loop_before_a_restart_time_is_drawn():
    env = simpy.Environment()
    crashed = []
    restart_times = iter([2.0])  # one draw only: a second would raise StopIteration in the loop
    gone = []
    env.process(crash_loop(env, Crashes(draws(1.0, 4.0, 1.0), lambda: next(restart_times)), lambda down_s: crashed.append(env.now),
                           gone=lambda: bool(gone)))
    env.timeout(5.0).callbacks.append(lambda _: gone.append(True))
    env.run(until=20)
    assert crashed == [1.0]  # at 7.0 the component had gone: no crash, no draw, the loop ended
