#!/usr/bin/env bash
# Regenerates the real nginx logs in this directory: runs the system nginx
# on 127.0.0.1 inside a private network namespace with nginx.conf.in and
# log_formats.conf, drives it with nginxlab.py (a static file, a 404,
# upstreams that answer, refuse, stay silent or reset, WebSocket upgrades,
# escaped bytes), and copies the access and error logs here.
# Needs root, nginx and python3. Usage: testdata/regen.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/wm-nginx-lab.XXXXXX)
ns=wm-nginx-lab-$$
upstreams=
cleanup() {
	if [ -n "$upstreams" ]; then kill "$upstreams" 2>/dev/null || true; fi
	if [ -f "$work/nginx.pid" ]; then kill -QUIT "$(cat "$work/nginx.pid")" 2>/dev/null || true; fi
	sleep 0.5
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
chmod 755 "$work"
mkdir -p "$work/www/static" "$work/tmp"
echo hello > "$work/www/static/index.html"
sed -e "s#@WORK@#$work#g" -e "s#@HERE@#$here#g" "$here/nginx.conf.in" > "$work/nginx.conf"

ip netns exec "$ns" python3 "$here/nginxlab.py" upstreams &
upstreams=$!
# nginx writes its error log in local time with no zone; running it in a
# zone other than UTC lets the tests check that Options.Clock is applied.
TZ=Asia/Shanghai ip netns exec "$ns" nginx -p "$work" -c "$work/nginx.conf"
sleep 0.5
ip netns exec "$ns" python3 "$here/nginxlab.py" clients
kill -QUIT "$(cat "$work/nginx.pid")"
while [ -f "$work/nginx.pid" ]; do sleep 0.1; done

for f in access_combined.log access_text.log access_json.log error.log; do
	cp "$work/$f" "$here/lab_$f"
done
nginx -v 2>&1 | sed 's/^/# /' > "$here/lab_nginx_version.txt"
