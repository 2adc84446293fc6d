#!/usr/bin/env bash
# Long fuzzing runs (issue 13): every `rproc fw` entry point and a full boot on the in-memory
# platform, machine files, the process platform's peer-written resource table, and the ABI's
# sysfs/debugfs/cdev writes and ioctls, for MINUTES minutes (default 10) in one worker process
# per core, reporting cases per second (in total and per target), uncaught exceptions and
# fw check / boot disagreements. Exit 1 if any. CI runs the bounded budgets of
# tests/test_fuzz_fw.py and tests/test_fuzz_parsers.py instead.
#   tools/fuzz.sh [MINUTES] [--workers N] [--targets fw,machine,peer,abi] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
shift || true
exec python3 tools/fuzz.py --minutes "$minutes" "$@"
