#!/usr/bin/env bash
# The operator's performance benchmark (not part of the test suite; tests/cluster/bench_smoke.rs
# runs a tiny version of it). Builds the operator, the simulator and the benchmark in release
# mode, then runs `ospkg-bench`: a real kube-apiserver + etcd, the simulator as its own process
# (token bucket per (account, region) = the operator's --aws-rate-limit, package quota raised)
# and the operator binary with the chart's arguments; N objects over R regions. Prints a
# Markdown table (stdout; progress on stderr) and, with --json FILE, writes the figures as JSON.
#
# Usage:
#   hack/bench.sh                                        1,000 objects over 20 regions (~5 min)
#   hack/bench.sh --objects 5000 --skip changes --json bench-5000.json
#                                                        the 5,000-object memory run
#   hack/bench.sh --objects 100 --regions 5              a quick look
#   hack/bench.sh --help                                 every option
#
# Needs what hack/test.sh needs (Rust, Go for the control-plane binaries). The first release
# build takes long (104 minutes on the busy, shared 2-core machine of the README's figures).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

export OSPKG_CACHE="${OSPKG_CACHE:-$HOME/.cache/ospkg}"
hack/build-control-plane.sh >/dev/null
# shellcheck disable=SC1091
source "$OSPKG_CACHE/bin/env"

echo "bench: cargo build --release (operator, simulator, benchmark)" >&2
cargo build --release --locked -p opensearch-package-operator -p ospkg-sim -p ospkg-bench
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

exec "$TARGET/ospkg-bench" \
  --operator-bin "$TARGET/opensearch-package-operator" \
  --sim-bin "$TARGET/ospkg-sim" \
  --repo "$ROOT" \
  "$@"
