#!/usr/bin/env bash
# Installs what the tests need, builds everything and runs the test suite.
# Run from a checkout on Debian 12 with Node.js 20 or later, as root: the
# tests load BPF programs and create network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# Build the addon against the installed Node.js headers where the
# distribution ships them, instead of downloading them.
if [ -f /usr/include/node/node.h ]; then
	export npm_config_nodedir=/usr
fi

# Tests pin maps under /sys/fs/bpf. Containers and minimal VMs may boot
# without the BPF filesystem mounted there.
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
	mount -t bpf bpf /sys/fs/bpf
fi

npm ci
npm run build
npm test
bash scripts/test-node-versions.sh
