#!/usr/bin/env bash
# Runs the built test suite again on other Node.js releases: 22, and 24,
# which the agent image runs. The addon uses N-API, so the build made with
# this machine's Node.js loads in each of them unchanged. The releases come
# from the npm registry's node-linux-<arch> packages, installed under
# .cache/node/. ZH_NODE_VERSIONS overrides the list; empty skips the runs.
set -euo pipefail
cd "$(dirname "$0")/.."

versions=${ZH_NODE_VERSIONS-22.23.5 24.22.3}
arch=$(node -p process.arch)
mapfile -t tests < <(find dist/test -name '*.test.js' | sort)

for version in $versions; do
	prefix=.cache/node/$version
	bin=$prefix/node_modules/node-linux-$arch/bin/node
	if [ ! -x "$bin" ]; then
		npm install --no-save --no-package-lock --no-audit --no-fund --prefix "$prefix" "node-linux-$arch@$version" >/dev/null
	fi

	echo "== the test suite on Node.js $("$bin" --version)"
	"$bin" --test --test-reporter=tap "${tests[@]}"
done
