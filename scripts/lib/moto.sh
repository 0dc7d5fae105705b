# shellcheck shell=bash
# moto, the S3/SQS/STS server the S3 source's tests run against. Sourced by
# scripts/test.sh, which provides log, die, as_root, apt_install and SERVICES.
#
# ensure_moto makes sure a moto server answers on 127.0.0.1:5000 and exports
# SWITCHYARD_TEST_MOTO. It installs `moto[server]` from PyPI into .venv/ at the
# repository root (once; a rerun only checks), and starts `moto_server` in the
# background when nothing listens on the port yet. The server's log goes to
# .venv/moto.log. Tests fail, never skip, when the server is unreachable.

MOTO_HOST=127.0.0.1
MOTO_PORT=5000
MOTO_URL="http://${MOTO_HOST}:${MOTO_PORT}"
MOTO_VENV="$REPO_ROOT/.venv"
# The moto release the tests were written against; newer minor releases are fine.
MOTO_REQUIREMENT='moto[server]>=5.1,<6'

moto_port_open() {
	(exec 3<>"/dev/tcp/$MOTO_HOST/$MOTO_PORT") 2>/dev/null
}

# moto answers every request on its root; a 200 there means it is serving.
moto_is_ready() {
	python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
		"$MOTO_URL/moto-api/" >/dev/null 2>&1
}

moto_install() {
	if [[ -x $MOTO_VENV/bin/moto_server ]]; then
		return 0
	fi
	command -v python3 >/dev/null 2>&1 || apt_install python3
	if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
		apt_install python3-venv
	fi
	log "installing $MOTO_REQUIREMENT into $MOTO_VENV"
	python3 -m venv "$MOTO_VENV" || die "python3 -m venv $MOTO_VENV failed"
	"$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_REQUIREMENT" ||
		die "pip install $MOTO_REQUIREMENT failed"
}

moto_start() {
	log "starting moto_server on $MOTO_HOST:$MOTO_PORT (log: $MOTO_VENV/moto.log)"
	# setsid detaches it from this script, so it outlives the test run and the next run
	# finds it listening.
	setsid "$MOTO_VENV/bin/moto_server" -H "$MOTO_HOST" -p "$MOTO_PORT" \
		>>"$MOTO_VENV/moto.log" 2>&1 </dev/null &
	local _
	for _ in $(seq 1 120); do
		moto_is_ready && return 0
		sleep 0.5
	done
	die "moto did not become ready on $MOTO_URL within 60s; see $MOTO_VENV/moto.log"
}

ensure_moto() {
	if moto_port_open; then
		moto_is_ready || die "something listens on $MOTO_HOST:$MOTO_PORT but does not answer like moto"
	else
		moto_install
		moto_start
	fi
	export SWITCHYARD_TEST_MOTO="$MOTO_URL"
	SERVICES+=("moto: SWITCHYARD_TEST_MOTO=$SWITCHYARD_TEST_MOTO")
}
