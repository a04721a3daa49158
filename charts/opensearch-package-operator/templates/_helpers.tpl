{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "ospkg.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources.
*/}}
{{- define "ospkg.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ospkg.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the operator pod; never change them after a release exists (the
Deployment's selector is immutable).
*/}}
{{- define "ospkg.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ospkg.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object: the chart's own, then commonLabels (which cannot replace them: the
pod must keep matching the Deployment's selector).
*/}}
{{- define "ospkg.labels" -}}
{{- $own := dict
  "helm.sh/chart" (include "ospkg.chart" .)
  "app.kubernetes.io/version" .Chart.AppVersion
  "app.kubernetes.io/component" "controller"
  "app.kubernetes.io/part-of" "opensearch-package-operator"
  "app.kubernetes.io/managed-by" .Release.Service }}
{{- $own = merge $own (include "ospkg.selectorLabels" . | fromYaml) }}
{{- toYaml (merge $own (deepCopy (default (dict) .Values.commonLabels))) }}
{{- end }}

{{/*
The labels above plus extra ones ($.extra, e.g. podLabels), which cannot replace them either.
Call with (dict "context" $ "extra" $map).
*/}}
{{- define "ospkg.labelsWith" -}}
{{- $labels := include "ospkg.labels" .context | fromYaml }}
{{- toYaml (merge $labels (deepCopy (default (dict) .extra))) }}
{{- end }}

{{- define "ospkg.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ospkg.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: by digest when one is given, else by tag (default: appVersion).
*/}}
{{- define "ospkg.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The endpoint settings a ServiceMonitor and a PodMonitor share; the argument is the monitor's
values.
*/}}
{{- define "ospkg.monitorEndpoint" -}}
path: /metrics
{{- /* Per-object series carry the object's own `namespace`: keep it rather than have
Prometheus rename it to exported_namespace (alerts and the dashboard filter on it). */}}
honorLabels: true
interval: {{ .interval }}
{{- with .scrapeTimeout }}
scrapeTimeout: {{ . }}
{{- end }}
{{- with .relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The operator's least-privilege rules, shared by the ClusterRole and the per-namespace Roles.
*/}}
{{- define "ospkg.rbacRules" -}}
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackages"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackages/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackages/finalizers"]
  verbs: ["update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- /* spec.export: read, write and remove the ConfigMaps objects publish; never list or watch. */}}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "update", "delete"]
{{- end }}

{{/*
The operator's cluster-wide read rights for tenancy, in both modes (also with
watchNamespaces): it reads every OpenSearchPackageRole (cluster-scoped) and the namespaces'
labels their selectors match, and writes the roles' status. Namespaces are read as metadata
only; nothing here creates, changes or deletes a role or a namespace.
*/}}
{{- define "ospkg.tenancyRules" -}}
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackageroles"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["ospkg.dev"]
  resources: ["opensearchpackageroles/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}
