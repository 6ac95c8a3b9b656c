"""Small codes by message id, packed several to a byte (the Recorder's per-message state)."""

from __future__ import annotations

import numpy as np


class PackedCodes:
    """Small codes by message id, ``bits`` (2 or 4) each, packed in a bytearray.

    The array grows only as far as the highest id given a code: ``bits / 8`` bytes a message up
    to it, nothing beyond. An id never given a code reads 0.
    """

    __slots__ = ("bits", "mask", "slot_mask", "byte_shift", "data")

    def __init__(self, bits: int):
        self.bits = bits
        self.mask = (1 << bits) - 1
        self.slot_mask = 8 // bits - 1  # id & slot_mask: its place in its byte
        self.byte_shift = (8 // bits).bit_length() - 1  # id >> byte_shift: its byte
        self.data = bytearray()

    def get(self, i: int) -> int:
        byte = i >> self.byte_shift
        if byte >= len(self.data):
            return 0
        return (self.data[byte] >> (i & self.slot_mask) * self.bits) & self.mask

    def set(self, i: int, code: int) -> None:
        """Id ``i``'s code becomes ``code``."""
        data = self.data
        byte = i >> self.byte_shift
        if byte >= len(data):
            data.extend(bytes(byte + 1 - len(data)))
        shift = (i & self.slot_mask) * self.bits
        data[byte] = (data[byte] & ~(self.mask << shift)) | (code << shift)

    def add(self, i: int, flags: int) -> None:
        """Sets the bits ``flags`` in id ``i``'s code."""
        data = self.data
        byte = i >> self.byte_shift
        if byte >= len(data):
            data.extend(bytes(byte + 1 - len(data)))
        data[byte] |= flags << (i & self.slot_mask) * self.bits

    def unpack(self, start: int, stop: int) -> np.ndarray:
        """The codes of ids ``start`` to ``stop`` − 1, one ``uint8`` each."""
        per_byte = self.slot_mask + 1
        first, end = start // per_byte, -(-stop // per_byte)
        codes = np.zeros((max(end - first, 0), per_byte), dtype=np.uint8)
        known = np.frombuffer(self.data, dtype=np.uint8)[first:end]
        shifts = np.arange(per_byte, dtype=np.uint8) * np.uint8(self.bits)
        codes[: known.size] = (known[:, None] >> shifts) & self.mask
        return codes.ravel()[start - first * per_byte: stop - first * per_byte]
