#!/usr/bin/env bash
# Runs agentd on a fresh Debian 12 machine with a Rust toolchain: installs the system packages
# it builds and runs with, builds it, fetches the offline model (SmolLM2-135M-Instruct, served
# as local/smollm2, so sessions work with no model key), and serves on 127.0.0.1:8420.
# Arguments go to `agentd serve` (see `agentd serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root for: $*" >&2; return 1; fi
}

need=()
command -v cc >/dev/null || need+=(build-essential)
command -v git >/dev/null || need+=(git)
# The sandbox of the built-in tools.
command -v bwrap >/dev/null || need+=(bubblewrap)
# llama.cpp, for local models: C++ built by cmake, bindings generated with libclang.
command -v cmake >/dev/null || need+=(cmake)
command -v clang >/dev/null || need+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
    step "system packages: ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

step "building agentd (release; the first build compiles llama.cpp and takes several minutes)"
cargo build --release -p agentd --locked

step "the offline model"
./target/release/agentd models pull smollm2

export AGENTD_API_KEY=${AGENTD_API_KEY:-sk-agentd-dev}
step "serving; API key: the value of AGENTD_API_KEY (sk-agentd-dev unless you set it)"
exec ./target/release/agentd serve "$@"
