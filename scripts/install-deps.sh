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
)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

# Prometheus and promtool for the monitoring tests, unpacked from Debian's
# package into .cache/prometheus. Installed, the package would also start a
# Prometheus service that listens on port 9090 of every interface.
prometheus_dir="$(cd "$(dirname "$0")/.." && pwd)/.cache/prometheus"
if [ ! -x "$prometheus_dir/usr/bin/promtool" ]; then
	download=$(mktemp -d)
	# apt warns that it downloads as root, because _apt cannot write there.
	(cd "$download" && apt-get download -qq prometheus)
	mkdir -p "$prometheus_dir"
	dpkg-deb -x "$download"/prometheus_*.deb "$prometheus_dir"
	rm -rf "$download"
fi
