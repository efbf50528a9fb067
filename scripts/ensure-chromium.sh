#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the browser tests (Playwright drives it;
# `playwright install` cannot download its own browser build on these machines).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(chromium --version 2>/dev/null || echo installed)"
  exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

echo "chromium: not installed; installing Debian's chromium package"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
chromium --version
