# shellcheck shell=bash
# Postgres for the tests. Sourced by scripts/test.sh, which provides log, die,
# as_root, apt_install and SERVICES.
#
# ensure_postgres makes sure a Postgres server answers on 127.0.0.1:5432 with
#   - trust auth for the postgres user over local TCP,
#   - wal_level=logical and max_replication_slots / max_wal_senders >= 10 (CDC tests),
#   - max_connections >= 300 (tests run in parallel, each with its own database),
# and exports SWITCHYARD_TEST_PG. On a bare Debian machine it installs the
# `postgresql` package and starts the Debian cluster; a server that is already
# running is reconfigured with ALTER SYSTEM and restarted only when a setting is short.

PG_HOST=127.0.0.1
PG_PORT=5432
PG_DEFAULT_URL="postgres://postgres@${PG_HOST}:${PG_PORT}/postgres"
PG_MIN_CONNECTIONS=300
PG_MIN_REPLICATION=10
PG_HBA_MARKER='# switchyard tests: trust local TCP (added by scripts/test.sh)'

# psql over TCP as the postgres superuser; never prompts for a password.
pg_psql() {
	PGCONNECT_TIMEOUT=5 psql -X -w -q -At -v ON_ERROR_STOP=1 \
		-h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres "$@"
}

pg_is_ready() {
	pg_isready -q -h "$PG_HOST" -p "$PG_PORT" >/dev/null 2>&1
}

pg_wait_ready() {
	local _
	for _ in $(seq 1 120); do
		pg_is_ready && return 0
		sleep 0.5
	done
	die "Postgres on $PG_HOST:$PG_PORT did not become ready within 60s"
}

pg_port_open() {
	(exec 3<>"/dev/tcp/$PG_HOST/$PG_PORT") 2>/dev/null
}

# Prints "VERSION NAME" of the Debian cluster configured for our port, if any.
pg_local_cluster() {
	command -v pg_lsclusters >/dev/null 2>&1 || return 1
	local cluster
	cluster=$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }')
	[[ -n $cluster ]] || return 1
	printf '%s\n' "$cluster"
}

# pg_ctlcluster, going through systemd only when systemd is actually running.
pg_ctl() {
	if [[ -d /run/systemd/system ]]; then
		as_root pg_ctlcluster "$@"
	else
		as_root pg_ctlcluster --skip-systemctl-redirect "$@"
	fi
}

# Prints the highest version-named directory under $1 (e.g. 15 for /etc/postgresql/15).
pg_newest_version() {
	local dir
	for dir in "$1"/*/; do
		[[ -d $dir ]] && basename "$dir"
	done | sort -V | tail -n 1
}

# Installs and starts a local server when nothing answers on our port.
pg_ensure_running() {
	if ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
		if pg_port_open; then
			# A server runs (in a container, say) but this machine has no client.
			apt_install postgresql-client
		else
			apt_install postgresql
		fi
	fi
	pg_is_ready && return 0

	if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
		apt_install postgresql
		pg_is_ready && return 0
	fi

	local cluster version name
	if ! cluster=$(pg_local_cluster); then
		version=$(pg_newest_version /etc/postgresql)
		[[ -n $version ]] || version=$(pg_newest_version /usr/lib/postgresql)
		[[ -n $version ]] || die "no Postgres server version found under /usr/lib/postgresql"
		[[ ! -e /etc/postgresql/$version/main ]] ||
			die "cluster $version/main exists but does not use port $PG_PORT; free the port or start a cluster on it"
		log "creating Postgres cluster $version/main on port $PG_PORT"
		as_root pg_createcluster -p "$PG_PORT" "$version" main >/dev/null
		cluster="$version main"
	fi
	read -r version name <<<"$cluster"
	log "starting Postgres cluster $version/$name"
	pg_ctl "$version" "$name" start || pg_is_ready ||
		die "could not start cluster $version/$name; see /var/log/postgresql/postgresql-$version-$name.log"
	pg_wait_ready
}

# Lets the postgres user in over local TCP without a password.
pg_ensure_trust() {
	pg_psql -c 'select 1' >/dev/null 2>&1 && return 0

	local cluster version name hba
	cluster=$(pg_local_cluster) ||
		die "cannot connect as postgres to $PG_HOST:$PG_PORT and the server is not a local Debian cluster; set SWITCHYARD_TEST_PG to a URL with credentials"
	read -r version name <<<"$cluster"
	hba=/etc/postgresql/$version/$name/pg_hba.conf
	[[ -f $hba ]] || die "$hba not found"

	if ! grep -qxF "$PG_HBA_MARKER" "$hba"; then
		log "allowing trust auth on local TCP in $hba"
		# The first matching line wins, so these go on top.
		local tmp
		tmp=$(mktemp)
		{
			printf '%s\n' "$PG_HBA_MARKER"
			printf 'host all all 127.0.0.1/32 trust\n'
			printf 'host all all ::1/128 trust\n'
			as_root cat "$hba"
		} >"$tmp"
		as_root cp "$tmp" "$hba" # cp into an existing file keeps its owner and mode
		rm -f "$tmp"
	fi
	pg_ctl "$version" "$name" reload >/dev/null

	local _
	for _ in $(seq 1 20); do
		pg_psql -c 'select 1' >/dev/null 2>&1 && return 0
		sleep 0.25
	done
	pg_psql -c 'select 1' >/dev/null || die "still cannot connect as postgres to $PG_HOST:$PG_PORT after editing $hba"
}

# Prints "wal_level max_connections max_replication_slots max_wal_senders".
pg_current_settings() {
	pg_psql -F ' ' -c "select current_setting('wal_level'), current_setting('max_connections'),
		current_setting('max_replication_slots'), current_setting('max_wal_senders')"
}

# Raises the settings the tests need, with one restart for all of them.
pg_ensure_settings() {
	local settings wal_level connections slots senders
	settings=$(pg_current_settings)
	read -r wal_level connections slots senders <<<"$settings"

	local changes=()
	[[ $wal_level == logical ]] || changes+=("wal_level = logical")
	((connections >= PG_MIN_CONNECTIONS)) || changes+=("max_connections = $PG_MIN_CONNECTIONS")
	((slots >= PG_MIN_REPLICATION)) || changes+=("max_replication_slots = $PG_MIN_REPLICATION")
	((senders >= PG_MIN_REPLICATION)) || changes+=("max_wal_senders = $PG_MIN_REPLICATION")
	((${#changes[@]} > 0)) || return 0

	local change
	for change in "${changes[@]}"; do
		log "ALTER SYSTEM SET $change"
		pg_psql -c "ALTER SYSTEM SET $change" >/dev/null
	done

	local cluster version name
	cluster=$(pg_local_cluster) ||
		die "set ${changes[*]} with ALTER SYSTEM, but the server on $PG_HOST:$PG_PORT is not a local Debian cluster; restart it yourself and rerun"
	read -r version name <<<"$cluster"
	log "restarting Postgres cluster $version/$name to apply the settings"
	pg_ctl "$version" "$name" restart
	pg_wait_ready

	settings=$(pg_current_settings)
	read -r wal_level connections slots senders <<<"$settings"
	if [[ $wal_level != logical ]] || ((connections < PG_MIN_CONNECTIONS)); then
		die "after restart: wal_level=$wal_level max_connections=$connections"
	fi
}

# Checks a server the developer chose through SWITCHYARD_TEST_PG; changes nothing.
pg_check_external() {
	if ! command -v psql >/dev/null 2>&1; then
		log "psql not installed; not checking SWITCHYARD_TEST_PG"
		return 0
	fi
	local settings wal_level connections
	settings=$(PGCONNECT_TIMEOUT=5 psql -X -w -q -At -F ' ' -d "$SWITCHYARD_TEST_PG" \
		-c "select current_setting('wal_level'), current_setting('max_connections')") ||
		die "cannot connect to SWITCHYARD_TEST_PG"
	read -r wal_level connections <<<"$settings"
	[[ $wal_level == logical ]] ||
		die "the server at SWITCHYARD_TEST_PG has wal_level=$wal_level; set it to logical, or unset SWITCHYARD_TEST_PG to use a local server set up by this script"
	((connections >= PG_MIN_CONNECTIONS)) ||
		log "warning: SWITCHYARD_TEST_PG has max_connections=$connections (< $PG_MIN_CONNECTIONS); parallel tests may run out"
}

ensure_postgres() {
	if [[ -n ${SWITCHYARD_TEST_PG:-} ]]; then
		pg_check_external
		SERVICES+=("postgres: SWITCHYARD_TEST_PG (set by you)")
		return 0
	fi

	pg_ensure_running
	pg_ensure_trust
	pg_ensure_settings

	export SWITCHYARD_TEST_PG="$PG_DEFAULT_URL"
	local version
	version=$(pg_psql -c 'show server_version' | cut -d' ' -f1)
	SERVICES+=("postgres $version: SWITCHYARD_TEST_PG=$SWITCHYARD_TEST_PG (wal_level=logical)")
}
