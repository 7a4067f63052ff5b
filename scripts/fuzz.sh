#!/usr/bin/env bash
# Fuzzes the pure protocol crate (crates/vestnik-protocol) with cargo-fuzz / libFuzzer.
#
#   scripts/fuzz.sh                  # every target, ${FUZZ_SECONDS:-30} s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh client_message
#
# Targets (fuzz/fuzz_targets/): client_message (WebSocket frames), http_signature (signed API
# requests), http_api (trigger, batch and channel-info bodies of the HTTP API), ws_frame (the
# client frame parser, on byte streams split across reads).
#
# Environment:
#   FUZZ_SECONDS    seconds of fuzzing per target (libFuzzer -max_total_time), default 30
#   FUZZ_SANITIZER  address | none (default address; none builds and runs faster)
#   FUZZ_JOBS       parallel libFuzzer workers per target (-fork), default 1
#
# Only the stable toolchain exists on our machines, while cargo-fuzz passes nightly-only rustc flags
# (-Zsanitizer, sancov passes). RUSTC_BOOTSTRAP=1 lets stable rustc accept them; the stable toolchain
# ships the ASan runtime, so AddressSanitizer works too. The protocol crate forbids unsafe code, so
# FUZZ_SANITIZER=none is a reasonable faster choice if ASan ever gets in the way.
#
# Seeds (example frames and signed requests) live in fuzz/seeds/<target>/ and are copied into the
# working corpus fuzz/corpus/<target>/ (git-ignored) before each run. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script exit 1. Works unattended (CI=true, no stdin).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_DIR="$ROOT/fuzz"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
SANITIZER="${FUZZ_SANITIZER:-address}"
JOBS="${FUZZ_JOBS:-1}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

now() { date +%s; }
t_start=$(now)

# 1. cargo-fuzz, installed once.
if cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: using $(cargo fuzz --version)"
else
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked </dev/null
fi
t_installed=$(now)

# 2. Targets: the arguments, or every target of the fuzz project.
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir "$FUZZ_DIR")
fi
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz: no targets found in $FUZZ_DIR" >&2
    exit 2
fi

# 3. Build every target once (debug assertions on, so integer overflow panics too).
build_flags=(--fuzz-dir "$FUZZ_DIR" --sanitizer "$SANITIZER" --debug-assertions)
echo "fuzz: building ${targets[*]} (sanitizer: $SANITIZER)"
if [ "$#" -gt 0 ]; then
    for t in "${targets[@]}"; do
        cargo fuzz build "${build_flags[@]}" "$t" </dev/null
    done
else
    cargo fuzz build "${build_flags[@]}" </dev/null
fi
t_built=$(now)

# 4. Run each target for a fixed time.
failed=()
for t in "${targets[@]}"; do
    corpus="$FUZZ_DIR/corpus/$t"
    artifacts="$FUZZ_DIR/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "$FUZZ_DIR/seeds/$t" ]; then
        cp -n "$FUZZ_DIR/seeds/$t/"* "$corpus/" 2>/dev/null || true
    fi
    echo "fuzz: running $t for ${SECONDS_PER_TARGET}s (corpus: $(find "$corpus" -type f | wc -l) inputs)"
    t0=$(now)
    fuzz_args=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    if [ "$JOBS" -gt 1 ]; then
        fuzz_args+=(-fork="$JOBS")
    fi
    if cargo fuzz run "${build_flags[@]}" "$t" "$corpus" -- "${fuzz_args[@]}" </dev/null; then
        echo "fuzz: $t: no crash in $(($(now) - t0))s"
    else
        rc=$?
        echo "fuzz: $t: FAILED (exit $rc) after $(($(now) - t0))s; inputs in $artifacts:" >&2
        ls -l "$artifacts" >&2 || true
        for a in "$artifacts"/*; do
            [ -f "$a" ] || continue
            echo "--- $a (hex) ---" >&2
            head -c 512 "$a" | od -A d -c | head -20 >&2
            echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz --sanitizer $SANITIZER $t $a" >&2
        done
        failed+=("$t")
    fi
done
t_end=$(now)

echo "fuzz: timings: install $((t_installed - t_start))s, build $((t_built - t_installed))s, run $((t_end - t_built))s, total $((t_end - t_start))s"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: crashes found in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crashes"
