"""Flat-vector layout of a model's tensors: which slice of a vector is which tensor."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSlot:
    """One named tensor inside a flat float64 vector."""

    name: str
    shape: tuple[int, ...]
    offset: int
    length: int

    def __post_init__(self) -> None:
        if self.offset < 0 or self.length < 0:
            raise ValueError("offset and length must be non-negative")


def layout_length(layout: list[TensorSlot]) -> int:
    """Total number of values covered by a layout."""
    return max((s.offset + s.length for s in layout), default=0)
