#!/usr/bin/env bash
# Headless Chromium for the chat page's browser test (Debian's package; Playwright drives it).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser test..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
else
  echo "note: chromium is not installed and this user cannot apt-get it; browser tests will be skipped" >&2
fi
