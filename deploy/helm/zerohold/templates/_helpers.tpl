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

{{/*
The image. A numeric tag from a values file arrives as a float64, which
would print in exponent form.
*/}}
{{- define "zerohold.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if kindIs "float64" $tag -}}
{{- $tag = int64 $tag -}}
{{- end -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end }}

{{/*
Capabilities added to the agent's container, after dropping all of them.
NET_RAW serves only release.kubeProxy in standalone mode, which reads
iptables' legacy backend through a raw socket. Signal mode loads no
programs, but at start it detaches those that an earlier standalone
agent left, which needs BPF and NET_ADMIN.
*/}}
{{- define "zerohold.capabilities" -}}
{{- if eq .Values.mode "standalone" -}}
["BPF", "NET_ADMIN", "PERFMON", "NET_RAW"]
{{- else -}}
["BPF", "NET_ADMIN", "PERFMON"]
{{- end -}}
{{- end }}

{{/*
The directory where the Secret of hubbleRelay.tls.secretName is mounted.
*/}}
{{- define "zerohold.relayTLSDir" -}}
/etc/zerohold-relay-tls
{{- end }}
