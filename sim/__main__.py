"""The ``asyncsim`` command (and ``python -m sim``).

Start-up imports the command line, pydantic's models of a scenario and numpy: a few hundred
thousand objects that live as long as the process and none that become garbage cycles. The
cyclic garbage collector is paused while they are built (its collections would walk them all
again and again) and resumed, with them frozen out of its reach, when a command starts to
simulate (:func:`sim.cli.common.open_executor`); a command that never simulates (``--help``,
``check``) ends with it paused.
"""

import gc


def main() -> None:
    gc.disable()
    from .cli import main as command_line

    command_line()


if __name__ == "__main__":
    main()
