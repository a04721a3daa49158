#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script and nothing else).
#
# Builds what the tests need and is idempotent: kube-apiserver, kube-controller-manager, etcd,
# helm, helm-docs and promtool from Go modules (cached under ${OSPKG_CACHE:-$HOME/.cache/ospkg}), a
# Python venv with boto3 for the simulator's second client, a venv with moto's S3 server (a
# second S3 implementation for the operator's S3 client), and the container image
# (hack/image.sh; buildah, podman and runc from Debian). Every server a test needs (API server,
# etcd, simulator, moto, the image's container) is started by that test and stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

export OSPKG_CACHE="${OSPKG_CACHE:-$HOME/.cache/ospkg}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "control-plane binaries (kube-apiserver, kube-controller-manager, etcd, helm, helm-docs, promtool)"
hack/build-control-plane.sh >/dev/null
# shellcheck disable=SC1091
source "$OSPKG_CACHE/bin/env"

step "formatting"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "simulator against boto3 (second, independent client)"
sim/tests/boto3/run.sh

step "moto's S3 server (second S3 implementation, for tests/simulated/source_moto.rs)"
hack/moto-server.sh >/dev/null

step "container image (release build, buildah; tests/cluster/image.rs runs it with podman)"
hack/image.sh >/dev/null
# OSPKG_IMAGE and the CONTAINERS_* settings podman needs here.
# shellcheck disable=SC1091
source "$OSPKG_CACHE/containers/env"

step "cargo test (unit, integration, end-to-end)"
cargo test --workspace --locked --no-fail-fast
