"""SimPy models of the parts of an asynchronous system: one small class per idea.

Models know SimPy and the Recorder's small interface (``new_message``, ``admitted``,
``processed``/``lost``/``rejected``/``dead_lettered``, and ``Boundary.enter``/``leave``); they know
nothing of YAML, files, plots or the command line.
"""
