"""Measurement tables shipped with the package (``table.json``).

The dispatch (:mod:`pallas_kernels.dispatch`) selects a Pallas kernel only for
cases measured faster than XLA dense ``jnp.dot`` on the same device kind. This
table holds such measurements, one row per device kind, op, pattern, dtype,
shape, batch bucket and implementation (``us``: kernel time per call,
``dense_us``: dense time per call, same process). It ships with only real
measurements and is empty until a device has been measured. Rows are added on
the device by::

    python -m pallas_kernels.device_check --write-table

which merges the measured rows into ``pallas_kernels/measured/table.json``;
commit that file to ship them.

>>> from pallas_kernels import dispatch
>>> isinstance(dispatch.load_table(), list)
True
"""
