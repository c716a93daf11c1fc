{{/*
Fails the install on values that the agent would reject at start on every
node, or that would break the DaemonSet, with the value and the fix. The
agent's own validation (docs/configuration.md) still checks the rest of
config at start.
*/}}
{{- define "zerohold.checkValues" -}}
{{- include "zerohold.checkConfigFields" . -}}
{{- include "zerohold.checkMode" . -}}
{{- include "zerohold.checkRelay" . -}}
{{- include "zerohold.checkPodMetadata" . -}}
{{- end }}

{{/*
config: sections that must stay mappings, and fields that come from other
values or the release.
*/}}
{{- define "zerohold.checkConfigFields" -}}
{{- $config := .Values.config | default dict -}}
{{- /* A null or a scalar here would replace the chart's whole section. */ -}}
{{- range $field := list "kubernetes" "api" "metrics" "hubble" "chained" "cilium" "release" "shutdown" -}}
{{- if and (hasKey $config $field) (not (kindIs "map" (get $config $field))) -}}
{{- fail (printf "config.%s must be a mapping of agent.yaml fields, got %v: remove config.%s to keep the chart's settings" $field (get $config $field) $field) -}}
{{- end -}}
{{- end -}}

{{- if hasKey $config "nodeName" -}}
{{- fail "config.nodeName would give the agent of every node the same name: remove it, because the DaemonSet sets NODE_NAME from each pod's node" -}}
{{- end -}}
{{- if hasKey $config "netns" -}}
{{- fail "config.netns is for tests and the demo, and entering a namespace needs CAP_SYS_ADMIN, which the DaemonSet does not grant: remove it, because the pod runs in the host's network namespace" -}}
{{- end -}}
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
{{- end }}

{{/*
Values that only one mode takes.
*/}}
{{- define "zerohold.checkMode" -}}
{{- $config := .Values.config | default dict -}}
{{- $mode := .Values.mode -}}
{{- if and (eq $mode "standalone") (empty .Values.interfaces) -}}
{{- fail "mode standalone needs the value interfaces, the node interfaces to attach to, for example --set interfaces[0].name=eth0; docs/deploy.md, \"Standalone mode\", lists the entries for common CNI plugins" -}}
{{- end -}}
{{- if and (ne $mode "standalone") (not (empty .Values.interfaces)) -}}
{{- fail (printf "interfaces is for mode standalone only, and mode is %s: remove interfaces, or set mode=standalone" $mode) -}}
{{- end -}}

{{- $names := list -}}
{{- range .Values.interfaces -}}
{{- if has .name $names -}}
{{- fail (printf "interfaces lists %s twice: keep one entry" .name) -}}
{{- end -}}
{{- $names = append $names .name -}}
{{- end -}}

{{- $kubeProxy := ($config.release | default dict).kubeProxy | default "" | toString -}}
{{- if and (ne $mode "standalone") (has $kubeProxy (list "nftables" "iptables")) -}}
{{- fail (printf "config.release.kubeProxy %s is for mode standalone only, and mode is %s: remove it, or set it to auto or none" $kubeProxy $mode) -}}
{{- end -}}

{{- /* A Go duration whose every number is zero, such as 0s or 0ms. */ -}}
{{- $handover := ($config.shutdown | default dict).handover | default "0s" | toString -}}
{{- if and (eq $mode "signal") (not (regexMatch "^(0+(\\.0+)?(ns|us|µs|ms|s|m|h)?)+$" $handover)) -}}
{{- fail (printf "config.shutdown.handover %s is not used in mode signal, which attaches no programs: remove it" $handover) -}}
{{- end -}}
{{- end }}

{{/*
hubbleRelay: TLS needs an address, and a server name needs the CA.
Standalone mode reads Hubble only with config.hubble.activity.
*/}}
{{- define "zerohold.checkRelay" -}}
{{- $config := .Values.config | default dict -}}
{{- $relay := .Values.hubbleRelay -}}
{{- if and (or $relay.tls.secretName $relay.tls.serverName $relay.tls.clientCertificate) (not $relay.address) -}}
{{- fail "hubbleRelay.tls is set but hubbleRelay.address is empty: set the address of Hubble Relay, for example hubble-relay.kube-system.svc:443" -}}
{{- end -}}
{{- if and (or $relay.tls.serverName $relay.tls.clientCertificate) (not $relay.tls.secretName) -}}
{{- fail "hubbleRelay.tls.serverName and hubbleRelay.tls.clientCertificate need hubbleRelay.tls.secretName, the Secret with Relay's CA certificate" -}}
{{- end -}}
{{- if and (eq .Values.mode "standalone") $relay.address (not ($config.hubble | default dict).activity) -}}
{{- fail "hubbleRelay.address is read in mode standalone only with config.hubble.activity: true: set that, or remove hubbleRelay.address" -}}
{{- end -}}
{{- end }}

{{/*
podLabels and podAnnotations must not repeat the chart's own keys: a
second key would render invalid YAML, and a changed selector label would
leave the DaemonSet without pods.
*/}}
{{- define "zerohold.checkPodMetadata" -}}
{{- $chartLabels := include "zerohold.labels" . | fromYaml -}}
{{- range $key, $_ := .Values.podLabels -}}
{{- if hasKey $chartLabels $key -}}
{{- fail (printf "podLabels.%s is a label that the chart sets: remove it from podLabels" $key) -}}
{{- end -}}
{{- end -}}
{{- if hasKey .Values.podAnnotations "checksum/config" -}}
{{- fail "podAnnotations.checksum/config is the chart's own annotation, which rolls the pods when agent.yaml changes: remove it from podAnnotations" -}}
{{- end -}}
{{- end }}
