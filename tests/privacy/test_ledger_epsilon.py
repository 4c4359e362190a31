"""privacy.ledger_epsilon: the ledger's figure without the calibration's imports."""

from __future__ import annotations

import subprocess
import sys

from privacy import calibration
from privacy.accounting import epsilon_for_history
from privacy.ledger_epsilon import LEDGER_DISCRETISATION, ledger_epsilon
from privacy.mechanisms import DpStep, GaussianRelease


def test_ledger_epsilon_equals_the_accountants_figure_bit_for_bit() -> None:
    history = [DpStep(noise_multiplier=1.1, sample_rate=0.02, steps=200),
               GaussianRelease(noise_multiplier=4.0, count=2),
               DpStep(noise_multiplier=0.9, sample_rate=0.05, steps=40)]
    assert LEDGER_DISCRETISATION == calibration.LEDGER_DISCRETISATION
    for delta in (1e-5, 1e-3):
        assert ledger_epsilon(history, delta=delta) == epsilon_for_history(history, delta=delta)
    assert ledger_epsilon([], delta=1e-5) == 0.0


def test_computing_a_ledger_figure_imports_neither_opacus_nor_torch() -> None:
    code = ("import sys\n"
            "from privacy.ledger_epsilon import ledger_epsilon\n"
            "from privacy.mechanisms import DpStep\n"
            "e = ledger_epsilon([DpStep(noise_multiplier=1.0, sample_rate=0.1, steps=10)],"
            " delta=1e-5)\n"
            "assert e > 0\n"
            "print(sorted(m for m in ('opacus', 'torch') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
