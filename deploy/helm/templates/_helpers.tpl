{{/*
The image tag, which is also the revision migrun reports (MIGRUN_REVISION)
and the app.kubernetes.io/version label: one value, so they cannot disagree.
*/}}
{{- define "rails-app-migrate.revision" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{/* The ServiceAccount the Job runs as; empty for the namespace's default. */}}
{{- define "rails-app-migrate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (printf "%s-db-migrate" .Release.Name) -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rails-app-migrate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "rails-app-migrate.revision" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* Helm's pre-install/pre-upgrade hook annotations with a weight. */}}
{{- define "rails-app-migrate.hook" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ . | quote }}
helm.sh/hook-delete-policy: before-hook-creation
{{- end -}}
