"""The registry of the kinds of parts a scenario is made of, in the order of a scenario file;
the scenario model (:mod:`sim.schema`) and the loader's checks (:mod:`sim.loading`) are
assembled from it. Adding a kind of part is adding its module and a line here."""

from __future__ import annotations

from .admission import Admission
from .base import Kind
from .brokers import Brokers
from .clients import Clients
from .delays import Delays
from .dual_write import DualWrites
from .outbox import Outboxes
from .producers import Producers
from .task_queues import TaskQueues
from .web import WebTiers
from .workers import Workers

SECTIONS: dict[str, Kind] = {kind.section: kind for kind in (Producers(), Brokers(), Workers(), Clients(), Admission(), Outboxes(), DualWrites(),
                                                              Delays(), WebTiers(), TaskQueues())}
