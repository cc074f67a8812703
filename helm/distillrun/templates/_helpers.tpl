{{/*
Every object name and label set of the chart. Namespaced objects are named after the release;
cluster-scoped ones (ClusterRoles, their bindings) also carry the release namespace, so two teams'
releases of the same name never collide.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "distillrun.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Base of every namespaced object's name: fullnameOverride, or <release>[-<chart>]. */}}
{{- define "distillrun.fullname" -}}
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

{{/* Base of every cluster-scoped object's name: <namespace>-<fullname>. */}}
{{- define "distillrun.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "distillrun.fullname" .) }}
{{- end }}

{{- define "distillrun.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "distillrun.selectorLabels" -}}
app.kubernetes.io/name: {{ include "distillrun.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "distillrun.labels" -}}
helm.sh/chart: {{ include "distillrun.chart" . }}
{{ include "distillrun.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "distillrun.deploymentName" -}}
{{- include "distillrun.fullname" . }}
{{- end }}

{{- define "distillrun.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "distillrun.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the existing ServiceAccount to use when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's Role/RoleBinding (namespace scope) or ClusterRole/ClusterRoleBinding. */}}
{{- define "distillrun.operatorRoleName" -}}
{{- if eq .Values.watch.scope "cluster" }}
{{- include "distillrun.clusterName" . }}
{{- else }}
{{- include "distillrun.fullname" . }}
{{- end }}
{{- end }}

{{- define "distillrun.editorRoleName" -}}
{{- printf "%s-editor" (include "distillrun.clusterName" .) }}
{{- end }}

{{- define "distillrun.viewerRoleName" -}}
{{- printf "%s-viewer" (include "distillrun.clusterName" .) }}
{{- end }}

{{- define "distillrun.metricsServiceName" -}}
{{- printf "%s-metrics" (include "distillrun.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "distillrun.serviceMonitorName" -}}
{{- include "distillrun.fullname" . }}
{{- end }}

{{/*
The team's hardware profile and DeepSpeed config files (hardwareProfileFiles,
deepSpeedConfigFiles): a ConfigMap the operator mounts at profilesDir, its DISTILLRUN_PROFILES_DIR.
A ConfigMap key cannot hold '/', so a DeepSpeed config is the key `deepspeed.<name>`, mounted at
`deepspeed/<name>`; profileFileItems maps every key to its path.
*/}}
{{- define "distillrun.profilesConfigMapName" -}}
{{- printf "%s-profiles" (include "distillrun.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "distillrun.profilesDir" -}}
/etc/distillrun/profiles
{{- end }}

{{- define "distillrun.hasProfileFiles" -}}
{{- if or .Values.hardwareProfileFiles .Values.deepSpeedConfigFiles }}true{{ end }}
{{- end }}

{{/* The ConfigMap's data: file text by key. */}}
{{- define "distillrun.profileFileData" -}}
{{- $data := dict }}
{{- range $name, $text := .Values.hardwareProfileFiles }}
{{- $_ := set $data $name $text }}
{{- end }}
{{- range $name, $text := .Values.deepSpeedConfigFiles }}
{{- $_ := set $data (printf "deepspeed.%s" $name) $text }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/* The volume's items: each key at its path in the profiles directory. */}}
{{- define "distillrun.profileFileItems" -}}
{{- range $name, $_ := .Values.hardwareProfileFiles }}
- key: {{ $name | quote }}
  path: {{ $name | quote }}
{{- end }}
{{- range $name, $_ := .Values.deepSpeedConfigFiles }}
- key: {{ printf "deepspeed.%s" $name | quote }}
  path: {{ printf "deepspeed/%s" $name | quote }}
{{- end }}
{{- end }}

{{- define "distillrun.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the operator does, and nothing more (distillrun/operator/controller.py, handlers.py and
kopf): it watches and patches DistillRuns (kopf's finalizer and progress annotations) and
patches their status; creates, watches and deletes the RayJobs and ConfigMaps of stages; reads
the Secrets and ConfigMaps a run references (pre-flight: any name a run gives, so no
resourceNames; the default teacher Secret, teacher.secretName, is read the same way); creates
and deletes each postgres or mysql run's sandbox server (Deployment, Service, NetworkPolicy,
Secret, ConfigMap, found by label when a run is deleted, hence `list`); and posts Events.
*/}}
{{- define "distillrun.operatorRules" -}}
- apiGroups: ["distillrun.dev"]
  resources: ["distillruns"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["distillrun.dev"]
  resources: ["distillruns/status"]
  verbs: ["patch"]
- apiGroups: ["ray.io"]
  resources: ["rayjobs"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "secrets"]
  verbs: ["get", "list", "create", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["list", "create", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "create", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["list", "create", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
