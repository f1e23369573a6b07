#!/usr/bin/env bash
# The test command README and .ci/run share: the whole suite, root tests included when root.
set -euo pipefail
cd "$(dirname "$0")/.."
set +e
.venv/bin/python -m pytest -ra "$@"
rc=$?
set -e
# Exit 5 means no test was collected: that is a failure of the suite, not a pass.
if [ "$rc" = 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit "$rc"
