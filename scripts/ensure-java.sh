#!/usr/bin/env bash
# Make sure a Java runtime of version 17 or newer is there for the Spark engine's tests:
# use the installed one, or install Debian's headless OpenJDK 17.
set -euo pipefail

major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

if command -v java >/dev/null 2>&1 && [ "$(major)" -ge 17 ] 2>/dev/null; then
  echo "java: $(major) found"
  exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

echo "java: 17 or newer not found; installing Debian's openjdk-17-jre-headless"
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
echo "java: $(major) installed"
