#!/usr/bin/env bash
# Regenerates every generated file in the repository:
#   crds/<plural>.ospkg.dev.yaml                         from the Rust types (`opensearch-package-operator crd`):
#                                                        opensearchpackages, opensearchpackageroles
#   charts/opensearch-package-operator/templates/crds/...  the same CRDs as chart templates (behind
#                                                        crds.install, with crds.keep), so helm upgrade updates them
#   charts/opensearch-package-operator/README.md         from values.yaml and README.md.gotmpl (helm-docs)
#   deploy/crds/...                                      a copy of it (kustomize reads only below deploy/)
#   deploy/*.yaml, deploy/kustomization.yaml             rendered from the chart with its default values
#   deploy/prometheus/alerts.yaml                        the chart's PrometheusRule as a plain rules file
#   deploy/grafana/opensearch-package-operator.json      a copy of the chart's Grafana dashboard
#   deploy/argocd/testdata/*.yaml                        copied from tests/fixtures/delivery/
#   examples/argocd/argocd-cm.yaml                       argocd-cm snippet with deploy/argocd/health.lua
#                                                        and the resource actions in deploy/argocd/actions/
#
# Usage:
#   hack/generate.sh            write into the repository
#   hack/generate.sh --out DIR  write the same tree under DIR instead (tests compare it with the repo)
#
# Environment:
#   OSPKG_OPERATOR_BIN  operator binary to print the CRD with (default: `cargo run -q -- crd`)
#   OSPKG_HELM          helm binary (default: helm from hack/build-control-plane.sh, else PATH)
#   OSPKG_HELM_DOCS     helm-docs binary (default: from hack/build-control-plane.sh, else PATH)
#
# The output is deterministic: no timestamps, no random names.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RELEASE=opensearch-package-operator
NAMESPACE=opensearch-package-operator
CHART=charts/opensearch-package-operator
CRD_NAMES=(opensearchpackages opensearchpackageroles)
KUBE_VERSION=v1.36.0

OUT="$ROOT"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out)
      [[ $# -ge 2 ]] || { echo "generate: --out needs a directory" >&2; exit 2; }
      mkdir -p "$2"
      OUT="$(cd "$2" && pwd)"
      shift 2
      ;;
    *)
      echo "usage: hack/generate.sh [--out DIR]" >&2
      exit 2
      ;;
  esac
done

log() { echo "generate: $*" >&2; }

# find_tool VAR command: $VAR, else the path hack/build-control-plane.sh recorded for VAR
# (building it first when it is missing), else the command on PATH.
find_tool() {
  local var="$1" cmd="$2"
  if [[ -n "${!var:-}" ]]; then
    echo "${!var}"
    return
  fi
  local env_file="${OSPKG_CACHE:-$HOME/.cache/ospkg}/bin/env" path=""
  [[ -f "$env_file" ]] && path="$(grep -E "^export $var=" "$env_file" | cut -d= -f2- || true)"
  if [[ -z "$path" || ! -x "$path" ]] && ! command -v "$cmd" >/dev/null; then
    log "building $cmd with hack/build-control-plane.sh (minutes the first time)"
    "$ROOT/hack/build-control-plane.sh" >/dev/null
    path="$(grep -E "^export $var=" "$env_file" | cut -d= -f2-)"
  fi
  if [[ -n "$path" && -x "$path" ]]; then
    echo "$path"
    return
  fi
  command -v "$cmd"
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# --- CRDs ----------------------------------------------------------------------------------
# The chart carries the CRDs as templates, not in its crds/ directory: Helm installs crds/
# once and never upgrades it. The template adds the chart's labels and, with crds.keep, the
# annotation that makes `helm uninstall` leave the CRD (and every object) alone.
rm -rf "$OUT/$CHART/crds" "$OUT/$CHART/templates/crds" "$OUT/crds" "$OUT/deploy/crds"
mkdir -p "$OUT/$CHART/templates/crds" "$OUT/crds" "$OUT/deploy/crds"
for name in "${CRD_NAMES[@]}"; do
  CRD="$name.ospkg.dev.yaml"
  if [[ -n "${OSPKG_OPERATOR_BIN:-}" ]]; then
    "$OSPKG_OPERATOR_BIN" crd "$name" >"$TMP/$CRD"
  else
    (cd "$ROOT" && cargo run -q --bin opensearch-package-operator -- crd "$name") >"$TMP/$CRD"
  fi
  grep -q '^kind: CustomResourceDefinition$' "$TMP/$CRD" || {
    log "the operator's crd subcommand printed no CustomResourceDefinition for $name"
    exit 1
  }
  cp "$TMP/$CRD" "$OUT/crds/$CRD"
  cp "$TMP/$CRD" "$OUT/deploy/crds/$CRD"
  grep -q '{{' "$TMP/$CRD" && {
    log "the CRD $CRD contains '{{', which the chart template would evaluate"
    exit 1
  }
  awk '
    NR == 1 && /^#/ { next }   # the generator header; the template gets its own
    /^metadata:$/ { in_metadata = 1 }
    { print }
    in_metadata && /^  name: / {
      print "  labels:"
      print "    {{- include \"ospkg.labels\" . | nindent 4 }}"
      print "  {{- if .Values.crds.keep }}"
      print "  annotations:"
      print "    # helm uninstall leaves the CRD, and with it every object of its kind, in place."
      print "    helm.sh/resource-policy: keep"
      print "  {{- end }}"
      in_metadata = 0
    }
  ' "$TMP/$CRD" >"$TMP/crd-body.yaml"
  grep -q 'helm.sh/resource-policy' "$TMP/crd-body.yaml" || {
    log "found no metadata.name in $CRD to put the chart's metadata after"
    exit 1
  }
  {
    echo "{{- /* Generated by hack/generate.sh from \`opensearch-package-operator crd $name\` (src/crd/). Do not edit. */}}"
    echo "{{- if .Values.crds.install }}"
    cat "$TMP/crd-body.yaml"
    echo "{{- end }}"
  } >"$OUT/$CHART/templates/crds/$CRD"
done

# --- deploy/ rendered from the chart -------------------------------------------------------
HELM="$(find_tool OSPKG_HELM helm)"
# Render the chart as written to $OUT (its CRD template may be new). deploy/ carries the plain
# CRD in deploy/crds/, applied server-side, so the chart's copy is left out.
# --kube-version: render the same whatever Kubernetes version helm was built to assume.
CHART_COPY="$TMP/chart/$(basename "$CHART")"
mkdir -p "$TMP/chart"
cp -R "$ROOT/$CHART" "$CHART_COPY"
rm -rf "$CHART_COPY/crds" "$CHART_COPY/templates/crds"
cp -R "$OUT/$CHART/templates/crds" "$CHART_COPY/templates/crds"
"$HELM" template "$RELEASE" "$CHART_COPY" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" \
  --set crds.install=false --output-dir "$TMP/rendered" >/dev/null
rendered="$TMP/rendered/$(basename "$CHART")/templates"

# Every top-level YAML file in deploy/ is generated; remove the old ones so a template that
# no longer renders leaves nothing behind.
mkdir -p "$OUT/deploy"
rm -f "$OUT"/deploy/*.yaml

cat >"$OUT/deploy/namespace.yaml" <<YAML
# Generated by hack/generate.sh. Do not edit.
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
  labels:
    app.kubernetes.io/name: opensearch-package-operator
    app.kubernetes.io/part-of: opensearch-package-operator
    # The operator pod meets the restricted Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/audit: restricted
    pod-security.kubernetes.io/warn: restricted
YAML

resources=(namespace.yaml)
for name in "${CRD_NAMES[@]}"; do
  resources+=("crds/$name.ospkg.dev.yaml")
done
for file in $(cd "$rendered" && LC_ALL=C ls -- *.yaml); do
  {
    echo "# Generated by hack/generate.sh from $CHART/templates/$file. Do not edit."
    # helm starts each file with a document separator; one document per file needs none.
    sed '1{/^---$/d}' "$rendered/$file"
  } >"$OUT/deploy/$file"
  resources+=("$file")
done

{
  echo "# Generated by hack/generate.sh from $CHART (default values). Do not edit."
  echo "# Install: kubectl apply --server-side -f crds/ && kubectl apply -k deploy/"
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources:"
  for resource in "${resources[@]}"; do
    echo "  - $resource"
  done
} >"$OUT/deploy/kustomization.yaml"

# --- alerts and dashboard for users without the chart ---------------------------------------
# The rules' one source is the chart's PrometheusRule template; its spec (the last key, after
# `spec:`, indented by two) is a Prometheus rules file.
rm -rf "$OUT/deploy/prometheus" "$OUT/deploy/grafana"
mkdir -p "$OUT/deploy/prometheus" "$OUT/deploy/grafana"
"$HELM" template "$RELEASE" "$ROOT/$CHART" --namespace "$NAMESPACE" --kube-version "$KUBE_VERSION" \
  --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml >"$TMP/prometheusrule.yaml"
{
  echo "# Generated by hack/generate.sh from $CHART/templates/prometheusrule.yaml. Do not edit."
  echo "# A Prometheus rules file (rule_files:) for the operator installed in namespace $NAMESPACE."
  sed -n '/^spec:$/,$p' "$TMP/prometheusrule.yaml" | sed -e '1d' -e 's/^  //'
} >"$OUT/deploy/prometheus/alerts.yaml"
grep -q '^groups:$' "$OUT/deploy/prometheus/alerts.yaml" || {
  log "the PrometheusRule template rendered no spec.groups"
  exit 1
}
cp "$ROOT/$CHART/files/grafana/opensearch-package-operator.json" "$OUT/deploy/grafana/"

# --- Argo CD health test data --------------------------------------------------------------
rm -rf "$OUT/deploy/argocd/testdata"
mkdir -p "$OUT/deploy/argocd/testdata"
cp "$ROOT"/tests/fixtures/delivery/*.yaml "$OUT/deploy/argocd/testdata/"

mkdir -p "$OUT/examples/argocd"
{
  echo "# Generated by hack/generate.sh from deploy/argocd/health.lua and deploy/argocd/actions/. Do not edit."
  echo "# Merge into Argo CD's argocd-cm ConfigMap (or the Helm chart's configs.cm values)."
  echo "apiVersion: v1"
  echo "kind: ConfigMap"
  echo "metadata:"
  echo "  name: argocd-cm"
  echo "  namespace: argocd"
  echo "  labels:"
  echo "    app.kubernetes.io/name: argocd-cm"
  echo "    app.kubernetes.io/part-of: argocd"
  echo "data:"
  echo "  resource.customizations.health.ospkg.dev_OpenSearchPackage: |"
  sed -e 's/^\(.\)/    \1/' "$ROOT/deploy/argocd/health.lua"
  echo "  resource.customizations.actions.ospkg.dev_OpenSearchPackage: |"
  echo "    discovery.lua: |"
  sed -e 's/^\(.\)/      \1/' "$ROOT/deploy/argocd/actions/discovery.lua"
  echo "    definitions:"
  for action in reconcile suspend resume; do
    echo "      - name: $action"
    echo "        action.lua: |"
    sed -e 's/^\(.\)/          \1/' "$ROOT/deploy/argocd/actions/$action/action.lua"
  done
} >"$OUT/examples/argocd/argocd-cm.yaml"

# --- chart README from values.yaml ---------------------------------------------------------
HELM_DOCS="$(find_tool OSPKG_HELM_DOCS helm-docs)"
# helm-docs writes README.md into the chart it reads: let it read the copy. A value without a
# `# --` description in values.yaml gets a row with an empty description, which
# tests/cluster/chart/docs.rs rejects.
rm -f "$CHART_COPY/README.md"
(cd "$TMP/chart" && "$HELM_DOCS" --chart-search-root . --template-files README.md.gotmpl \
  --sort-values-order file --log-level warning)
# helm-docs skips a chart it cannot parse and still exits 0.
[[ -f "$CHART_COPY/README.md" ]] || {
  log "helm-docs wrote no README.md for $CHART"
  exit 1
}
cp "$CHART_COPY/README.md" "$OUT/$CHART/README.md"

if [[ "$OUT" == "$ROOT" ]]; then
  log "regenerated crds/, $CHART/templates/crds/, $CHART/README.md, deploy/ (prometheus/, grafana/ too) and examples/argocd/argocd-cm.yaml"
fi
