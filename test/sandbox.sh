#!/usr/bin/env bash
# Start a throwaway cluster with connmgr preloaded and a small classroom in
# it: an instructor, students with stray open connections.  In a terminal
# it opens psql as the instructor; otherwise (or with --demo) it runs a
# short scripted demo.
# Either way the cluster is stopped and removed afterwards.  It listens on a
# Unix socket in its own directory only, so no existing cluster is touched.
set -euo pipefail
[ "${1:-}" = "--demo" ] && demo=1 || demo=0
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

ensure_packages $CONNMGR_PACKAGES
build_and_install "$src"

dir=$(mktemp -d "${TMPDIR:-/tmp}/connmgr-sandbox.XXXXXX")
chmod 755 "$dir"
[ "$(id -u)" -eq 0 ] && chown "$(run_user)": "$dir"
port=$(port_at 0)
pids=()

teardown() {
	for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
	as_run_user pg_ctl -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap teardown EXIT

start_connmgr_cluster "$dir" "$port"

psql_as() {
	local user=$1
	shift
	"$PG_BINDIR/psql" -X -h "$dir" -p "$port" -U "$user" -d classroom "$@"
}

"$PG_BINDIR/psql" -X -q -h "$dir" -p "$port" -U postgres -d postgres \
	-c "CREATE DATABASE classroom"
psql_as postgres -q <<'SQL'
CREATE EXTENSION connmgr;
CREATE ROLE student NOLOGIN;
CREATE ROLE instructor LOGIN;
GRANT student TO instructor WITH ADMIN OPTION;
CREATE ROLE alice LOGIN IN ROLE student;
CREATE ROLE bob LOGIN IN ROLE student;
CREATE ROLE carol LOGIN IN ROLE student;
SELECT connmgr.set_connection_limit('student', per_member => 3);
SQL

# Stray connections: idle sessions that a client left open.  Each runs in
# a process group of its own, which teardown ends as a whole.
open_idle() {
	local user=$1 app=$2
	PGAPPNAME=$app setsid bash -c 'sleep infinity | "$@"' idle \
		"$PG_BINDIR/psql" -X -q -h "$dir" -p "$port" -U "$user" -d classroom \
		</dev/null >/dev/null 2>&1 &
	pids+=($!)
}
open_idle alice pgAdmin
open_idle alice pgAdmin
open_idle alice pgAdmin
open_idle bob psql
for _ in $(seq 100); do
	[ "$(psql_as postgres -Atc "SELECT count(*) FROM pg_stat_activity WHERE usename IN ('alice', 'bob')")" = 4 ] && break
	sleep 0.1
done

if [ $demo -eq 0 ] && [ -t 0 ] && [ -t 1 ]; then
	cat <<'EOF2'
connmgr sandbox: you are "instructor", who holds ADMIN OPTION on "student".
Students alice, bob and carol may hold 3 connections each; alice has three
stray pgAdmin connections, so she cannot log in (try: \c - alice).
Try:
  SELECT * FROM connmgr.connection_limits;
  SELECT * FROM connmgr.listUserConnections('alice');
  SELECT connmgr.killConnection(pid) FROM connmgr.listUserConnections('bob');
  SELECT * FROM connmgr.killUserConnections('alice');
Quit with \q: the sandbox is then stopped and removed.
EOF2
	psql_as instructor
else
	psql_as instructor -e <<'SQL'
SELECT userName, applicationName, clientAddress, connectionStartTime IS NOT NULL AS connected
  FROM connmgr.listUserConnections('alice');
SELECT userName, COUNT(*) connections FROM connmgr.listUserConnections('alice') GROUP BY userName;
SELECT role_name, per_member, max_member_connections FROM connmgr.connection_limits;
SQL
	echo "-- alice tries to log in:"
	psql_as alice -c "SELECT 'alice is in'" 2>&1 || true
	psql_as instructor -e <<'SQL'
SELECT connmgr.killConnection(pid) FROM connmgr.listUserConnections('bob');
SELECT success FROM connmgr.killUserConnections('alice');
SELECT count(*) AS alice_connections_left FROM connmgr.listUserConnections('alice');
SQL
	echo "-- alice tries again:"
	psql_as alice -c "SELECT 'alice is in' AS login"

	echo "connmgr sandbox: demo finished; the sandbox cluster is removed."
fi
