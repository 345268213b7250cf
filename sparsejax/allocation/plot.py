"""The heat map of a sensitivity scan: layers x patterns, cells annotated."""

import os
from typing import Any

import numpy as np


def plot_sensitivity(scan: Any, path: str | os.PathLike, *,
                     title: str | None = None) -> str:
  """Draws `scan.deltas` as an annotated heat map and saves it to `path`.

  Rows are layers, columns patterns; each cell shows the held-out loss
  change (colour: red worse, blue better, centred on 0) and "n/a" (grey)
  where the pattern does not fit the layer.

  Args:
    scan: a `SensitivityScan`.
    path: the image file to write (the format follows its suffix).
    title: the figure title (default: the method and the dense loss).

  Returns:
    `path`, as a string.

  >>> import os, tempfile
  >>> from sparsejax.allocation.scan import SensitivityScan
  >>> from sparsejax.patterns import NM
  >>> scan = SensitivityScan(("a/kernel",), (NM(2, 4), NM(1, 8)),
  ...                        np.array([[0.1, np.nan]]), 2.0, np.array([[4, 0]]),
  ...                        np.array([[20, 0]]), np.array([8]), np.array([32]),
  ...                        ((None, "too short"),), "magnitude")
  >>> out = scan.plot(os.path.join(tempfile.mkdtemp(), "scan.png"))
  >>> os.path.getsize(out) > 0
  True
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  deltas = np.asarray(scan.deltas, dtype=float)
  fits = scan.fits
  finite = np.abs(deltas[fits])
  scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
  rows, cols = deltas.shape
  fig, ax = plt.subplots(figsize=(1.6 + 1.3 * cols, 1.2 + 0.45 * rows))
  cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.85")
  image = ax.imshow(np.ma.masked_invalid(np.where(fits, deltas, np.nan)),
                    cmap=cmap, vmin=-scale, vmax=scale, aspect="auto")
  for i in range(rows):
    for j in range(cols):
      text = f"{deltas[i, j]:+.3g}" if fits[i, j] else "n/a"
      strong = fits[i, j] and abs(deltas[i, j]) > 0.6 * scale
      ax.text(j, i, text, ha="center", va="center", fontsize=8,
              color="white" if strong else "black")
  ax.set_xticks(range(cols), scan.labels, rotation=30, ha="right")
  ax.set_yticks(range(rows), scan.layers, fontsize=8)
  ax.set_xlabel("pattern")
  fig.colorbar(image, ax=ax, label="held-out loss change")
  ax.set_title(title or f"sensitivity ({scan.method}); dense loss "
               f"{scan.dense_loss:.4g}")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return str(path)
