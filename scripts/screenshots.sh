#!/usr/bin/env bash
# Refreshes the pictures the docs show (docs/console.png, docs/console-operator.png,
# docs/order-tracking.png, docs/order-tracking-manager.png): runs the browser tests that take them with
# VESTNIK_UPDATE_DOCS_SCREENSHOTS=1, which makes them write to docs/ instead of target/screenshots/.
# Test runs (scripts/test.sh) never touch docs/; commit the new pictures after looking at them.
#
# Usage: scripts/screenshots.sh   (needs what scripts/test.sh installs: Chromium, node_modules)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p vestnik-server -p order-tracking
export VESTNIK_BIN="$PWD/target/debug/vestnik"
export VESTNIK_UPDATE_DOCS_SCREENSHOTS=1
# The console test has cluster cases: give it Redis and NATS as the test script does. The operator
# test needs PostgreSQL too (VESTNIK_TEST_POSTGRES, which services.sh exports).
# shellcheck source=scripts/services.sh
. scripts/services.sh
trap stop_services EXIT
start_services
[ -d tests/js/node_modules ] || (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
cd tests/js
node --test test/console.test.js test/console-operator.test.js test/order-tracking.test.js
echo "updated: $(cd ../.. && git status --porcelain docs/ | tr '\n' ' ')"
