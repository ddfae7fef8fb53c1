{{- define "cs.labels" -}}
app.kubernetes.io/name: checkpoint-sidecar
app.kubernetes.io/part-of: checkpoint-sidecar
{{- end -}}
{{- define "cs.config" -}}
{{- if .Values.config }}{{ .Values.config }}{{ else }}{{ .Files.Get "files/config.yaml" }}{{ end -}}
{{- end -}}
