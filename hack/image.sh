#!/usr/bin/env bash
# Builds the operator's container image FROM scratch (see Containerfile) with buildah, without
# any container registry: the stripped release binary, the dynamic loader and shared libraries it
# links (read off ldd), Debian's CA bundle, /etc/passwd and /etc/group for nonroot (65532) and
# the licence files are staged as the image's root filesystem.
#
# Usage:
#   hack/image.sh                 build the image, print its size and the binary's
#   hack/image.sh --tag REF       name it REF (default ghcr.io/ospkg-dev/opensearch-package-operator:<version>)
#   hack/image.sh --stage DIR     only stage the build context (Containerfile + rootfs/) in DIR,
#                                 for another OCI builder; prints the build arguments to pass
#   hack/image.sh --setup         only install the tools and write the container configuration
#
# stdout carries only `export NAME=value` lines (OSPKG_IMAGE and the CONTAINERS_* settings that
# podman and buildah need on this machine), so `eval "$(hack/image.sh)"` works; progress goes to
# stderr. The same lines are written to ${OSPKG_CACHE}/containers/env.
#
# Tools: buildah, podman and runc from Debian (apt-get install, as root, only if missing). Their
# configuration is written under ${OSPKG_CACHE:-$HOME/.cache/ospkg}/containers: a containers.conf
# (runtime runc, explicit ulimits within this machine's hard limits, file logs and events, no
# systemd), a storage.conf (the image store lives there too; overlay, or vfs where overlay
# cannot work), an empty registries.conf and a policy.json; nothing is pulled or pushed.
#
# Environment:
#   OSPKG_CACHE                  cache directory (default ~/.cache/ospkg)
#   OSPKG_RELEASE_TARGET_DIR     cargo target directory of the release build
#                                (default ${OSPKG_CACHE}/release-target: rebuilds stay incremental)
#   OSPKG_CONTAINERS_DRIVER      storage driver, overlay or vfs (default: overlay when it can work)
#   SOURCE_DATE_EPOCH            image creation time (default: the commit's time on a clean
#                                tree, now otherwise); also every file's timestamp in the image
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${OSPKG_CACHE:-$HOME/.cache/ospkg}"
CONF="$CACHE/containers"
TARGET_DIR="${OSPKG_RELEASE_TARGET_DIR:-$CACHE/release-target}"
NAME=opensearch-package-operator
BINARY_PATH=/usr/local/bin/$NAME

log() { echo "image: $*" >&2; }
die() {
  log "$*"
  exit 1
}

MODE=build
TAG=""
STAGE_DIR=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag)
      [[ $# -ge 2 ]] || die "--tag needs an image reference"
      TAG="$2"
      shift 2
      ;;
    --stage)
      [[ $# -ge 2 ]] || die "--stage needs a directory"
      MODE=stage
      STAGE_DIR="$2"
      shift 2
      ;;
    --setup)
      MODE=setup
      shift
      ;;
    -h | --help)
      sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: hack/image.sh [--tag REF] [--stage DIR] [--setup]" >&2
      exit 2
      ;;
  esac
done

# --- tools -----------------------------------------------------------------------------------

# Installs with apt-get the Debian packages in "$@" (as `package:command` or `package:/file`
# pairs) whose command or file is missing; `apt-get update` only when the package lists are too
# old to install from.
apt_install() {
  local missing=() pkg what
  for pair in "$@"; do
    pkg="${pair%%:*}"
    what="${pair#*:}"
    if [[ "$what" == /* ]]; then
      [[ -s "$what" ]] || missing+=("$pkg")
    else
      command -v "$what" >/dev/null || missing+=("$pkg")
    fi
  done
  [[ ${#missing[@]} -gt 0 ]] || return 0
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    die "missing ${missing[*]}: install them (Debian/Ubuntu: apt-get install --no-install-recommends ${missing[*]})"
  fi
  log "apt-get install ${missing[*]}"
  # Waits for another apt-get or dpkg (up to two minutes) instead of failing on its lock.
  local install=(apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends "${missing[@]}")
  if ! DEBIAN_FRONTEND=noninteractive "${install[@]}" >"$CONF/apt.log" 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$CONF/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${install[@]}" >>"$CONF/apt.log" 2>&1 || {
      tail -n 20 "$CONF/apt.log" >&2
      die "apt-get install ${missing[*]} failed"
    }
  fi
}

# A limit for containers: the hard limit of this shell, capped at $2 (runc cannot raise a
# limit above the hard limit it inherits, and podman's defaults are above it on some machines).
limit() {
  local hard="$1" cap="$2"
  if [[ "$hard" == unlimited || "$hard" -gt "$cap" ]]; then
    echo "$cap"
  else
    echo "$hard"
  fi
}

storage_driver() {
  if [[ -n "${OSPKG_CONTAINERS_DRIVER:-}" ]]; then
    echo "$OSPKG_CONTAINERS_DRIVER"
  # Kernel overlayfs, as root, on a filesystem that is not itself an overlay (a container's).
  elif [[ "$(id -u)" == 0 ]] && grep -qw overlay /proc/filesystems &&
    [[ "$(stat -f -c %T "$CONF")" != overlayfs ]]; then
    echo overlay
  else
    echo vfs
  fi
}

setup() {
  mkdir -p "$CONF"
  apt_install buildah:buildah podman:podman runc:runc \
    ca-certificates:/etc/ssl/certs/ca-certificates.crt
  local run_dir="$CONF/run"
  # Runtime state belongs on a tmpfs that a reboot clears; /run (root) or XDG_RUNTIME_DIR.
  local base="${XDG_RUNTIME_DIR:-/run}"
  if [[ -d "$base" && -w "$base" ]]; then
    run_dir="$base/ospkg-containers"
  fi
  mkdir -p "$run_dir" "$CONF/storage"
  local nofile nproc
  nofile="$(limit "$(ulimit -Hn)" 1048576)"
  nproc="$(limit "$(ulimit -Hu)" 32768)"

  cat >"$CONF/containers.conf.tmp" <<EOF
# Written by hack/image.sh. podman and buildah read it through CONTAINERS_CONF.
[containers]
# At the hard limits hack/image.sh ran under (runc cannot raise a limit above them).
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$run_dir/libpod"
EOF
  cat >"$CONF/storage.conf.tmp" <<EOF
# Written by hack/image.sh. podman and buildah read it through CONTAINERS_STORAGE_CONF.
[storage]
driver = "$(storage_driver)"
graphroot = "$CONF/storage"
runroot = "$run_dir/storage"
EOF
  cat >"$CONF/registries.conf.tmp" <<'EOF'
# Written by hack/image.sh: no registry is searched; images are built and run locally.
unqualified-search-registries = []
EOF
  # Only local images are used (FROM scratch, podman run --pull=never); nothing is pulled.
  cat >"$CONF/policy.json.tmp" <<'EOF'
{
  "default": [{"type": "reject"}],
  "transports": {
    "containers-storage": {"": [{"type": "insecureAcceptAnything"}]},
    "oci-archive": {"": [{"type": "insecureAcceptAnything"}]},
    "docker-archive": {"": [{"type": "insecureAcceptAnything"}]}
  }
}
EOF
  for file in containers.conf storage.conf registries.conf policy.json; do
    mv "$CONF/$file.tmp" "$CONF/$file"
  done
  export CONTAINERS_CONF="$CONF/containers.conf"
  export CONTAINERS_STORAGE_CONF="$CONF/storage.conf"
  export CONTAINERS_REGISTRIES_CONF="$CONF/registries.conf"
}

write_env() {
  {
    [[ -z "${1:-}" ]] || echo "export OSPKG_IMAGE=$1"
    echo "export CONTAINERS_CONF=$CONTAINERS_CONF"
    echo "export CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
    echo "export CONTAINERS_REGISTRIES_CONF=$CONTAINERS_REGISTRIES_CONF"
  } >"$CONF/env.tmp"
  mv "$CONF/env.tmp" "$CONF/env"
  cat "$CONF/env"
}

# --- the root filesystem -----------------------------------------------------------------------

revision() {
  if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    local sha
    sha="$(git -C "$ROOT" rev-parse HEAD)"
    if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]]; then
      sha+="-dirty"
    fi
    echo "$sha"
  else
    echo unknown
  fi
}

created_epoch() {
  if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
    echo "$SOURCE_DATE_EPOCH"
  elif [[ "$REVISION" != unknown && "$REVISION" != *-dirty ]]; then
    git -C "$ROOT" log -1 --format=%ct
  else
    date +%s
  fi
}

build_binary() {
  log "cargo build --release ($TARGET_DIR)"
  local start=$SECONDS
  # Variables cargo sets for a test or build script it runs (CARGO_PKG_NAME, …): inherited by
  # this build (the image test runs this script), they would make dependencies' build scripts
  # that watch them (ring's) look changed, and most of the build would run again.
  local unset=() var
  while read -r var; do
    unset+=(-u "$var")
  done < <(compgen -e | grep -E '^CARGO_(PKG_|MANIFEST_|CRATE_NAME$|BIN_EXE_|BIN_NAME$|PRIMARY_PACKAGE$|TARGET_TMPDIR$)' || true)
  # OSPKG_GIT_COMMIT: `version` and ospkg_build_info carry the revision the labels name.
  (cd "$ROOT" && env "${unset[@]}" OSPKG_GIT_COMMIT="$REVISION" CARGO_TARGET_DIR="$TARGET_DIR" \
    cargo build --release --locked -p "$NAME" --bin "$NAME")
  log "release build: $((SECONDS - start))s"
  BINARY="$TARGET_DIR/release/$NAME"
  [[ -x "$BINARY" ]] || die "$BINARY was not built"
}

# Copies host file $1 to the same path under $2, following symbolic links.
stage_file() {
  install -D -m "${3:-0644}" "$(readlink -f "$1")" "$2$1"
}

stage_rootfs() {
  local rootfs="$1"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  install -D -m 0755 "$BINARY" "$rootfs$BINARY_PATH"

  # The dynamic loader (PT_INTERP) and every shared library the binary links.
  local interp
  interp="$(readelf -l "$BINARY" | sed -nE 's#.*\[Requesting program interpreter: (.*)\]#\1#p')"
  [[ -n "$interp" ]] || die "$BINARY names no program interpreter (a static binary needs no loader)"
  stage_file "$interp" "$rootfs" 0755
  local libs=()
  mapfile -t libs < <(ldd "$BINARY" | sed -nE 's#.*=> (/[^ ]+) \(0x[0-9a-f]+\)#\1#p')
  if ldd "$BINARY" | grep -q 'not found'; then
    die "the binary links libraries this machine lacks: $(ldd "$BINARY" | grep 'not found')"
  fi
  for lib in "${libs[@]}"; do
    stage_file "$lib" "$rootfs" 0755
  done
  log "linked: $(basename -a "$interp" "${libs[@]}" | tr '\n' ' ')"

  # CA certificates for TLS to AWS (the operator refuses to start without any).
  local bundle=/etc/ssl/certs/ca-certificates.crt
  [[ -s "$bundle" ]] || die "$bundle is missing (install ca-certificates)"
  stage_file "$bundle" "$rootfs"

  cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin
EOF
  cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
  cat >"$rootfs/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
  chmod 0644 "$rootfs"/etc/{passwd,group,nsswitch.conf}
  install -d -m 1777 "$rootfs/tmp"

  # Licences: the operator's, and the copyright files of the Debian packages shipped.
  install -D -m 0644 "$ROOT/LICENSE" "$rootfs/usr/share/doc/$NAME/LICENSE"
  if command -v dpkg-query >/dev/null; then
    local pkg
    # The bundle is generated by update-ca-certificates from the ca-certificates package.
    if [[ -f /usr/share/doc/ca-certificates/copyright ]]; then
      install -D -m 0644 /usr/share/doc/ca-certificates/copyright \
        "$rootfs/usr/share/doc/ca-certificates/copyright"
    fi
    for file in "$interp" "${libs[@]}"; do
      pkg="$(dpkg -S "$(readlink -f "$file")" 2>/dev/null | head -n 1 | cut -d: -f1)" || true
      if [[ -z "$pkg" ]]; then
        pkg="$(dpkg -S "$file" 2>/dev/null | head -n 1 | cut -d: -f1)" || true
      fi
      if [[ -n "$pkg" && -f "/usr/share/doc/$pkg/copyright" ]]; then
        install -D -m 0644 "/usr/share/doc/$pkg/copyright" "$rootfs/usr/share/doc/$pkg/copyright"
      fi
    done
  fi
}

stage_context() {
  local dir="$1"
  mkdir -p "$dir"
  cp "$ROOT/Containerfile" "$dir/Containerfile"
  stage_rootfs "$dir/rootfs"
}

human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }

# --- main --------------------------------------------------------------------------------------

mkdir -p "$CONF"
# Serialise concurrent callers (CI steps, a test building the image itself) on one lock.
exec 9>"$CONF/.lock"
flock 9

if [[ "$MODE" == setup ]]; then
  setup
  write_env ""
  exit 0
fi

REVISION="$(revision)"
EPOCH="$(created_epoch)"
CREATED="$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)"

if [[ "$MODE" == stage ]]; then
  build_binary
  VERSION="$("$BINARY" version | awk '{print $2}')"
  stage_context "$STAGE_DIR"
  log "staged $STAGE_DIR; build it with the arguments:"
  echo "--build-arg VERSION=$VERSION --build-arg REVISION=$REVISION --build-arg CREATED=$CREATED"
  exit 0
fi

setup
start=$SECONDS
build_binary
VERSION="$("$BINARY" version | awk '{print $2}')"
[[ -n "$VERSION" ]] || die "$BINARY version printed nothing"
TAG="${TAG:-ghcr.io/ospkg-dev/$NAME:$VERSION}"

CONTEXT="$(mktemp -d "${TMPDIR:-/tmp}/ospkg-image.XXXXXX")"
trap 'rm -rf "$CONTEXT"' EXIT
stage_context "$CONTEXT"

old_id="$(podman image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)"
log "buildah build -t $TAG (version $VERSION, revision $REVISION, created $CREATED)"
build_start=$SECONDS
buildah build --quiet \
  --signature-policy "$CONF/policy.json" \
  --pull=never \
  --timestamp "$EPOCH" \
  --build-arg "VERSION=$VERSION" \
  --build-arg "REVISION=$REVISION" \
  --build-arg "CREATED=$CREATED" \
  --file "$CONTEXT/Containerfile" \
  --tag "$TAG" \
  "$CONTEXT" >/dev/null
new_id="$(podman image inspect --format '{{.Id}}' "$TAG")"
# The previous build under this tag is now unnamed; drop it unless a container still uses it.
if [[ -n "$old_id" && "$old_id" != "$new_id" ]]; then
  podman rmi "$old_id" >/dev/null 2>&1 || true
fi
log "image build: $((SECONDS - build_start))s (total $((SECONDS - start))s)"

binary_size="$(stat -c %s "$BINARY")"
image_size="$(podman image inspect --format '{{.Size}}' "$TAG")"
compressed="$(tar -C "$CONTEXT/rootfs" -cf - . | gzip -6 | wc -c)"
log "built $TAG ($new_id)"
log "size: image $(human "$image_size"), about $(human "$compressed") compressed; stripped binary $(human "$binary_size")"
write_env "$TAG"
