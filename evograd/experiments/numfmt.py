"""How the reports write numbers (summary.md, the statistics and equal-budget tables): one rule, so a figure reads
the same in every table."""
from __future__ import annotations

import numpy as np

__all__ = ["fmt_number"]


def fmt_number(x: float | None, digits: int = 4) -> str:
    """Readable number: thousands separators for large values, significant digits for small ones."""
    if x is None:
        return "—"
    if np.isinf(x):
        return "∞" if x > 0 else "-∞"
    if abs(x) >= 1000:  # also keeps 9999.7 out of "1e+04"
        return f"{x:,.0f}"
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.2e}"
    return f"{x:,.{digits}g}"
