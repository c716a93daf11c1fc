{{/*
The agent's agent.yaml: what the mode needs and what the DaemonSet's
mounts expect, with .Values.config merged over it. The socket paths lie in
the DaemonSet's hostPath mounts of /var/run/cilium and /run/zerohold.
*/}}
{{- define "zerohold.agentConfig" -}}
{{- include "zerohold.checkValues" . -}}
{{- $config := deepCopy (.Values.config | default dict) -}}

{{- $base := dict "mode" .Values.mode -}}
{{- $_ := set $base "kubernetes" (dict "namespace" .Release.Namespace) -}}
{{- $_ := set $base "api" (dict "socket" "/run/zerohold/agent.sock") -}}
{{- /* All addresses, because the kubelet probes /metrics on the node's address. */ -}}
{{- $_ := set $base "metrics" (dict "host" "0.0.0.0" "port" (int .Values.metrics.port)) -}}

{{- $hubble := dict -}}
{{- if ne .Values.mode "standalone" -}}
{{- $_ := set $hubble "socket" "/var/run/cilium/hubble.sock" -}}
{{- end -}}
{{- if ne .Values.mode "signal" -}}
{{- $_ := set $hubble "observerSocket" "/run/zerohold/hubble.sock" -}}
{{- end -}}
{{- with .Values.hubbleRelay.address -}}
{{- $relay := dict "address" . -}}
{{- with $.Values.hubbleRelay.tls.secretName -}}
{{- $dir := include "zerohold.relayTLSDir" $ -}}
{{- $tls := dict "ca" (printf "%s/ca.crt" $dir) -}}
{{- if $.Values.hubbleRelay.tls.clientCertificate -}}
{{- $_ := set $tls "cert" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $tls "key" (printf "%s/tls.key" $dir) -}}
{{- end -}}
{{- with $.Values.hubbleRelay.tls.serverName -}}
{{- $_ := set $tls "serverName" . -}}
{{- end -}}
{{- $_ := set $relay "tls" $tls -}}
{{- end -}}
{{- $_ := set $hubble "relay" $relay -}}
{{- end -}}
{{- $_ := set $base "hubble" $hubble -}}

{{- if eq .Values.mode "chained" -}}
{{- /* Where Cilium pins zh_chain_xdp, zh_chain_tc, zh_chain_meta and zh_chain_svcs, and its service maps. */ -}}
{{- $_ := set $base "chained" (dict "hostPinDir" "/sys/fs/bpf/tc/globals") -}}
{{- $_ := set $base "cilium" (dict "bpfPinDir" "/sys/fs/bpf/tc/globals" "apiSocket" "/var/run/cilium/cilium.sock") -}}
{{- else if eq .Values.mode "standalone" -}}
{{- $_ := set $base "interfaces" .Values.interfaces -}}
{{- end -}}

{{- toYaml (mustMergeOverwrite $base $config) -}}
{{- end }}
