"""Extract data/sunspots.csv: the yearly sunspot numbers 1700-2008 (public domain) that statsmodels ships.

Source: statsmodels' ``statsmodels.datasets.sunspots`` (its ``sunspots.csv``), which took the series from the
National Geophysical Data Center (http://www.ngdc.noaa.gov/stp/solar/solarda3.html); statsmodels states
"This data is public domain." Written as ``year,sunspots`` with one decimal, 309 rows.

Missing values: the yearly series has none. This script checks that explicitly -- every year from 1700 to
2008 present exactly once, in order, every value a finite number >= 0 -- and refuses to write the file
otherwise, rather than silently filling a gap (a gap in a forecasting series would need a documented rule,
e.g. linear interpolation, and none is needed here). The task loader also rejects a non-numeric or NaN cell
with a one-line error.

Run (needs statsmodels, which is not a dependency of nvmlstm; install it, run, uninstall):
    pip install statsmodels && python data/make_sunspots.py && pip uninstall -y statsmodels patsy
The result is the file shipped here (sha256 in data/README.md).
"""

from pathlib import Path

import numpy as np


def extract() -> tuple[np.ndarray, np.ndarray]:
    from statsmodels.datasets import sunspots

    d = sunspots.load_pandas().data
    years = d["YEAR"].to_numpy(dtype=np.float64)
    values = d["SUNACTIVITY"].to_numpy(dtype=np.float64)
    if not np.array_equal(years, np.arange(1700, 2009)):
        raise SystemExit("expected every year 1700..2008 exactly once, in order")
    if not (np.all(np.isfinite(values)) and np.all(values >= 0)):
        raise SystemExit("missing (NaN) or negative sunspot numbers: refusing to write a series with gaps")
    return years.astype(np.int64), values


if __name__ == "__main__":
    years, values = extract()
    lines = ["year,sunspots"] + [f"{y},{v:.1f}" for y, v in zip(years, values)]
    (Path(__file__).parent / "sunspots.csv").write_text("\n".join(lines) + "\n")
