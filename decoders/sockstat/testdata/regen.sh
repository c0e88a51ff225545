#!/usr/bin/env bash
# Regenerates the real ss/netstat/nstat outputs in this directory: in a
# private network namespace, sockslab.py makes a CLOSE_WAIT pile-up, a
# zero-window flood, an overflowing accept queue, TIME_WAIT and IPv6
# sockets; then the tools are run as a watch loop would run them.
# Needs root, iproute2 (ss, nstat), net-tools (netstat) and python3.
# Usage: testdata/regen.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ns=wm-sockstat-lab-$$
lab=
cleanup() {
	if [ -n "$lab" ]; then kill "$lab" 2>/dev/null || true; fi
	ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
in_ns ip link set lo up

in_ns nstat -n # reset nstat's history so the first nstat -az starts clean
# Not through in_ns: $! must be python itself (ip netns exec execs it).
ip netns exec "$ns" python3 "$here/sockslab.py" &
lab=$!
sleep 2

# One file per tool, several snapshots each, separated by `date` lines in
# the forms people use.
{
	date
	in_ns ss -tanoi
	sleep 1
	date -Iseconds
	in_ns ss -tanoi
	sleep 1
	date +%s
	in_ns ss -tanoi
} > "$here/ss_tanoi_watch.txt"
# The namespace has no cgroup2 mount, which ss -e reports on stderr.
in_ns ss -tanoiepm > "$here/ss_tanoiepm.txt" 2>/dev/null
in_ns ss -tn state established > "$here/ss_state_established.txt"
{
	date -R
	in_ns netstat -antp
	sleep 1
	date --rfc-3339=ns
	in_ns netstat -antp
} > "$here/netstat_antp_watch.txt"
in_ns netstat -anto > "$here/netstat_anto.txt"
in_ns netstat -antop > "$here/netstat_antop.txt"
{
	date
	in_ns netstat -s
	sleep 2
	date
	in_ns netstat -s
} > "$here/netstat_s_watch.txt"
# The loop of seed 002, with the blank line its echo writes.
for i in 1 2 3; do in_ns netstat -s | grep -i listen; echo; sleep 1; done > "$here/netstat_s_grep_listen.txt"
{
	date -Ins
	in_ns nstat -az
	sleep 2
	date -Ins
	in_ns nstat -az
} > "$here/nstat_az_watch.txt"
{ ss -V; netstat -V | head -1; } > "$here/tool_versions.txt"
