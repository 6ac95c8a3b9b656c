"""Building the parts of a scenario into one SimPy network.

Every kind of part the scenario has (:func:`sim.components.registry.kinds_in`) builds its own:
kinds in their ``build_order`` (brokers first, then what publishes to them, gates, worker pools,
and the sources last), the items of a kind in file order, then each kind's ``connect`` once all
its parts exist.
The order fixes the order in which processes start at time 0, so it is part of what makes a
replication reproducible.
"""

from __future__ import annotations

from models.fates import Fates

from .components.context import BuildContext, Network
from .components.registry import kinds_in
from .recorder import Recorder
from .schema import Scenario
from .streams import Streams


def build_order(scenario: Scenario) -> list:
    """The kinds of the parts of ``scenario``, in the order they are built."""
    return sorted((kind for _, kind in kinds_in(scenario)), key=lambda kind: kind.build_order)


def build(scenario: Scenario, env, recorder: Recorder, streams: Streams) -> tuple[Network, BuildContext]:
    """Instantiate every part of ``scenario`` in ``env``, wired and recording; returns the
    network and the context it was built in (which knows what each part owns)."""
    network = Network()
    context = BuildContext(env, scenario, recorder, Fates(recorder), streams.rng, network)
    for kind in build_order(scenario):
        specs = getattr(scenario, kind.section)
        for spec in specs:
            context.building = spec.name
            network.parts[kind.section][spec.name] = kind.build(spec, context)
        for spec in specs:
            context.building = spec.name
            kind.connect(spec, network.parts[kind.section][spec.name], context)
    return network, context
