#!/usr/bin/env bash
# A local Tidings cluster, in the foreground: one redis-server and three `tidings` nodes that
# share it (and nginx in front of them on 127.0.0.1:3000, when nginx is installed). Ctrl-C
# stops everything and removes the temp dir. See docs/cluster.md.
#
#   make cluster                  builds the release site first, then runs this script
#   scripts/cluster.sh            uses the existing build (target/release/tidings, target/site)
#
# Settings (environment):
#   CLUSTER_PORTS       the nodes' ports, one node each (default "3001 3002 3003")
#   CLUSTER_PROXY_PORT  nginx's port (default 3000)
#   CLUSTER_REDIS_PORT  Redis's port (default: the first free one from 6379 up)
#   CLUSTER_FSYNC       Redis appendfsync: everysec (default) or always (see docs/cluster.md)
#   TIDINGS_BIN         the server binary (default target/release/tidings)
#   TIDINGS_SITE_ROOT   the built site (default target/site)
#   TIDINGS_PUBLISHER_JWT_KEY  the nodes' shared HS256 key (default: 32 random bytes, in hex)
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a ports <<<"${CLUSTER_PORTS:-3001 3002 3003}"
proxy_port=${CLUSTER_PROXY_PORT:-3000}
fsync=${CLUSTER_FSYNC:-everysec}
bin=${TIDINGS_BIN:-target/release/tidings}
site=${TIDINGS_SITE_ROOT:-target/site}
say() { printf '\033[1mcluster:\033[0m %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

[ -x "$bin" ] || die "no $bin: build it first (make build, or make cluster)"
grep -q -- --redis-url <<<"$("$bin" --help)" || die "$bin has no --redis-url: this build has no cluster mode"
command -v redis-server >/dev/null || scripts/setup.sh --test # installs Debian's redis-server

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A port that answers already would pass the health checks below for the wrong server.
for port in "${ports[@]}" ${CLUSTER_REDIS_PORT:-} "$proxy_port"; do
  ! port_busy "$port" || die "port $port is in use (see the settings at the top of $0)"
done

# Whatever is running when the script ends (Ctrl-C, a failure, a node that exits) is stopped
# by its pid: nginx and the nodes first, Redis (the first started) last, so that the nodes'
# last writes reach it. Then the temp dir goes. The traps are cleared first so this runs once.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tidings-cluster.XXXXXX")
pids=()
names=()
# shellcheck disable=SC2317 # reached through the traps only
stop() { # PID...: SIGTERM each, then wait for each to exit
  for pid; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid; do wait "$pid" 2>/dev/null || true; done
}
# shellcheck disable=SC2317
cleanup() {
  trap - INT TERM EXIT
  say "stopping"
  stop "${pids[@]:1}"
  stop "${pids[@]:0:1}"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM # runs the EXIT trap

# start NAME COMMAND...: runs COMMAND in the background, its output in $tmp/NAME.log. setsid
# gives it a session of its own, so Ctrl-C reaches this script only, which stops them in order.
start() {
  local name=$1
  shift
  setsid "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}

# wait_for NAME COMMAND...: retries COMMAND until it succeeds (30 s at most), giving up early
# if NAME's process (the last one started) has exited.
wait_for() {
  local name=$1
  shift
  for _ in $(seq 300); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  tail -n 20 "$tmp/$name.log" >&2 || true
  die "$name did not come up (its log is above)"
}

# Redis: durable enough to lose at most about a second of acknowledged updates if the machine
# crashes (appendfsync everysec; `always` loses none), with no RDB snapshots.
redis_port=${CLUSTER_REDIS_PORT:-}
if [ -z "$redis_port" ]; then
  redis_port=6379
  while port_busy "$redis_port"; do redis_port=$((redis_port + 1)); done
fi
mkdir "$tmp/redis"
start redis redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$tmp/redis" \
  --appendonly yes --appendfsync "$fsync" --save '' --daemonize no
wait_for redis redis-cli -p "$redis_port" ping
redis_url="redis://127.0.0.1:$redis_port"

# One HS256 key for every node, so that a token one node accepts, every node accepts; in the
# environment rather than on the command line, where ps would show it. Subscriber tokens use
# the same key (the server's default when TIDINGS_SUBSCRIBER_JWT_KEY is unset).
export TIDINGS_PUBLISHER_JWT_KEY=${TIDINGS_PUBLISHER_JWT_KEY:-$(openssl rand -hex 32)}
unset TIDINGS_SUBSCRIBER_JWT_KEY

# A token that may publish and subscribe to every topic: an HS256 JWT made by hand.
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
jwt_head=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)
jwt_body=$(printf '%s' '{"mercure":{"publish":["*"],"subscribe":["*"]}}' | b64url)
jwt_sig=$(printf '%s' "$jwt_head.$jwt_body" |
  openssl dgst -sha256 -hmac "$TIDINGS_PUBLISHER_JWT_KEY" -binary | b64url)
token="$jwt_head.$jwt_body.$jwt_sig"

# The nodes. Each gets its own data dir (unused with Redis, but never shared), and trusts the
# X-Forwarded-For of nginx (127.0.0.1), so per-client limits count visitors. (The simulated
# market and the monitor publish from the leading node only.)
i=0
for port in "${ports[@]}"; do
  i=$((i + 1))
  mkdir "$tmp/node$i"
  start "node$i" "$bin" --addr "127.0.0.1:$port" --site-root "$site" --data-dir "$tmp/node$i" \
    --redis-url "$redis_url" --trusted-proxy 127.0.0.1/32
  wait_for "node$i" curl -fsS "http://127.0.0.1:$port/healthz"
done

# nginx in front, round robin over the nodes, if it is installed (this script never installs
# it). The example config's upstream and listen lines are rewritten for the ports above.
front=
if command -v nginx >/dev/null; then
  mkdir "$tmp/nginx"
  # As root, nginx's workers run as nobody: let them pass through to their temp dirs.
  chmod 711 "$tmp" "$tmp/nginx"
  awk -v ports="${ports[*]}" -v listen="$proxy_port" '
    /^ *server 127\.0\.0\.1:[0-9]+;/ {
      if (!done) { n = split(ports, p, " "); for (k = 1; k <= n; k++) print "        server 127.0.0.1:" p[k] ";" }
      done = 1; next
    }
    /^ *listen 127\.0\.0\.1:[0-9]+;/ { print "        listen 127.0.0.1:" listen ";"; next }
    { print }' docs/nginx-cluster.conf >"$tmp/nginx/nginx.conf"
  start nginx nginx -p "$tmp/nginx/" -e stderr -c "$tmp/nginx/nginx.conf" -g 'daemon off;'
  wait_for nginx curl -fsS "http://127.0.0.1:$proxy_port/healthz"
  front="http://127.0.0.1:$proxy_port"
else
  say "nginx is not installed: no proxy in front (apt-get install nginx-light adds one)"
fi

url=${front:-http://127.0.0.1:${ports[0]}}
say "redis   $redis_url (appendfsync $fsync)"
for port in "${ports[@]}"; do say "node    http://127.0.0.1:$port"; done
[ -z "$front" ] || say "nginx   $front (round robin over the nodes)"
say "logs    $tmp/*.log"
say "token   $token"
cat <<EOF

Subscribe (any node or the proxy):
  curl -gN '$url/.well-known/mercure?topic=/news'
Publish (any other node):
  curl -X POST http://127.0.0.1:${ports[-1]}/.well-known/mercure -H 'Authorization: Bearer $token' \\
    -d topic=/news --data-urlencode 'data={"title": "Hello from a cluster", "url": "https://example.com/"}'

Ctrl-C stops the cluster.
EOF

# Until Ctrl-C, or until any process exits by itself (then the rest are stopped too).
wait -n || true
for k in "${!pids[@]}"; do
  if ! kill -0 "${pids[$k]}" 2>/dev/null; then
    tail -n 20 "$tmp/${names[$k]}.log" >&2 || true
    say "${names[$k]} exited (the end of its log is above)"
  fi
done
exit 1
