"""SimPy models of the parts of an asynchronous system: one small class per idea.

Models know SimPy and nothing of the simulator around them (they never import :mod:`sim`): they
tell what happens to messages through a :class:`~models.fates.Fates` router, count their events
in the window counters and boundaries (``enter``/``leave``) they are given at construction, and
talk to each other through small protocols (:class:`~models.broker.Broker`). They know nothing
of YAML, files, plots or the command line.
"""
