"""What the benchmark measures: problem sizes and the (size, cell, layers, direction, dtype) configs.

Glossary: b batch, t time, d input features, h hidden units, g gates.
"""

from __future__ import annotations

import dataclasses

GATES = {"lstm": 4, "gru": 3}


@dataclasses.dataclass(frozen=True)
class Size:
    name: str
    batch: int
    time: int
    input_size: int
    hidden_size: int

    def __str__(self) -> str:
        return f"B{self.batch} T{self.time} I{self.input_size} H{self.hidden_size}"


SIZES = {
    "S1": Size("S1", 32, 256, 128, 256),
    "S2": Size("S2", 16, 1024, 64, 128),
    "S3": Size("S3", 64, 128, 512, 512),
    "S4": Size("S4", 4, 8192, 32, 64),
    "Q": Size("Q", 2, 12, 3, 5),  # --quick
}


@dataclasses.dataclass(frozen=True)
class Config:
    size: Size
    cell: str  # "lstm" | "gru"
    num_layers: int = 1
    bidirectional: bool = False
    dtype: str = "float32"  # compute dtype of ours and flax; torch stays float32

    @property
    def name(self) -> str:
        layout = f"{self.num_layers}x{'bi' if self.bidirectional else 'uni'}"
        suffix = "" if self.dtype == "float32" else f" {self.dtype}"
        return f"{self.size.name} {self.cell} {layout}{suffix}"

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.size.hidden_size * self.directions

    @property
    def tokens(self) -> int:
        return self.size.batch * self.size.time

    def forward_flops(self) -> int:
        """2 b t (d + h) g h per layer and direction (the two matmuls; element-wise ops left out)."""
        s, g = self.size, GATES[self.cell]
        total, d = 0, s.input_size
        for _ in range(self.num_layers):
            total += self.directions * 2 * s.batch * s.time * (d + s.hidden_size) * g * s.hidden_size
            d = self.output_size
        return total
