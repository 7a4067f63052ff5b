#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian machine with the Rust toolchain, Node and Python:
# installs what it needs (idempotently; apt needs root), starts Redis and NATS on free ports when
# none answer on their usual ports (scripts/services.sh; stopped again at exit), builds, then runs
# the Rust unit and integration tests, the Redis suites again on a throwaway Redis Cluster
# (scripts/redis-cluster.sh), the JS suite with pusher-js and the pusher Node SDK (and the
# Pushler-compatible clients with the cookbook in Chromium), the PHP client's unit tests, the
# Python check with the pusher PyPI SDK, lint, a smoke run of every benchmark scenario, and a short
# fuzz run of each parser. At the end it fails if the run changed `git status` (tests write only
# under target/ and temp dirs; scripts/screenshots.sh refreshes docs/*.png on purpose).
#
# Usage: scripts/test.sh            (FUZZ_SECONDS=30 by default; FUZZ_SECONDS=0 skips fuzzing)
# Env:   TEST_FORCE_OWN_SERVICES=1  start private Redis and NATS even when shared ones run (CI does)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/services.sh
. scripts/services.sh
trap stop_services EXIT
in_git=0
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  in_git=1
  status_before=$(git status --porcelain)
fi
LOGS=$(mktemp -d)
export CARGO_TERM_COLOR=never
# A clean clone gains nothing from incremental artefacts or full debug info, and both multiply the
# size of target/ (dozens of test binaries): CI builds without them, so the run fits a small disk.
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
  export CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}
  export CARGO_PROFILE_TEST_DEBUG=${CARGO_PROFILE_TEST_DEBUG:-line-tables-only}
fi
export VESTNIK_BIN="$ROOT/target/debug/vestnik"

step() { printf '\n=== %s ===\n' "$*"; }

step "toolchain"
cargo --version
df -h . | awk 'NR==2 {print "disk: " $4 " free of " $2}'
node --version
python3 --version

step "install system packages for the browser, PHP and TLS tests (apt, once)"
# Debian's Chromium (driven by playwright-core), the colour emoji font the shop's pages use (status
# icons in docs/order-tracking.png), PHP with curl and SQLite for the Pushler PHP client, and openssl
# for the TLS test's throw-away certificates.
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need+=(fonts-noto-color-emoji)
command -v openssl >/dev/null || need+=(openssl) # certificates for the TLS test
command -v php >/dev/null || need+=(php-cli)
if command -v php >/dev/null; then
  php -m | grep -qi '^curl$' || need+=(php-curl)
  php -m | grep -qi '^pdo_sqlite$' || need+=(php-sqlite3)
else
  need+=(php-curl php-sqlite3)
fi
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi
/usr/bin/chromium --version 2>/dev/null | grep -v 'unexpected operator' || true
php --version | head -1

step "Redis and NATS for the cluster tests (apt when missing; own servers when none run)"
start_services
echo "VESTNIK_TEST_REDIS_URL=$VESTNIK_TEST_REDIS_URL VESTNIK_TEST_NATS_URL=$VESTNIK_TEST_NATS_URL"

step "install JS test dependencies (npm ci)"
(cd tests/js && npm ci --no-audit --no-fund --loglevel=error)

step "install Python test dependencies (venv)"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "build"
cargo build --workspace --quiet

step "Rust tests"
cargo test --workspace 2>&1 | tee "$LOGS/cargo.log"

step "Redis suites on a throwaway Redis Cluster (3 masters, 3 replicas; redis+cluster://)"
scripts/redis-cluster.sh 2>&1 | tee "$LOGS/redis-cluster.log"

step "JS suite (pusher-js, pusher Node SDK, Pushler clients and the cookbook in Chromium)"
(cd tests/js && npm test 2>&1) | tee "$LOGS/js.log"

step "PHP client unit tests (clients/php, reference signature vectors)"
php clients/php/tests/run.php 2>&1 | tee "$LOGS/php.log"

step "Python check (pusher PyPI SDK)"
.venv/bin/python -m pytest -q tests/python 2>&1 | tee "$LOGS/py.log"

step "benchmark smoke run (every scenario, tiny; asserts nothing is lost, no timing)"
VESTNIK_BIN="$ROOT/target/debug/vestnik" benches/vestnik-bench/smoke.sh 2>&1 | tee "$LOGS/smoke.log"

if [ "${FUZZ_SECONDS:-30}" != "0" ]; then
  step "fuzz (${FUZZ_SECONDS:-30} s per target)"
  scripts/fuzz.sh
fi

# One closing line over all runners.
cargo_pass=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$LOGS/cargo.log" | awk '{s+=$4} END {print s+0}')
js_pass=$(grep -Eo '^# pass [0-9]+' "$LOGS/js.log" | awk '{s+=$3} END {print s+0}')
py_pass=$(grep -Eo '[0-9]+ passed' "$LOGS/py.log" | tail -1 | awk '{print $1+0}')
php_pass=$(grep -Eo '^php: [0-9]+ passed' "$LOGS/php.log" | awk '{print $2+0}')
smoke_pass=$(grep -Eo '^smoke: [0-9]+ passed' "$LOGS/smoke.log" | awk '{print $2+0}')
total=$((cargo_pass + js_pass + py_pass + php_pass + smoke_pass))
step "summary: rust $cargo_pass, js $js_pass, python $py_pass, php $php_pass, bench smoke $smoke_pass"

if [ "$in_git" = 1 ]; then
  step "the checkout is as clean as before the run"
  status_after=$(git status --porcelain)
  if [ "$status_after" != "$status_before" ]; then
    echo "the run changed the checkout (tests must write under target/ or temp dirs):"
    diff <(echo "$status_before") <(echo "$status_after") || true
    exit 1
  fi
  echo "git status unchanged"
fi
echo "tests: $total passed, 0 failed"
