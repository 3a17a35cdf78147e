"""Linear annealing of priors and temperature (spec §2.6)."""

from __future__ import annotations


def linear_annealing(
    step: float, start_step: float, end_step: float, start_value: float, end_value: float
) -> float:
    """``start_value`` until ``start_step``, ``end_value`` from ``end_step``, linear between."""
    if step <= start_step:
        return float(start_value)
    if step < end_step:
        slope = (end_value - start_value) / (end_step - start_step)
        return float(start_value + slope * (step - start_step))
    return float(end_value)
