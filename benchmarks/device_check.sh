#!/usr/bin/env bash
# Checks the kernels on the GPU/TPU of this machine in one command (under 6
# minutes on one H100/H200): device and versions, the kernel tests run
# natively, and the tables of N:M and block-list ratios against XLA dense.
# Arguments are passed on, e.g. `benchmarks/device_check.sh --write-table` to
# merge the measured rows into pallas_kernels/measured/table.json, or `--dry`
# for the CPU smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m pallas_kernels.device_check "$@"
