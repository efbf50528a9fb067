#!/usr/bin/env bash
# Make sure poppler's pdftoppm and pdftotext are installed: the report tests render each
# PDF page to PNG and read its text back with them.
set -euo pipefail

if command -v pdftoppm >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1; then
  echo "poppler-utils: $(pdftoppm -v 2>&1 | sed -n 1p)"
  exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

echo "poppler-utils: not installed; installing Debian's poppler-utils package"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null
pdftoppm -v 2>&1 | sed -n 1p
