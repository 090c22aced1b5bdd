"""Generate data/cycles.csv: a synthetic, sunspot-like monthly series (documented, reproducible, public domain).

Each "solar cycle" k lasts P_k ~ U(120, 150) months and peaks at A_k ~ U(60, 200); within a cycle the
shape is A_k * sin(pi * u**0.6)**2 for u in [0, 1) (a fast rise and a slow decay, like sunspot cycles).
Monthly values add heteroscedastic noise N(0, (4 + 0.15 * shape)**2), are clipped at 0 and rounded to 0.1.
Run: python data/make_cycles.py  (writes data/cycles.csv; the seed is fixed, so the file is reproducible).
"""

from pathlib import Path

import numpy as np

SEED = 20190919
MONTHS = 2400


def make(seed: int = SEED, months: int = MONTHS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = []
    while len(shape) < months:
        period = int(rng.integers(120, 151))
        amp = rng.uniform(60.0, 200.0)
        u = np.arange(period) / period
        shape.extend(amp * np.sin(np.pi * u**0.6) ** 2)
    shape = np.asarray(shape[:months])
    value = shape + rng.normal(0.0, 1.0, months) * (4.0 + 0.15 * shape)
    return np.round(np.clip(value, 0.0, None), 1)


if __name__ == "__main__":
    v = make()
    lines = ["month,value"] + [f"{i},{x:.1f}" for i, x in enumerate(v)]
    (Path(__file__).parent / "cycles.csv").write_text("\n".join(lines) + "\n")
