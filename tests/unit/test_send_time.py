"""Send-time smoothing (model.domain.send_time), the one definition serving and evaluation share."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.domain.send_time import smooth_over_send_time

HOUR = 3600.0


def grid(values: list[float]) -> np.ndarray:
    """One channel, one message: [C=1, S, M=1]."""
    return np.array(values, dtype=np.float64)[None, :, None]


def allowed(slots: list[bool]) -> np.ndarray:
    """The rules' verdict per cell [C=1, S, M=1]: a slot with an allowed cell is scored."""
    return np.array(slots, dtype=bool)[None, :, None]


def test_a_slot_becomes_the_kernel_mean_of_its_neighbours_by_hand() -> None:
    slots = np.array([0.0, HOUR, 2 * HOUR])
    out = smooth_over_send_time(grid([0.0, 1.0, 0.0]), slots, allowed([True] * 3), 1.0)
    near = math.exp(-0.5)  # one hour away, sd one hour
    far = math.exp(-2.0)
    assert out[0, 1, 0] == pytest.approx(1.0 / (1.0 + 2.0 * near))
    assert out[0, 0, 0] == pytest.approx(near / (1.0 + near + far))
    assert out[0, 2, 0] == pytest.approx(out[0, 0, 0])


def test_unscored_slots_lend_nothing_and_keep_their_value() -> None:
    slots = np.arange(4) * HOUR
    out = smooth_over_send_time(grid([1.0, 100.0, 1.0, 1.0]), slots, allowed([True, False, True, True]), 1.0)
    assert out[0, :, 0].tolist() == pytest.approx([1.0, 100.0, 1.0, 1.0])


def test_width_zero_is_off_and_a_wide_kernel_flattens() -> None:
    p = np.random.default_rng(3).random((2, 6, 3))
    slots = np.arange(6) * HOUR
    every = np.ones(p.shape, bool)
    assert smooth_over_send_time(p, slots, every, 0.0) is p
    wide = smooth_over_send_time(p, slots, every, 1000.0)
    assert wide == pytest.approx(np.broadcast_to(p.mean(axis=1, keepdims=True), p.shape), rel=1e-5)


def test_a_noisy_peak_next_to_the_true_one_loses_after_smoothing() -> None:
    # A smooth response peaking at slot 5, one slot's estimate inflated by noise at slot 1: argmax moves back.
    hours = np.arange(12)
    truth = np.exp(-0.5 * ((hours - 5) / 2.0) ** 2)
    noisy = truth.copy()
    noisy[1] += 0.9
    assert int(np.argmax(noisy)) == 1
    out = smooth_over_send_time(grid(noisy.tolist()), hours * HOUR, allowed([True] * 12), 1.0)
    assert int(np.argmax(out[0, :, 0])) in (4, 5, 6)


def test_decisions_in_a_batch_are_smoothed_over_their_own_slots() -> None:
    # [D=2, C=1, S=3, M=1]; the second decision's grid starts a day later: its own instants, its own mask.
    p = np.array([[[[0.0], [1.0], [0.0]]], [[[0.0], [1.0], [0.0]]]])
    slots = np.array([[0.0, HOUR, 2 * HOUR], [86400.0, 86400.0 + HOUR, 86400.0 + 2 * HOUR]])
    cells = np.array([[True, True, True], [True, True, False]])[:, None, :, None]  # [D, C=1, S, M=1]
    out = smooth_over_send_time(p, slots, cells, 1.0)
    one = smooth_over_send_time(p[0], slots[0], cells[0], 1.0)
    assert out[0] == pytest.approx(one)
    assert out[1, 0, 2, 0] == 0.0  # unscored: kept
    assert out[1, 0, 1, 0] == pytest.approx(1.0 / (1.0 + math.exp(-0.5)))
