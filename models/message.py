"""The message that travels through a network."""


class Message:
    """One logical message: its id (an index into the Recorder's arrays), when it was produced,
    and when it entered the stage it is in now (a broker's queue or a worker's hands).

    Only messages in the system exist as objects; what the run keeps of a finished one lives in
    the Recorder's arrays.
    """

    __slots__ = ("id", "created_s", "stage_entered_s")

    def __init__(self, id: int, created_s: float):
        self.id = id
        self.created_s = created_s
        self.stage_entered_s = created_s

    def __repr__(self) -> str:
        return f"Message(id={self.id}, created_s={self.created_s:g})"
