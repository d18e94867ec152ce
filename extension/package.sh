#!/bin/sh
# Kept for old habits: the packages are built by tools/build.mjs (see extension/README.md).
#   sh extension/package.sh [OUT_DIR] → OUT_DIR (default dist/)/<short_name>-{chrome,firefox}-<version>.zip
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec node "$here/tools/build.mjs" --out "${1:-$(dirname "$here")/dist}"
