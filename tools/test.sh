#!/usr/bin/env bash
# The full test suite, from a fresh Debian machine: installs what the tests need (Debian's cross
# compilers, gdb-multiarch, FUSE, gcc for the board programs of the rproc run tests; the package
# and its test extras from PyPI), then runs the linters, the import contracts, the firmware
# rebuild check and pytest. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
for pkg in gcc-arm-none-eabi libnewlib-arm-none-eabi gcc-riscv64-unknown-elf \
           picolibc-riscv64-unknown-elf gdb-multiarch fuse3 libfuse3-dev make gcc libc6-dev \
           util-linux; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

echo "== pip install -e .[test]"
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
python3 -m ruff check src tests benchmarks tools
echo "== mypy --strict src"
python3 -m mypy src
echo "== import-linter: the layer contracts of pyproject.toml ([tool.importlinter])"
lint-imports --no-logo
echo "== firmware: rebuild and compare resource tables with the committed images"
make -s -C firmware check
echo "== pytest"
# Two workers (pytest-xdist): the suite is mostly waiting on emulated cores, subprocesses and
# FUSE round trips, so it shortens on two cores (measured in the commit that added -n 2).
python3 -m pytest -q -n 2 "$@"
