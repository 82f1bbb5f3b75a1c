#!/usr/bin/env bash
# connmgr's benchmark suite (issue 9): one command,
#
#     bash bench/run.sh
#
# On a Debian 12 machine (as root, or as a user with sudo) it installs the
# packages it needs, builds and installs connmgr (test/lib.sh's
# build_and_install), starts four throwaway clusters of its own (initdb
# into a temporary directory, Unix socket in that directory only, no TCP,
# a free port): "stock" (the same PostgreSQL without connmgr), "stock2"
# (an identical one, the A/A control that shows the noise), "cm0" (connmgr
# preloaded, no policies) and "cm" (connmgr with 1,000 policies).
# It runs every benchmark of issue 9, alternating the two sides of each
# comparison (A B A B ...), prints one results table with medians, spread
# and ratios, and writes it to bench/RESULTS.md with the machine it ran on.
# Run as root, the servers and clients run as the postgres OS user.
# It takes about 9 minutes on a 2-core machine (limit: 10); it prints
# how long it took.  It is not part of the test suite: nothing here asserts
# a timing, the targets are reported.
#
# Environment:
#   BENCH_QUICK=1        every benchmark much shorter (for developing the
#                        suite); RESULTS.md then says so
#   BENCH_ONLY=list,kill only some of: login, cold, instructions, list, kill,
#                        storm, memory
#   BENCH_SKIP_BUILD=1   measure the connmgr already installed, without
#                        building and installing the work tree first
#   BENCH_RESULTS=path   where to write the results (default bench/RESULTS.md)
#
# The measuring is bench/bench.py (python3 with psycopg2, pgbench).
# Everything it starts (servers, pgbench, client sessions) is stopped on
# every exit path, also on failure or Ctrl-C.
set -euo pipefail
BENCH_T0=$(date +%s.%N)
bench=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$bench")
. "$src/test/lib.sh"

# pgbench comes with postgresql-15; the measuring needs python3 and psycopg2,
# and valgrind (callgrind) to count the instructions of a login.
ensure_packages $CONNMGR_PACKAGES python3 python3-psycopg2 valgrind

if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
	build="the installed build (BENCH_SKIP_BUILD=1: the work tree was not built)"
else
	build_and_install "$src"
	build="built and installed from the work tree by this run"
fi

# Provenance for RESULTS.md: the commit and whether the work tree had
# changes (bench.py adds the library's checksum and whether the servers
# have the login cache of issue 9).
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=0
[ -n "$(git -C "$src" status --porcelain -- . ':!bench' 2>/dev/null)" ] && dirty=1

work=$(mktemp -d "${TMPDIR:-/tmp}/connmgr-bench.XXXXXX")
chmod 755 "$work"
[ "$(id -u)" -eq 0 ] && chown "$(run_user)": "$work"
orchestrator=""

cleanup() {
	local status=$?
	trap - EXIT INT TERM HUP
	# The orchestrator stops its own servers and clients on SIGTERM; give it
	# a moment, then stop whatever is left of the clusters.
	if [ -f "$work/orchestrator.pid" ]; then
		local opid
		opid=$(cat "$work/orchestrator.pid")
		if kill -0 "$opid" 2>/dev/null; then
			kill -TERM "$opid" 2>/dev/null || as_root kill -TERM "$opid" 2>/dev/null || true
			for _ in $(seq 100); do kill -0 "$opid" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$opid" 2>/dev/null || as_root kill -KILL "$opid" 2>/dev/null || true
		fi
	fi
	if [ -n "$orchestrator" ]; then
		kill -TERM "$orchestrator" 2>/dev/null || true
		wait "$orchestrator" 2>/dev/null || true
	fi
	for data in "$work"/*/data; do
		[ -f "$data/postmaster.pid" ] &&
			as_run_user pg_ctl -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
	done
	rm -rf "$work"
	exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

as_run_user env BENCH_T0="$BENCH_T0" BENCH_COMMIT="$commit" BENCH_DIRTY="$dirty" \
	BENCH_BUILD="$build" \
	BENCH_QUICK="${BENCH_QUICK:-0}" BENCH_ONLY="${BENCH_ONLY:-}" PG_BINDIR="$PG_BINDIR" \
	/usr/bin/python3 "$bench/bench.py" "$work" &
orchestrator=$!
status=0
wait "$orchestrator" || status=$?
orchestrator=""

# Written once every benchmark has run (also when only the prose failed).
results=${BENCH_RESULTS:-$bench/RESULTS.md}
if [ -f "$work/RESULTS.md" ]; then
	cp "$work/RESULTS.md" "$results"
	echo "bench: results written to $results"
fi
exit $status
