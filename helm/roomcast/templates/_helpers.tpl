{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "roomcast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. A release whose name already contains the chart name keeps it, so
`helm install roomcast` gives objects (and the Service) named plain "roomcast".
*/}}
{{- define "roomcast.fullname" -}}
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

{{- define "roomcast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object the chart renders. */}}
{{- define "roomcast.labels" -}}
helm.sh/chart: {{ include "roomcast.chart" . }}
app.kubernetes.io/name: {{ include "roomcast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: roomcast
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The RoomcastCluster's name; the operator names its Deployment and Service after it. */}}
{{- define "roomcast.clusterName" -}}
{{- default (include "roomcast.fullname" .) .Values.cluster.name | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
Selector of the server pods. These labels are set by the operator (render.selector_labels),
not by the chart, so they must stay in step with it.
*/}}
{{- define "roomcast.serverSelectorLabels" -}}
app.kubernetes.io/name: roomcast
app.kubernetes.io/instance: {{ include "roomcast.clusterName" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "roomcast.operator.fullname" -}}
{{- printf "%s-operator" (include "roomcast.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "roomcast.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "roomcast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "roomcast.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "roomcast.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "roomcast.redis.fullname" -}}
{{- printf "%s-redis" (include "roomcast.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "roomcast.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "roomcast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/* Image reference: repository:tag, tag defaulting to the chart's appVersion. */}}
{{- define "roomcast.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "roomcast.operator.image" -}}
{{- $img := .Values.operator.image }}
{{- $repo := default .Values.image.repository $img.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) $img.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/* The Secret holding the HMAC secret and API key: the user's, or the one the chart makes. */}}
{{- define "roomcast.authSecretName" -}}
{{- default (printf "%s-auth" (include "roomcast.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* True when more than one server pod can run, which needs a Redis backplane. */}}
{{- define "roomcast.multiPod" -}}
{{- if or (gt (int .Values.cluster.minReplicas) 1) (gt (int .Values.cluster.maxReplicas) 1) (ne .Values.autoscaling.metricSource "none") }}true{{ end }}
{{- end }}

{{- define "roomcast.redisConfigured" -}}
{{- $r := .Values.redis }}
{{- if or $r.dev.enabled $r.urls $r.urlsSecret.name $r.sentinel.addresses }}true{{ end }}
{{- end }}

{{/* The restricted Pod Security Standard, container level. */}}
{{- define "roomcast.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}
