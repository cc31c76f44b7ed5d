# Shared by scripts/bench-*: sourced, not run. Builds with --release, starts
# and stops servers and `loadgen hold` clients, and cleans up on any exit.
#
# The sourcing script must use `set -euo pipefail`. Everything listens and
# connects on 127.0.0.1 only.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
HOST_BIN=$REPO/target/release/mnvkd-host
LOADGEN=$REPO/target/release/loadgen
# Measure as a production server runs: no native backtrace captured per
# wasmtime error (RUST_BACKTRACE=1 makes every cancelled fiber unwind).
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
export MNVKD_LOG=${MNVKD_LOG:-warn}

BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/mnvkd-bench.XXXXXX")
BENCH_PIDS=()
# Commands run at exit, last registered first (e.g. restoring a sysctl).
BENCH_ON_EXIT=()

bench_cleanup() {
    local status=$?
    local pid i
    for pid in "${BENCH_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BENCH_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for ((i = ${#BENCH_ON_EXIT[@]} - 1; i >= 0; i--)); do
        eval "${BENCH_ON_EXIT[i]}" || true
    done
    rm -rf "$BENCH_TMP"
    exit "$status"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "error: $*" >&2
    exit 1
}

# Prints the machine's load, so a noisy run can be told from a slow host.
print_load() {
    echo "load ($1): $(uptime | sed 's/.*load average/load average/'), cpus: $(nproc)"
}

# cargo build --release for the given targets (e.g. -p loadgen).
build() {
    echo "building (release): $*" >&2
    cargo build --release --quiet "$@"
}

# snapshot GUEST...: copies the built binaries and the named guests (with
# their manifests) into the temp dir and points HOST_BIN, LOADGEN, SPAWN_BIN
# and GUESTS at the copies, so that a rebuild by someone else during the run
# cannot change what is measured. Prints what is measured.
snapshot() {
    mkdir -p "$BENCH_TMP/bin" "$BENCH_TMP/guests"
    local file
    # HOST_BIN may be another build (bench-instr's BIN): copied under its usual name.
    cp "$HOST_BIN" "$BENCH_TMP/bin/mnvkd-host"
    for file in "$LOADGEN" "$REPO/target/release/examples/spawn"; do
        [[ -f $file ]] && cp "$file" "$BENCH_TMP/bin/"
    done
    HOST_BIN=$BENCH_TMP/bin/mnvkd-host
    LOADGEN=$BENCH_TMP/bin/loadgen
    SPAWN_BIN=$BENCH_TMP/bin/spawn
    GUESTS=$BENCH_TMP/guests
    local guest
    for guest in "$@"; do
        [[ -f guests/$guest.wasm ]] || die "guests/$guest.wasm is missing: run scripts/build-guests"
        cp "guests/$guest.wasm" "$GUESTS/"
        [[ ! -f guests/$guest.toml ]] || cp "guests/$guest.toml" "$GUESTS/"
        echo "guest $guest: $(wc -c <"$GUESTS/$guest.wasm") bytes, sha256 $(sha256sum "$GUESTS/$guest.wasm" | cut -c1-12)"
    done
    echo "host: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- host 2>/dev/null || echo ' + uncommitted changes in host/'), binary sha256 $(sha256sum "$HOST_BIN" | cut -c1-12)"
}

# start_server NAME [serve args...]: starts `mnvkd-host serve ARGS` in the
# background (a leading `taskset -c CPU` is allowed via SERVER_PREFIX), waits
# for its `listening` lines, and sets SERVER_PID and SERVER_OUT (its stdout).
start_server() {
    local name=$1
    shift
    SERVER_OUT=$BENCH_TMP/$name.out
    local err=$BENCH_TMP/$name.err
    # shellcheck disable=SC2086 # SERVER_PREFIX is a word list on purpose.
    ${SERVER_PREFIX:-} "$HOST_BIN" serve "$@" >"$SERVER_OUT" 2>"$err" &
    SERVER_PID=$!
    BENCH_PIDS+=("$SERVER_PID")
    local want=0 arg
    for arg in "$@"; do
        [[ $arg == *.wasm || $arg == *.wat ]] && want=$((want + 1))
    done
    local waited=0
    until [[ $(grep -c '^listening ' "$SERVER_OUT" || true) -ge $want ]]; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            cat "$err" >&2
            die "the server ($name) exited during start-up"
        fi
        ((waited++ < 300)) || die "the server ($name) did not listen within 30 s"
        sleep 0.1
    done
}

# check_server: fails with the server's exit status and the end of its log
# if the server started last is no longer running.
check_server() {
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        local status=0
        wait "$SERVER_PID" 2>/dev/null || status=$?
        echo "the server exited with status $status; the end of its log:" >&2
        tail -n 20 "${SERVER_OUT%.out}.err" >&2
        die "the server died during the run"
    fi
}

# stop_server: kills the server started last and waits for it.
stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# server_addr APP: the address the running server listens on for APP.
server_addr() {
    awk -v app="$1" '$1 == "listening" && $2 == app { print $3 }' "$SERVER_OUT"
}

# server_slots: the "workers: …, process slots: N (…)" line of the table.
server_slots_line() {
    grep '^workers:' "$SERVER_OUT" || true
}

# rss_kib PID: resident set size in KiB.
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# field KEY LINE: the value of KEY=value in a loadgen line.
field() {
    tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"
}

# hold_start ADDRS CONNS [hold flags...]: starts `loadgen hold` in the
# background and waits (up to HOLD_WAIT seconds, default 300) for its
# `held=` line, which it sets in HOLD_LINE. The connections stay open until
# hold_stop.
hold_start() {
    local addrs=$1 conns=$2
    shift 2
    local fifo=$BENCH_TMP/hold.$RANDOM.in
    HOLD_OUT=$BENCH_TMP/hold.$RANDOM.out
    mkfifo "$fifo"
    # shellcheck disable=SC2086 # LOADGEN_PREFIX is a word list on purpose.
    ${LOADGEN_PREFIX:-} "$LOADGEN" hold --addr "$addrs" --conns "$conns" "$@" \
        <"$fifo" >"$HOLD_OUT" 2>"$HOLD_OUT.err" &
    HOLD_PID=$!
    BENCH_PIDS+=("$HOLD_PID")
    exec {HOLD_FD}>"$fifo"
    local waited=0
    until grep -q 'held=' "$HOLD_OUT"; do
        if ! kill -0 "$HOLD_PID" 2>/dev/null; then
            cat "$HOLD_OUT.err" >&2
            die "loadgen hold exited before holding its connections"
        fi
        ((waited++ < ${HOLD_WAIT:-300} * 10)) || die "loadgen hold did not finish within ${HOLD_WAIT:-300} s"
        sleep 0.1
    done
    HOLD_LINE=$(grep 'held=' "$HOLD_OUT")
}

# hold_stop: tells the last hold to close its connections and waits for it.
hold_stop() {
    exec {HOLD_FD}>&-
    local waited=0
    while kill -0 "$HOLD_PID" 2>/dev/null; do
        if ((waited++ > 300)); then
            kill "$HOLD_PID" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    wait "$HOLD_PID" 2>/dev/null || true
}

# raise_nofile N: raises this shell's open-file limit (soft, and hard if
# allowed, e.g. as root) to at least N, for the server and the clients it
# starts. Call it directly, not in $(…): a subshell's limit dies with it.
raise_nofile() {
    local want=$1
    if (($(ulimit -Hn) < want)); then
        ulimit -Hn "$want" 2>/dev/null || true
    fi
    local hard
    hard=$(ulimit -Hn)
    ulimit -Sn "$((hard < want ? hard : want))"
}
