"""models/link.py: a crossing takes its latency, any number cross at once."""

import pytest
import simpy

from models.link import Link
from tests.models.drive import constant


def test_a_link_crossing_takes_its_latency(level):
    env, inside, done = simpy.Environment(), level(), []
    link = Link(env, "net", constant(0.5), inside)

    def cross(latency=None):
        yield from link.cross(latency)
        done.append(env.now)

    env.process(cross())
    env.process(cross(0.2))
    env.run()
    assert done == [0.2, 0.5] and inside.area == pytest.approx(0.7)
