#!/usr/bin/env bash
# The local demo: a real kube-apiserver + etcd, the OpenSearch package simulator, and the
# operator running with the RBAC the chart ships, converging the objects in examples/.
# Nothing but this machine is needed (no AWS account, no container engine, no cluster).
#
# Usage:
#   hack/demo.sh          build, start everything, apply examples/*.yaml, show them converge,
#                         then keep running until Ctrl-C (and tear everything down)
#   hack/demo.sh --once   the same, but exit (and tear down) as soon as every object is Ready
#
# Environment:
#   DEMO_TIMEOUT          seconds to wait for the examples to become Ready (default 240)
#   DEMO_DIR              where logs and kubeconfigs go (default: a new temp dir, removed at exit
#                         unless the demo failed)
#   CARGO_TARGET_DIR      as for cargo
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ONCE=false
for arg in "$@"; do
  case "$arg" in
    --once) ONCE=true ;;
    -h | --help)
      sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "usage: hack/demo.sh [--once]" >&2
      exit 2
      ;;
  esac
done

TIMEOUT="${DEMO_TIMEOUT:-240}"
KEEP_DIR=false
if [[ -n "${DEMO_DIR:-}" ]]; then
  WORK="$DEMO_DIR"
  mkdir -p "$WORK"
  KEEP_DIR=true
else
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/ospkg-demo.XXXXXX")"
fi
RELEASE=opensearch-package-operator
OPERATOR_NS=opensearch-package-operator
SIM_REGION=us-east-1

step() { printf '\n==> %s\n' "$*" >&2; }
die() {
  echo "demo: $*" >&2
  exit 1
}

PIDS=()
FAILED=true
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  step "stopping"
  # Newest first: the operator, then the simulator, then the cluster.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "$FAILED" == true && $status -ne 0 ]]; then
    echo "demo failed; logs kept in $WORK" >&2
    for log in operator sim cluster; do
      if [[ -s "$WORK/$log.log" ]]; then
        echo "--- last lines of $WORK/$log.log ---" >&2
        tail -n 25 "$WORK/$log.log" >&2
      fi
    done
  elif [[ "$KEEP_DIR" == false ]]; then
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build -----------------------------------------------------------------------------------
step "control-plane binaries (kube-apiserver, etcd, helm; minutes the first time)"
hack/build-control-plane.sh >/dev/null
# shellcheck disable=SC1091
source "${OSPKG_CACHE:-$HOME/.cache/ospkg}/bin/env"
KUBECTL="$OSPKG_KUBECTL"

step "cargo build --bins (operator, simulator, dev cluster)"
cargo build --workspace --bins
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
for bin in opensearch-package-operator ospkg-sim ospkg-dev-cluster; do
  [[ -x "$TARGET/$bin" ]] || die "$TARGET/$bin was not built"
done

# --- cluster ---------------------------------------------------------------------------------
step "starting kube-apiserver + etcd"
KUBECONFIG="$WORK/admin.kubeconfig"
"$TARGET/ospkg-dev-cluster" --kubeconfig "$KUBECONFIG" >"$WORK/cluster.out" 2>"$WORK/cluster.log" &
PIDS+=($!)
for _ in $(seq 1 300); do
  [[ -s "$KUBECONFIG" ]] && break
  kill -0 "${PIDS[0]}" 2>/dev/null || die "the dev cluster exited: $(tail -n 5 "$WORK/cluster.log")"
  sleep 0.5
done
[[ -s "$KUBECONFIG" ]] || die "the API server did not become ready in 150s"
export KUBECONFIG
k() { "$KUBECTL" "$@"; }
echo "API server $(k config view -o jsonpath='{.clusters[0].cluster.server}')" >&2

# --- simulator -------------------------------------------------------------------------------
step "starting the OpenSearch package simulator"
"$TARGET/ospkg-sim" \
  --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 --region "$SIM_REGION" \
  --domain catalog-prod:OpenSearch_2.19 --domain catalog-staging:OpenSearch_2.19 \
  --copying-ms 1500 --validating-ms 1000 --associating-ms 2000 --dissociating-ms 1000 \
  --deleting-ms 1000 >"$WORK/sim.out" 2>"$WORK/sim.log" &
PIDS+=($!)
SIM=""
for _ in $(seq 1 100); do
  SIM="$(sed -nE 's#^ospkg-sim listening on (http://[^ ]+) .*#\1#p' "$WORK/sim.out")"
  S3="$(sed -nE 's#^ospkg-sim listening on .*\(s3 (http://[^)]+)\)$#\1#p' "$WORK/sim.out")"
  [[ -n "$SIM" ]] && break
  kill -0 "${PIDS[1]}" 2>/dev/null || die "the simulator exited: $(tail -n 5 "$WORK/sim.log")"
  sleep 0.1
done
[[ -n "$SIM" ]] || die "the simulator did not start"
echo "simulator $SIM (admin API under $SIM/_sim/)" >&2

# The S3 objects examples/*.yaml read, uploaded through the simulator's admin API.
upload() { # bucket key file
  curl -fsS -X PUT --data-binary "@$3" "$SIM/_sim/objects/$1/$2" >/dev/null
  echo "uploaded s3://$1/$2" >&2
}
mkdir -p "$WORK/objects/plugin/config"
printf 'laptop, notebook\nphone, mobile, cellphone\ntv, television\n' >"$WORK/objects/synonyms.txt"
printf 'ACME analysis plugin licence\nlicensee: demo\n' >"$WORK/objects/acme.lic"
printf 'acme:\n  max_token_length: 512\n' >"$WORK/objects/acme.yml"
cat >"$WORK/objects/plugin/plugin-descriptor.properties" <<'EOF'
name=acme-analysis
description=ACME analysis plugin
version=1.4.0
classname=com.acme.opensearch.AnalysisPlugin
opensearch.version=2.19.0
java.version=21
EOF
cp "$WORK/objects/acme.lic" "$WORK/objects/plugin/config/license.lic"
(cd "$WORK/objects/plugin" && zip -qr ../acme-analysis.zip .)
upload acme-search-dicts synonyms/products.txt "$WORK/objects/synonyms.txt"
upload acme-search-plugins licenses/acme-analysis.lic "$WORK/objects/acme.lic"
upload acme-search-plugins config/acme-analysis.yml "$WORK/objects/acme.yml"
upload acme-search-plugins plugins/acme-analysis-1.4.0.zip "$WORK/objects/acme-analysis.zip"
printf 'a\nan\nthe\n' >"$WORK/objects/stopwords.txt"
upload acme-search-dicts stopwords/shared.txt "$WORK/objects/stopwords.txt"

# The package examples/observe-only.yaml observes, created by "another team" outside the
# cluster: a CreatePackage signed with another access key (the simulator reads the SigV4
# credential scope and does not verify signatures).
curl -fsS -X POST "$SIM/2021-01-01/packages" \
  -H 'Content-Type: application/json' \
  -H "X-Amz-Date: $(date -u +%Y%m%dT%H%M%SZ)" \
  -H "Authorization: AWS4-HMAC-SHA256 Credential=AKIDOTHERTEAM/$(date -u +%Y%m%d)/$SIM_REGION/es/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0" \
  -d '{"PackageName":"shared-stopwords","PackageType":"TXT-DICTIONARY","PackageSource":{"S3BucketName":"acme-search-dicts","S3Key":"stopwords/shared.txt"}}' >/dev/null
echo "created package shared-stopwords as another team" >&2

# The IAM roles examples/package-roles.yaml grants: the simulator's STS lets the operator
# assume them (a trust policy for the operator, in AWS terms).
for arn in $(sed -nE 's/^ *roleARN: *([^ ]+).*$/\1/p' examples/*.yaml | sort -u); do
  curl -fsS -X POST "$SIM/_sim/sts/roles" -H 'Content-Type: application/json' \
    -d "{\"roleArn\": \"$arn\"}" >/dev/null
  echo "trusted $arn" >&2
done

# --- CRD and the operator with the shipped RBAC ------------------------------------------------
step "installing the CRDs"
k apply --server-side -f crds/ >/dev/null
k wait --for=condition=Established --timeout=60s \
  crd/opensearchpackages.ospkg.dev crd/opensearchpackageroles.ospkg.dev >/dev/null

step "installing the operator's ServiceAccount and RBAC as the chart ships them"
k create namespace "$OPERATOR_NS" --dry-run=client -o yaml | k apply --server-side -f - >/dev/null
if [[ -f deploy/serviceaccount.yaml && -f deploy/clusterrole.yaml && -f deploy/leader-election-role.yaml ]]; then
  RBAC="$(cat deploy/serviceaccount.yaml; echo '---'; cat deploy/clusterrole.yaml; echo '---'; cat deploy/leader-election-role.yaml)"
else
  RBAC="$("$OSPKG_HELM" template "$RELEASE" charts/opensearch-package-operator \
    --namespace "$OPERATOR_NS" \
    --show-only templates/serviceaccount.yaml --show-only templates/clusterrole.yaml \
    --show-only templates/leader-election-role.yaml)"
fi
k apply --server-side -f - <<<"$RBAC" >/dev/null
SA="$(k apply --dry-run=client -f - -o name <<<"$RBAC" | sed -n 's#^serviceaccount/##p')"
[[ -n "$SA" ]] || die "no ServiceAccount in the shipped manifests"

# A kubeconfig that authenticates only as that ServiceAccount (never the admin token).
OPERATOR_KUBECONFIG="$WORK/operator.kubeconfig"
SERVER="$(k config view --raw -o jsonpath='{.clusters[0].cluster.server}')"
k config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$WORK/ca.crt"
TOKEN="$(k -n "$OPERATOR_NS" create token "$SA" --duration=24h)"
(
  export KUBECONFIG="$OPERATOR_KUBECONFIG"
  k config set-cluster demo --server="$SERVER" --certificate-authority="$WORK/ca.crt" --embed-certs=true
  k config set-credentials "$SA" --token="$TOKEN"
  k config set-context demo --cluster=demo --user="$SA" --namespace="$OPERATOR_NS"
  k config use-context demo
) >/dev/null

step "starting the operator as system:serviceaccount:$OPERATOR_NS:$SA"
METRICS_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 0)"
env KUBECONFIG="$OPERATOR_KUBECONFIG" \
  POD_NAMESPACE="$OPERATOR_NS" POD_NAME=opensearch-package-operator-demo \
  AWS_ENDPOINT_URL_OPENSEARCH="$SIM" AWS_ENDPOINT_URL_STS="$SIM" AWS_ENDPOINT_URL_S3="$S3" \
  AWS_ACCESS_KEY_ID=AKIDDEMO AWS_SECRET_ACCESS_KEY=demo \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
  "$TARGET/opensearch-package-operator" run \
  --region "$SIM_REGION" --metrics-addr "127.0.0.1:$METRICS_PORT" --resync-interval 30s \
  --source-check-interval 15s \
  >"$WORK/operator.log" 2>&1 &
PIDS+=($!)

# --- the examples ------------------------------------------------------------------------------
step "applying examples/*.yaml"
mapfile -t EXAMPLES < <(ls examples/*.yaml)
for ns in $(grep -h '^  namespace:' "${EXAMPLES[@]}" | awk '{print $2}' | sort -u); do
  k create namespace "$ns" --dry-run=client -o yaml | k apply --server-side -f - >/dev/null
done
for file in "${EXAMPLES[@]}"; do
  k apply --server-side -f "$file"
done
# Every OpenSearchPackage the examples declare (package-roles.yaml declares roles only).
WANT="$(cat "${EXAMPLES[@]}" | grep -c '^kind: OpenSearchPackage$')"

step "waiting until every OpenSearchPackage is Ready (timeout ${TIMEOUT}s)"
deadline=$((SECONDS + TIMEOUT))
previous=""
while true; do
  kill -0 "${PIDS[2]}" 2>/dev/null || die "the operator exited"
  table="$(k get ospkg -A 2>&1 || true)"
  if [[ "$table" != "$previous" ]]; then
    printf '\n[%3ds]\n%s\n' "$((SECONDS - deadline + TIMEOUT))" "$table"
    previous="$table"
  fi
  ready="$(k get ospkg -A -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)"
  if [[ "$ready" -ge "$WANT" ]]; then
    break
  fi
  if ((SECONDS > deadline)); then
    k get ospkg -A -o yaml >&2 || true
    die "only $ready of $WANT objects became Ready in ${TIMEOUT}s"
  fi
  sleep 2
done

step "all $WANT packages are Ready"
k get ospkg -A -o custom-columns='NAMESPACE:.metadata.namespace,NAME:.metadata.name,PACKAGE:.status.packageName,ACCOUNT:.status.accountID,REGION:.status.region,VERSION:.status.availablePackageVersion,DOMAINS:.status.domains[*].domainName'
echo >&2
k get opensearchpackageroles
echo >&2
k get events -n search --sort-by=.metadata.creationTimestamp \
  -o custom-columns='OBJECT:.involvedObject.name,TYPE:.type,REASON:.reason,MESSAGE:.message' | tail -n 20
FAILED=false

if [[ "$ONCE" == true ]]; then
  exit 0
fi

cat >&2 <<EOF

Everything keeps running until Ctrl-C. In another shell:
  export KUBECONFIG=$KUBECONFIG
  kubectl get ospkg -A -w
  kubectl -n search edit ospkg product-synonyms     # e.g. bump spec.source.revision
  printf 'tv, television, telly\n' | curl -s -X PUT --data-binary @- $S3/acme-search-dicts/synonyms/products.txt
                                                     # overwrite the file: product-synonyms
                                                     # (followContent) imports v2 within 15 s
  curl -s $SIM/_sim/calls                            # AWS calls the operator made
  curl -s 127.0.0.1:$METRICS_PORT/metrics            # the operator's metrics
Logs: $WORK/{operator,sim,cluster}.log
EOF
k get ospkg -A -w &
PIDS+=($!)
wait "${PIDS[2]}"
