{{/*
Helpers of PureLB's chart. Object names are fixed (they are those of deploy/*.yaml: the agent finds its
DaemonSet by name, RBAC names it), so one release per cluster.
*/}}

{{/* Helm's standard labels, on every object the chart makes (the drift test strips exactly these). */}}
{{- define "purelb.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The labels of one component's objects: (dict "root" $ "name" "purelb-allocator"). */}}
{{- define "purelb.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: purelb
{{ include "purelb.helmLabels" .root }}
{{- end -}}

{{/* The image of a component: (dict "root" $ "image" .Values.allocator.image). */}}
{{- define "purelb.image" -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) .image.name $tag -}}
{{- end -}}
