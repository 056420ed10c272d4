"""Send-time smoothing: ONE definition for serving (`decide`) and offline evaluation (`evaluate.model_values`).

A tree model's prediction is piecewise constant in the send hour and each hour's estimate rests on the few sends
the log made then (business as usual sends at one hour; only exploration tries the others). Taking the argmax over
48 such estimates picks noise. How a customer responds changes smoothly with the time of day, so each slot's
prediction is replaced by a Gaussian-kernel average over the grid's scored slots (same channel and message),
`send_time_smoothing_hours` wide (0: off). With the default model at 20,000 simulated customers x 90 days
(bench/RESULTS.md): 77.2% -> 77.9% of the oracle, and 78.6% -> 79.1% with drift, at 1 hour (bench/send_time.py
compares widths on one trained model).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def smooth_over_send_time(p: FloatArray, slots: FloatArray, allowed: npt.ArrayLike, hours: float) -> FloatArray:
    """`p` [..., C, S, M] predictions per cell; `slots` [..., S] the slots' instants (epoch seconds); `allowed`
    [..., C, S, M] the cells the rules allow. A slot is scored when any of its cells is allowed (what `decide`
    predicts); each scored slot gets the kernel-weighted mean of the scored slots of its channel and message;
    unscored slots keep their value. `hours`: the kernel's sd."""
    if hours <= 0.0:
        return p
    mask = np.asarray(np.asarray(allowed, dtype=np.bool_).any(axis=(-3, -1)))  # [..., S]
    gap = (slots[..., :, None] - slots[..., None, :]) / (3600.0 * hours)
    kernel = np.exp(-0.5 * gap**2) * mask[..., None, :]  # [..., S, S]: only scored slots lend their value
    total = kernel.sum(axis=-1, keepdims=True)
    kernel = np.divide(kernel, total, out=np.zeros_like(kernel), where=total > 0)
    by_slot = np.swapaxes(p, -3, -2)  # [..., S, C, M]: one matrix product over the slots (einsum is 30x slower)
    flat = by_slot.reshape(*by_slot.shape[:-2], -1)
    smoothed = np.swapaxes((kernel @ flat).reshape(by_slot.shape), -3, -2)
    return np.where(mask[..., None, :, None], smoothed, p)
