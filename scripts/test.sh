#!/usr/bin/env bash
# Runs every Switchyard test against real services.
#
# Usage:
#   scripts/test.sh [ARGS...]        ARGS go to `cargo test --workspace`, for example
#                                    scripts/test.sh -p switchyard-store -- queue::
#
# Before running cargo it brings up whatever the machine lacks, installing it if
# needed (this may use apt-get, so it needs root or sudo on a bare machine):
#   - Postgres on 127.0.0.1:5432 with wal_level=logical, max_connections >= 300 and
#     trust auth for local TCP (see scripts/lib/postgres.sh).
#   - moto (S3, SQS and STS) on 127.0.0.1:5000, installed from PyPI into .venv/ and
#     left running in the background for the next run (see scripts/lib/moto.sh).
# When everything is already there it only checks, which takes well under a second.
#
# Environment:
#   SWITCHYARD_TEST_PG                Admin URL the test harness creates one database per
#                                     test from. Defaults to
#                                     postgres://postgres@127.0.0.1:5432/postgres.
#                                     If you set it, the script leaves the local Postgres
#                                     alone and only checks that your server is reachable
#                                     and has wal_level=logical.
#   SWITCHYARD_TEST_MOTO              Set by the script to the moto server's URL; the S3
#                                     tests fail, never skip, when it is unreachable.
#   SWITCHYARD_TEST_SERVICES_ONLY=1   Bring the services up, print their settings, and
#                                     exit without running cargo. Handy for running
#                                     `cargo test` yourself afterwards.
#   CI=true                           Colourless cargo output.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'scripts/test.sh: error: %s\n' "$*" >&2
	exit 1
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

apt_install() {
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* yourself"
	log "installing $* with apt-get"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
		log "warning: apt-get update failed; trying the install with the package lists at hand"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# shellcheck source-path=SCRIPTDIR source=lib/postgres.sh
source "$REPO_ROOT/scripts/lib/postgres.sh"
# shellcheck source-path=SCRIPTDIR source=lib/moto.sh
source "$REPO_ROOT/scripts/lib/moto.sh"

# Services in use, one "name: detail" line each, printed before the tests run.
SERVICES=()

# Every ensure_* function makes one service ready, exports what the tests need to find
# it, and appends a line to SERVICES. Add new services (tansu for Kafka) here when
# tests start using them.
ensure_services() {
	ensure_postgres
	ensure_moto
}

# Serialise service setup so that two runs (say, from two worktrees) don't both
# restart Postgres at once.
LOCK_FILE="${TMPDIR:-/tmp}/switchyard-test-services.lock"
if command -v flock >/dev/null 2>&1 && { exec 9>>"$LOCK_FILE"; } 2>/dev/null; then
	flock 9
	ensure_services
	flock -u 9
	exec 9>&-
else
	ensure_services
fi

log "services:"
for service in "${SERVICES[@]}"; do
	printf '      %s\n' "$service" >&2
done

if [[ ${SWITCHYARD_TEST_SERVICES_ONLY:-} == 1 ]]; then
	log "SWITCHYARD_TEST_SERVICES_ONLY=1: services are ready, not running cargo"
	printf 'export SWITCHYARD_TEST_PG=%q\n' "$SWITCHYARD_TEST_PG"
	printf 'export SWITCHYARD_TEST_MOTO=%q\n' "$SWITCHYARD_TEST_MOTO"
	exit 0
fi

if [[ ${CI:-} == true ]]; then
	export CARGO_TERM_COLOR=never
fi

log "cargo test --workspace $*"
exec cargo test --workspace "$@"
