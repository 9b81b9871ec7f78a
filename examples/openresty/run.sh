#!/bin/sh
# Run examples/openresty/nginx.conf: PORT and GATEWAY as arguments (defaults
# 8080 and the emulator at http://127.0.0.1:8089), in a private prefix, with
# WORKERS worker processes (default 1).
#   make core LUA_INC=/usr/include/luajit-2.1 BUILD=build/luajit
#   lua5.4 bin/modkie mock --port 8089 &   # the gateway emulator
#   examples/openresty/run.sh 8080 http://127.0.0.1:8089
#   curl 'http://127.0.0.1:8080/generate?prompt=a+red+fox'
# Callbacks: MODKIE_WEBHOOK_SECRET (default demo-secret) and
# MODKIE_WEBHOOK_SCHEME (modkie or kie, default modkie) must match the
# gateway's; the emulator signs with --webhook-secret in its dialect's scheme:
#   lua5.4 bin/modkie mock --port 8089 --dialect modkie --webhook-secret demo-secret &
#   curl 'http://127.0.0.1:8080/generate-callback?prompt=a+red+fox'
set -eu
port=${1:-8080}
gateway=${2:-http://127.0.0.1:8089}
MODKIE_WEBHOOK_SECRET=${MODKIE_WEBHOOK_SECRET:-demo-secret} # nginx hands it to the workers (env in nginx.conf)
export MODKIE_WEBHOOK_SECRET
workers=${WORKERS:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
prefix=${PREFIX:-$(mktemp -d)}
mkdir -p "$prefix/logs"
sed -e "s|__PORT__|$port|g" -e "s|__ROOT__|$root|g" -e "s|__GATEWAY__|$gateway|g" \
  -e "s|__WORKERS__|$workers|g" -e "s|__SCHEME__|${MODKIE_WEBHOOK_SCHEME:-modkie}|g" \
  "$root/examples/openresty/nginx.conf" > "$prefix/nginx.conf"
# Started as root, nginx runs its workers as nobody, who may not be allowed
# to read this checkout (under /root, or any folder closed to others) and
# then answers 500 for every request. A private dev server runs them as
# root instead; NGINX_USER names another user.
user=""
[ "$(id -u)" = 0 ] && user="user ${NGINX_USER:-root};"
echo "nginx on http://127.0.0.1:$port (prefix $prefix)"
exec nginx -p "$prefix" -c "$prefix/nginx.conf" -g "daemon off; $user"
