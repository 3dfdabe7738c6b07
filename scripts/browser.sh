#!/usr/bin/env bash
# The browser the chat page's tests drive: Debian's chromium and chromium-driver (and CJK
# fonts, so Korean renders in screenshots). Installed with apt-get where this runs as root;
# elsewhere it says what to install, and the browser tests are skipped.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Echo setup: installing chromium and chromium-driver for the browser tests (apt-get, once)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-noto-cjk >/dev/null
else
  echo "Echo setup: no chromium/chromedriver; the browser tests will be skipped (install Debian's chromium and chromium-driver)" >&2
fi
