#!/usr/bin/env bash
# Runs the boto3 round-trip tests against the ospkg-sim binary.
# Creates (or reuses) a venv with boto3 and pytest under ${OSPKG_CACHE:-$HOME/.cache/ospkg}/venv,
# builds the simulator (or uses $OSPKG_SIM_BIN), starts it on free ports, runs pytest, stops it.
# Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
cache="${OSPKG_CACHE:-$HOME/.cache/ospkg}"
venv="$cache/venv"

if ! "$venv/bin/python" -c 'import boto3, pytest' 2>/dev/null; then
  echo "setting up $venv (boto3, pytest)" >&2
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check boto3 pytest
fi

bin="${OSPKG_SIM_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --quiet -p ospkg-sim --bin ospkg-sim)
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/ospkg-sim"
fi

out="$(mktemp)"
"$bin" --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 \
  --domain search:OpenSearch_2.15 --domain logs:OpenSearch_2.15 \
  --clock manual --package-quota 5 \
  --copying-ms 2000 --validating-ms 1000 --associating-ms 3000 --dissociating-ms 2000 --deleting-ms 1000 \
  >"$out" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$out"' EXIT

for _ in $(seq 200); do
  grep -q 'listening on' "$out" && break
  kill -0 "$pid" 2>/dev/null || { echo "ospkg-sim exited early" >&2; exit 1; }
  sleep 0.05
done
line="$(head -n1 "$out")"
endpoint="$(sed -n 's/^ospkg-sim listening on \(http:[^ ]*\) (s3 \(http:[^)]*\))$/\1/p' <<<"$line")"
s3="$(sed -n 's/^ospkg-sim listening on \(http:[^ ]*\) (s3 \(http:[^)]*\))$/\2/p' <<<"$line")"
if [ -z "$endpoint" ] || [ -z "$s3" ]; then
  echo "could not read the simulator's address from: $line" >&2
  exit 1
fi

OSPKG_SIM_ENDPOINT="$endpoint" OSPKG_SIM_S3="$s3" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$here/test_boto3.py" "$@"
