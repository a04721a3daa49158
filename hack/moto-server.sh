#!/usr/bin/env bash
# Installs moto's standalone server (PyPI `moto[server]`, pinned) into a venv cached under
# ${OSPKG_CACHE:-$HOME/.cache/ospkg} and prints the path of its `moto_server` command.
# Idempotent: a no-op when the venv is there. The S3 source test (tests/simulated/source_moto.rs)
# runs the operator's S3 client against it: a second, independent S3 implementation.
#
#   hack/moto-server.sh            # install if needed, print the command's path
#
# Progress goes to stderr; stdout carries only the path. A cold install takes about a minute.
set -euo pipefail

MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
cache="${OSPKG_CACHE:-$HOME/.cache/ospkg}"
venv="$cache/moto-$MOTO_VERSION"
mkdir -p "$cache"

# Serialise concurrent callers (test threads, CI steps) on one lock.
exec 9>"$cache/.moto.lock"
flock 9

if ! "$venv/bin/python" -c 'import moto.server, flask' 2>/dev/null; then
  echo "moto-server: installing moto[server]==$MOTO_VERSION into $venv" >&2
  start=$SECONDS
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
  echo "moto-server: installed in $((SECONDS - start))s" >&2
fi
echo "$venv/bin/moto_server"
