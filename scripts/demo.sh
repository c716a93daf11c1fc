#!/usr/bin/env bash
# Runs the demo: a simulated cluster on this machine, built from network
# namespaces, where real clients wake real servers scaled to zero. Run
# from a checkout on Debian 12 with Node.js 20 or later, as root. It
# installs what it needs, builds, runs, and removes everything it created.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> installing Debian packages (scripts/install-deps.sh)"
bash scripts/install-deps.sh

if [ -f /usr/include/node/node.h ]; then
	export npm_config_nodedir=/usr
fi

# Pinned maps live in bpffs, which minimal machines may not mount.
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
	mount -t bpf bpf /sys/fs/bpf
fi

echo "==> installing npm packages and building"
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent

exec node dist/demo/main.js "$@"
