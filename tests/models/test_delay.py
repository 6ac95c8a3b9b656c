"""models/delay.py: an infinite-server station; each stay is the delay drawn, nobody waits, and
the mean number inside is λ·E[delay] (M/G/∞)."""

import math
import random
import statistics

import simpy

from models.delay import DelayStation
from tests.models.drive import constant, draws


class Sink:
    def __init__(self, accepts=True):
        self.got, self.accepts = [], accepts

    def put(self, message):
        self.got.append(message.id)
        return self.accepts


def test_each_stay_is_its_own_delay_and_nobody_waits(fates, observer, level):
    env, inside = simpy.Environment(), level()
    station = DelayStation(env, "net", draws(3.0, 1.0, 2.0), inside, fates)
    for _ in range(3):
        station.put(fates.new_message(0.0))
    assert set(station.held_ids()) == {0, 1, 2}
    env.run()
    assert observer.fates("processed") == [(1, 1.0), (2, 2.0), (0, 3.0)]  # a later message overtakes
    assert inside.n == 0 and inside.area == 6.0 and not list(station.held_ids())  # area = the sum of the stays


def test_a_fan_out_leaves_at_its_last_delivery_and_goes_on(fates, observer, level):
    env, sink = simpy.Environment(), Sink()
    station = DelayStation(env, "followers", draws(0.2, 0.9, 0.4), level(), fates, next_hop=sink, fan_out=3)
    station.put(fates.new_message(0.0))
    env.run()
    assert env.now == 0.9 and sink.got == [0] and observer.fates("processed") == []


def test_a_refused_hand_over_is_rejected(fates, observer, level):
    env = simpy.Environment()
    station = DelayStation(env, "net", constant(1.0), level(), fates, next_hop=Sink(accepts=False))
    station.put(fates.new_message(0.0))
    env.run()
    assert observer.fates("rejected") == [(0, 1.0)]


def test_a_caller_waits_for_its_stay_and_the_message_goes_nowhere(fates, observer, level):
    env, inside, returned = simpy.Environment(), level(), []

    def caller():
        message = fates.new_message(0.0)
        yield station.call(message)
        returned.append(env.now)

    station = DelayStation(env, "db", constant(0.25), inside, fates, next_hop=Sink())
    env.process(caller())
    env.process(caller())
    env.run()
    assert returned == [0.25, 0.25] and observer.fates("processed") == [] and inside.area == 0.5


def test_mean_occupancy_is_lambda_times_mean_delay():
    """Poisson arrivals at 5/s, exponential delays of mean 0.4 s: L = λ·E[D] = 2, inside the 95%
    interval of 20 replications of 2,000 s."""
    from tests.models.conftest import FakeObserver, Level  # plain fakes, outside fixtures
    from models.fates import Fates

    occupancy = []
    for seed in range(20):
        rng, env, inside = random.Random(seed), simpy.Environment(), Level()
        fates = Fates(FakeObserver())
        station = DelayStation(env, "net", lambda: rng.expovariate(1 / 0.4), inside, fates)

        def arrivals():
            while True:
                yield env.timeout(rng.expovariate(5.0))
                station.put(fates.new_message(env.now))

        env.process(arrivals())
        env.run(until=2000.0)
        occupancy.append(inside.integral(2000.0) / 2000.0)
    mean, sd = statistics.mean(occupancy), statistics.stdev(occupancy)
    half = 2.093 * sd / math.sqrt(len(occupancy))  # t(0.975, 19)
    assert abs(mean - 2.0) <= half, (mean, half)
