"""A first taste of interp: compute, print, and draw a chart in the sandbox.

interp run examples/chart.py        # logs stream live; the chart lands in ./interp-out/
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

rng = np.random.default_rng(seed=7)
days = pd.date_range("2026-01-01", periods=90, freq="D")
sales = pd.Series(100 + rng.normal(0.3, 2, size=90).cumsum(), index=days, name="sales")

weekly = sales.resample("W").mean()
print(f"{len(sales)} days of sales, mean {sales.mean():.1f}, last {sales.iloc[-1]:.1f}")
print("weekly means:")
print(weekly.round(1).head().to_string())

fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(sales.index, sales.values, label="daily", alpha=0.6)
ax.plot(weekly.index, weekly.values, label="weekly mean", linewidth=2)
ax.set_title("Sales, first quarter")
ax.legend()
plt.show()
