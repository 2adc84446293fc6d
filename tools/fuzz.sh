#!/usr/bin/env bash
# Long fuzzing runs (issue 13): every `rproc fw` entry point and a full boot on the in-memory
# platform, for MINUTES minutes (default 10), reporting cases per second, uncaught exceptions
# and fw check / boot disagreements. Exit 1 if any. CI runs the bounded budget of
# tests/test_fuzz_fw.py instead.
#   tools/fuzz.sh [MINUTES] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
shift || true
exec python3 tools/fuzz_fw.py --minutes "$minutes" "$@"
