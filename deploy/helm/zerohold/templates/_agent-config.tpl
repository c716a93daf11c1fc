{{/*
The agent's agent.yaml: what the mode needs and what the DaemonSet's
mounts expect, with .Values.config merged over it. The socket paths lie in
the DaemonSet's hostPath mounts of /var/run/cilium and /run/zerohold.
*/}}
{{- define "zerohold.agentConfig" -}}
{{- include "zerohold.checkValues" . -}}
{{- $config := deepCopy .Values.config -}}

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
{{- $tls := dict "ca" (printf "%s/ca.crt" $dir) "cert" (printf "%s/tls.crt" $dir) "key" (printf "%s/tls.key" $dir) -}}
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

{{/*
Fails the install on values that the agent would reject at start on every
node, or that would break the DaemonSet, with the value and the fix.
*/}}
{{- define "zerohold.checkValues" -}}
{{- $config := .Values.config -}}
{{- range $field := list "mode" "interfaces" -}}
{{- if hasKey $config $field -}}
{{- fail (printf "config.%s is set from the chart's value %s: set %s instead of config.%s" $field $field $field $field) -}}
{{- end -}}
{{- end -}}
{{- if hasKey ($config.metrics | default dict) "port" -}}
{{- fail "config.metrics.port is set from the chart's value metrics.port, which the DaemonSet's port and probes use too: set metrics.port instead" -}}
{{- end -}}
{{- if hasKey ($config.kubernetes | default dict) "namespace" -}}
{{- fail (printf "config.kubernetes.namespace is the release's namespace (%s), where the chart grants access to Leases: install the release into the namespace you want instead" .Release.Namespace) -}}
{{- end -}}
{{- if hasKey ($config.hubble | default dict) "relay" -}}
{{- fail "config.hubble.relay is set from the chart's value hubbleRelay: set hubbleRelay.address and hubbleRelay.tls instead" -}}
{{- end -}}

{{- if and (eq .Values.mode "standalone") (empty .Values.interfaces) -}}
{{- fail "mode standalone needs the value interfaces, the node interfaces to attach to, for example --set interfaces[0].name=eth0; docs/deploy.md, \"Standalone mode\", lists the entries for common CNI plugins" -}}
{{- end -}}
{{- if and (ne .Values.mode "standalone") (not (empty .Values.interfaces)) -}}
{{- fail (printf "interfaces is for mode standalone only, and mode is %s: remove interfaces, or set mode=standalone" .Values.mode) -}}
{{- end -}}

{{- $tls := .Values.hubbleRelay.tls -}}
{{- if and (or $tls.secretName $tls.serverName) (not .Values.hubbleRelay.address) -}}
{{- fail "hubbleRelay.tls is set but hubbleRelay.address is empty: set the address of Hubble Relay, for example hubble-relay.kube-system.svc:443" -}}
{{- end -}}
{{- if and $tls.serverName (not $tls.secretName) -}}
{{- fail "hubbleRelay.tls.serverName needs hubbleRelay.tls.secretName, the Secret with Relay's CA certificate" -}}
{{- end -}}
{{- end }}
