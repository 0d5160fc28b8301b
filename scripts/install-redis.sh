#!/usr/bin/env bash
# redis-server for the Redis session store's tests (Debian's package; each test run starts its
# own server on a free loopback port, so nothing is started here).
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's redis-server for the session store tests..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
else
  echo "note: redis-server is not installed and this user cannot apt-get it; Redis tests will be skipped" >&2
fi
