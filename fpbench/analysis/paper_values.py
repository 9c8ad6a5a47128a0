"""The values printed in the paper's Tables 1-3 (Deveney et al., section 4), for side-by-side
comparison. These are the paper's published numbers, quoted; fpbench's own numbers are measured."""

from __future__ import annotations

W_R = (0.0, 0.1, 1.0, 10.0)
TARGETS = ("blob", "circles2", "checker")  # the paper's Mixture, Circles, Checkerboard

# table -> {w_R: (blob, circles2, checker)}
TABLES = {
    "w2_ode_sde": {0.0: (0.011599, 0.013401, 0.027196), 0.1: (0.003107, 0.005283, 0.007160),
                   1.0: (0.002901, 0.003090, 0.003528), 10.0: (0.002208, 0.001704, 0.002104)},
    "w2_ode_p0": {0.0: (0.010967, 0.014354, 0.024416), 0.1: (0.006039, 0.007373, 0.011386),
                  1.0: (0.005280, 0.008280, 0.011428), 10.0: (0.017225, 0.009378, 0.033052)},
    "w2_sde_p0": {0.0: (0.002180, 0.002268, 0.003681), 0.1: (0.002940, 0.003323, 0.005387),
                  1.0: (0.004271, 0.004541, 0.011552), 10.0: (0.015989, 0.009097, 0.032158)},
}
TABLE_TITLES = {
    "w2_ode_sde": "Table 1: W2²(p_ODE, p_SDE)",
    "w2_ode_p0": "Table 2: W2²(p_ODE, p0)",
    "w2_sde_p0": "Table 3: W2²(p_SDE, p0)",
}


def paper_value(table: str, target: str, w_r: float) -> float | None:
    row = TABLES[table].get(float(w_r))
    if row is None or target not in TARGETS:
        return None
    return row[TARGETS.index(target)]
