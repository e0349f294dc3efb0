"""Model.summary(): a table of the layers, Keras style."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .model import Model


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def summary(model: Model) -> str:
    """The text :meth:`Model.summary` prints: one row per layer (index and type,
    one sample's output shape, parameter count), then totals; parameters count as
    trainable, buffers (batch norm's running statistics) as not."""
    counts = [[0, 0] for _ in model.layer_types]            # [trainable, non-trainable] per layer
    for name, array in model.state_dict().items():
        counts[int(name.split(".")[1])][name in set(model.buffer_names)] += int(np.prod(array.shape))
    rows = [(f"layers.{i} ({kind})", _shape(shape), f"{sum(counts[i]):,}")
            for i, (kind, shape) in enumerate(zip(model.layer_types, model.layer_output_shapes()))]
    header = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(r[c]) for r in (header, *rows)) + 3 for c in range(3)]

    def line(row: tuple[str, str, str]) -> str:
        return "".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()

    rule = "=" * (sum(widths) - 3)
    spec = model.spec
    trainable, frozen = sum(c[0] for c in counts), sum(c[1] for c in counts)
    optimizer = spec.get("optimizer", {})
    scale, mean, std = model.preprocessing
    lines = [f'Model: "{spec.get("name") or "unnamed"}"', line(header), rule, *map(line, rows), rule,
             f"Total params: {trainable + frozen:,}",
             f"Trainable params: {trainable:,}",
             f"Non-trainable params: {frozen:,}",
             f"Input: {_shape(model.input_shape)}"
             + ("" if (scale, mean, std) == (1.0, 0.0, 1.0)
                else f", preprocessed as (x * {scale:.6g} - {mean:.6g}) / {std:.6g}"),
             f"Loss: {spec.get('loss')}; optimizer: {optimizer.get('type', '?')} "
             f"(learning rate {model.learning_rate:.6g}); {model.step_count:,} steps trained"]
    return "\n".join(lines)
