#!/bin/sh
# Container / service entry point: migrate, then serve. Production settings come from the environment.
set -eu
: "${COOKIESYNC_MODE:=production}"
export COOKIESYNC_MODE
cookiesync migrate
exec cookiesync serve "$@"
