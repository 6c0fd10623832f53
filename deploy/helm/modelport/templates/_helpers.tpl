{{/* Names, labels and the few values the templates derive. */}}

{{- define "modelport.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name alone when it already contains the chart name (release "modelport" -> "modelport"). */}}
{{- define "modelport.fullname" -}}
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

{{- define "modelport.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelport.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelport.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelport.labels" -}}
helm.sh/chart: {{ include "modelport.chart" . }}
{{ include "modelport.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: inference-server
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "modelport.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelport.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image:tag, with the GPU suffix when gpu.enabled. */}}
{{- define "modelport.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.gpu.enabled }}
{{- $tag = printf "%s%s" $tag .Values.gpu.imageTagSuffix }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* Longer than the preStop pause plus the server's drain time, so a rollout never kills in-flight requests. */}}
{{- define "modelport.terminationGracePeriodSeconds" -}}
{{- $drain := add (int .Values.preStopSleepSeconds) (int (ceil .Values.server.exitTimeoutSecs)) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $drain 15 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + server.exitTimeoutSecs (%v)" .Values.terminationGracePeriodSeconds $drain) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* The resources block, with the GPU limit added when gpu.enabled. */}}
{{- define "modelport.resources" -}}
{{- $resources := deepCopy (default dict .Values.resources) }}
{{- if .Values.gpu.enabled }}
{{- $limits := default dict (get $resources "limits") }}
{{- $_ := set $limits .Values.gpu.resourceName (int .Values.gpu.count) }}
{{- $_ = set $resources "limits" $limits }}
{{- end }}
{{- toYaml $resources }}
{{- end }}

{{/* The Secret holding the restricted APIs' key: the one given, or the chart's own. */}}
{{- define "modelport.apiKeySecret" -}}
{{- default (printf "%s-api-key" (include "modelport.fullname" .)) .Values.restrictedApis.existingSecret }}
{{- end }}
