"""The ledger's epsilon figure on its own: what a site's privacy ledger and budget views need.

:func:`ledger_epsilon` is :func:`privacy.accounting.epsilon_for_history` (pessimistic PLD at
the ledger's discretisation) without loading the noise calibration behind it, and with it
Opacus's Renyi-DP accountant and torch: reading a ledger, showing a budget or opening a site
store then costs only ``dp-accounting``, imported on the first figure asked for. The figures
are the same bit for bit (the tests compare them).
"""

from __future__ import annotations

from collections.abc import Sequence

from privacy.mechanisms import Mechanism, check_delta

#: Discretisation of the privacy loss in every ledger figure (pessimistic rounding); the
#: same value as :data:`privacy.calibration.LEDGER_DISCRETISATION`.
LEDGER_DISCRETISATION = 1e-3


def ledger_epsilon(history: Sequence[Mechanism], *, delta: float) -> float:
    """Epsilon at ``delta`` of the composition of every release in ``history`` (PLD).

    Never below the true epsilon, independent of the order of the entries; ``0.0`` for an
    empty history.
    """
    check_delta(delta)
    from privacy.pld import pld_epsilon  # dp-accounting loads on the first figure

    return pld_epsilon(history, delta=float(delta), discretisation=LEDGER_DISCRETISATION)
