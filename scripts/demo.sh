#!/usr/bin/env bash
# Runs the demo: a simulated cluster on this machine, built from network
# namespaces, where real clients wake real servers scaled to zero. Run
# from a checkout on Debian 12 with Node.js 20 or later, as root. It
# installs what it needs, builds, runs, and removes everything it created.
#
# The setup steps print one line each and write their output to a log,
# whose tail is printed when a step fails. Ctrl-C during the setup stops
# the script.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp -t zerohold-demo-setup.XXXXXX.log)
# Process id of the setup step that runs now, empty between steps.
step_pid=

# Ends the progress line of a failed step, prints the end of the log and
# exits with the step's status.
fail_step() {
	local status=$1
	printf 'failed (exit %s)\n' "$status"
	echo "The last lines of $log:" >&2
	tail -n 40 "$log" >&2
	exit "$status"
}

# Runs one setup step with its output in the log. Bash runs a trap only
# after the foreground command has ended, but the wait builtin returns at
# once on a trapped signal. So the step runs in the background, and setsid
# makes it the leader of its own process group, which on_signal ends as a
# whole: npm and the compilers it started.
run_step() {
	local title=$1 started=$SECONDS status=0
	shift
	printf '==> %s ... ' "$title"
	echo "==> $title: $*" >>"$log"
	setsid "$@" >>"$log" 2>&1 &
	step_pid=$!
	wait "$step_pid" || status=$?
	step_pid=
	if [ "$status" -ne 0 ]; then
		fail_step "$status"
	fi
	printf 'done (%d s)\n' $((SECONDS - started))
}

# Ends the running step and exits with status $1 (128 + the signal).
on_signal() {
	echo
	if [ -n "$step_pid" ]; then
		echo 'interrupted: stopping the current step ...'
		kill -TERM -- "-$step_pid" 2>/dev/null || kill -TERM "$step_pid" 2>/dev/null || true
		wait "$step_pid" 2>/dev/null || true
	fi
	echo "interrupted: the setup stopped. Its output is in $log" >&2
	exit "$1"
}
# NOTE: a script that a non-interactive shell starts in the background
# (`bash scripts/demo.sh &`) starts with SIGINT ignored, and bash cannot
# trap an ignored signal. Stop it with SIGTERM there.
trap 'on_signal 129' HUP
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# In the foreground, unlike the other steps: a signal sent to this script
# alone takes effect once apt-get has finished, so the script never stops
# dpkg halfway through an installation.
printf '==> installing Debian packages (scripts/install-deps.sh) ... '
started=$SECONDS
status=0
bash scripts/install-deps.sh >>"$log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
	fail_step "$status"
fi
printf 'done (%d s)\n' $((SECONDS - started))

# Build the addon against the installed Node.js headers where the
# distribution ships them, instead of downloading them.
if [ -f /usr/include/node/node.h ]; then
	export npm_config_nodedir=/usr
fi

# Pinned maps live in bpffs, which minimal machines may not mount.
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
	mount -t bpf bpf /sys/fs/bpf
fi

run_step 'installing npm packages (npm ci)' npm ci --no-audit --no-fund
run_step 'building the BPF programs, the addon and the TypeScript (npm run build)' npm run build
rm -f "$log"

# exec resets the traps: from here on the demo handles SIGINT and SIGTERM
# itself.
exec node dist/demo/main.js "$@"
