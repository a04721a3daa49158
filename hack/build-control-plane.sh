#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, etcd, helm, helm-docs and promtool from Go
# modules (nothing but the Go module proxy is needed) and caches them by version outside the
# repo. A no-op when the binaries are present.
#
# stdout carries only `export OSPKG_...=path` lines, so both of these work:
#   eval "$(hack/build-control-plane.sh)"
#   hack/build-control-plane.sh >/dev/null && source "${OSPKG_CACHE:-$HOME/.cache/ospkg}/bin/env"
# Progress goes to stderr. The same lines are written to ${OSPKG_CACHE}/bin/env, which the Rust
# harness (testenv) reads.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
HELM_DOCS_VERSION="${HELM_DOCS_VERSION:-v1.14.2}"
# Prometheus v3.16.0: its Go module versions are v0.<major><minor>.<patch>.
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"

CACHE="${OSPKG_CACHE:-$HOME/.cache/ospkg}"
BIN="$CACHE/bin"
SRC="$CACHE/src"
mkdir -p "$BIN" "$SRC"

KUBE_APISERVER="$BIN/kube-apiserver-$KUBE_VERSION"
# Only its clusterrole-aggregation controller runs in tests (testenv starts it on request).
KUBE_CONTROLLER_MANAGER="$BIN/kube-controller-manager-$KUBE_VERSION"
ETCD="$BIN/etcd-$ETCD_VERSION"
HELM="$BIN/helm-$HELM_VERSION"
# Generates the chart README from values.yaml (hack/generate.sh).
HELM_DOCS="$BIN/helm-docs-$HELM_DOCS_VERSION"
PROMTOOL="$BIN/promtool-$PROMETHEUS_VERSION"
# The machine's kubectl is enough for apply/get/wait; OSPKG_KUBECTL_FROM_SOURCE=1 builds the
# matching release instead.
if [[ -x /usr/bin/kubectl && "${OSPKG_KUBECTL_FROM_SOURCE:-0}" != 1 ]]; then
  KUBECTL=/usr/bin/kubectl
else
  KUBECTL="$BIN/kubectl-$KUBE_VERSION"
fi

log() { echo "build-control-plane: $*" >&2; }

# Builds main package $2 from module $1@$3 in a scratch module under $SRC/$4, to $5.
# Extra arguments are passed to `go build`.
scratch_module() {
  local dir="$SRC/$1"
  if [[ ! -f "$dir/go.mod" ]]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && go mod init "ospkg.local/build/$1" >&2)
  fi
  echo "$dir"
}

# `go get` in scratch module $1; its long download list is shown only if it fails.
go_get() {
  local dir="$1" out
  shift
  log "go get $*"
  if ! out="$(cd "$dir" && go get "$@" 2>&1)"; then
    echo "$out" >&2
    return 1
  fi
}

go_build() {
  local dir="$1" out="$2" pkg="$3"
  shift 3
  log "building $pkg -> $out"
  local start=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" "$@" "$pkg")
  mv "$out.tmp" "$out"
  log "built $(basename "$out") in $((SECONDS - start))s"
}

build_etcd() {
  [[ -x "$ETCD" ]] && return
  local dir
  dir="$(scratch_module "etcd-$ETCD_VERSION")"
  # The server module has a main package at its root; its go.mod has replace directives, so
  # `go install mod@version` refuses it.
  go_get "$dir" "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go_build "$dir" "$ETCD" go.etcd.io/etcd/server/v3 -ldflags "-s -w"
}

build_kubernetes() {
  local need=()
  [[ -x "$KUBE_APISERVER" ]] || need+=(kube-apiserver)
  [[ -x "$KUBE_CONTROLLER_MANAGER" ]] || need+=(kube-controller-manager)
  [[ -x "$KUBECTL" ]] || need+=(kubectl)
  [[ ${#need[@]} -gt 0 ]] || return 0

  local dir
  dir="$(scratch_module "kubernetes-$KUBE_VERSION")"
  if [[ ! -f "$dir/.replaced" ]]; then
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
    # ./staging paths; point each at the published module of the matching release instead.
    local gomod staging
    gomod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | jq -r .GoMod)"
    staging="v0${KUBE_VERSION#v1}"
    local mods
    mods="$(sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?(k8s\.io/[^[:space:]]+)[[:space:]]+=>[[:space:]]+\./staging/.*#\2#p' "$gomod" | sort -u)"
    if [[ -z "$mods" ]]; then
      log "found no staging replace directives in $gomod"
      exit 1
    fi
    local args=()
    while read -r mod; do
      args+=("-replace=$mod=$mod@$staging")
    done <<<"$mods"
    (cd "$dir" && go mod edit "${args[@]}")
    log "replaced $(wc -l <<<"$mods") staging modules with $staging"
    touch "$dir/.replaced"
  fi

  local minor="${KUBE_VERSION#v1.}"
  minor="${minor%%.*}"
  local v=k8s.io/component-base/version
  local ldflags="-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor"
  ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for cmd in "${need[@]}"; do
    local out
    case "$cmd" in
      kube-apiserver) out="$KUBE_APISERVER" ;;
      kube-controller-manager) out="$KUBE_CONTROLLER_MANAGER" ;;
      kubectl) out="$KUBECTL" ;;
    esac
    # Getting the package (not just the module) records every go.sum entry it needs.
    go_get "$dir" "k8s.io/kubernetes/cmd/$cmd@$KUBE_VERSION"
    go_build "$dir" "$out" "k8s.io/kubernetes/cmd/$cmd" -ldflags "$ldflags"
  done
}

build_helm() {
  [[ -x "$HELM" ]] && return
  local dir
  dir="$(scratch_module "helm-$HELM_VERSION")"
  go_get "$dir" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  go_build "$dir" "$HELM" helm.sh/helm/v3/cmd/helm \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
}

build_helm_docs() {
  [[ -x "$HELM_DOCS" ]] && return
  local dir
  dir="$(scratch_module "helm-docs-$HELM_DOCS_VERSION")"
  go_get "$dir" "github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION"
  go_build "$dir" "$HELM_DOCS" github.com/norwoodj/helm-docs/cmd/helm-docs \
    -ldflags "-s -w -X main.version=${HELM_DOCS_VERSION#v}"
}

# promtool checks and unit-tests the chart's alerting rules (tests/cluster/monitoring.rs).
build_promtool() {
  [[ -x "$PROMTOOL" ]] && return
  local dir release
  dir="$(scratch_module "prometheus-$PROMETHEUS_VERSION")"
  # v0.316.0 is release 3.16.0.
  release="$(sed -E 's/^v0\.([0-9])([0-9]+)\.([0-9]+)$/\1.\2.\3/; s/\.0([0-9])/.\1/' <<<"$PROMETHEUS_VERSION")"
  go_get "$dir" "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
  # remove_all_sd leaves out the service-discovery plugins and their cloud SDKs (Azure, AWS,
  # GCE, Kubernetes, …), which checking and unit-testing rules do not use, and their build.
  go_build "$dir" "$PROMTOOL" github.com/prometheus/prometheus/cmd/promtool -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release"
}

write_env() {
  cat >"$BIN/env.tmp" <<EOF
export OSPKG_KUBE_APISERVER=$KUBE_APISERVER
export OSPKG_KUBE_CONTROLLER_MANAGER=$KUBE_CONTROLLER_MANAGER
export OSPKG_ETCD=$ETCD
export OSPKG_HELM=$HELM
export OSPKG_HELM_DOCS=$HELM_DOCS
export OSPKG_KUBECTL=$KUBECTL
export OSPKG_PROMTOOL=$PROMTOOL
EOF
  mv "$BIN/env.tmp" "$BIN/env"
}

# Serialise concurrent callers (parallel test binaries, CI steps) on one lock.
exec 9>"$BIN/.lock"
flock 9

if [[ ! -x "$KUBE_APISERVER" || ! -x "$KUBE_CONTROLLER_MANAGER" || ! -x "$ETCD" || ! -x "$HELM" \
  || ! -x "$HELM_DOCS" || ! -x "$KUBECTL" || ! -x "$PROMTOOL" ]]; then
  command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
  start=$SECONDS
  build_etcd
  build_kubernetes
  build_helm
  build_helm_docs
  build_promtool
  log "all binaries built in $((SECONDS - start))s"
fi
write_env
cat "$BIN/env"
