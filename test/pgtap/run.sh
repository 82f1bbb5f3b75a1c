#!/usr/bin/env bash
# Run the pgTAP tests (test/pgtap/*.sql) with pg_prove against a throwaway
# cluster with connmgr preloaded.  Called by "make pgtapcheck"; runs as the
# invoking (non-root) user.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
bindir=$("$PG_CONFIG" --bindir)
port=${PGTAP_PORT:?"set PGTAP_PORT (make pgtapcheck does)"}
data=$(mktemp -d "${TMPDIR:-/tmp}/connmgr-pgtap.XXXXXX")
# On failure the end of the server's log, then stop and remove the cluster.
cleanup() {
	local rc=$?
	if [ $rc -ne 0 ] && [ -f "$data/server.log" ]; then
		echo "=== pgTAP server log (last 40 lines)"
		tail -n 40 "$data/server.log"
	fi
	"$bindir/pg_ctl" -D "$data/db" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$data"
	exit $rc
}
trap cleanup EXIT

"$bindir/initdb" -D "$data/db" -U postgres -A trust >/dev/null
cat >>"$data/db/postgresql.conf" <<CONF
shared_preload_libraries = 'connmgr'
listen_addresses = ''
unix_socket_directories = '$data'
port = $port
CONF
"$bindir/pg_ctl" -D "$data/db" -l "$data/server.log" -w start >/dev/null
"$bindir/createdb" -h "$data" -p "$port" -U postgres connmgr_pgtap
"$bindir/psql" -X -q -h "$data" -p "$port" -U postgres -d connmgr_pgtap \
	-c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION connmgr"

pg_prove -h "$data" -p "$port" -U postgres -d connmgr_pgtap "$here"/*.sql
