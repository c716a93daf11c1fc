{{/*
Labels of every object. The DaemonSet's selector uses only
zerohold.selectorLabels, because a selector cannot change after the first
install.
*/}}
{{- define "zerohold.labels" -}}
{{ include "zerohold.selectorLabels" . }}
app.kubernetes.io/part-of: zerohold
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "zerohold.selectorLabels" -}}
app.kubernetes.io/name: zerohold-agent
{{- end }}

{{- define "zerohold.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The directory where the Secret of hubbleRelay.tls.secretName is mounted.
*/}}
{{- define "zerohold.relayTLSDir" -}}
/etc/zerohold-relay-tls
{{- end }}
