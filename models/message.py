"""The message that travels through a network."""


class Message:
    """One logical message: its id (an index into the Recorder's arrays) and when it was produced.

    Only messages in the system exist as objects; what the run keeps of a finished one lives in
    the Recorder's arrays. A message can sit in several places at once (a copy redelivered while
    the first is still being worked on), so it carries no state about where it is: each broker
    keeps its own enqueue times.
    """

    __slots__ = ("id", "created_s")

    def __init__(self, id: int, created_s: float):
        self.id = id
        self.created_s = created_s

    def __repr__(self) -> str:
        return f"Message(id={self.id}, created_s={self.created_s:g})"
