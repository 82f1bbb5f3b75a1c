#!/usr/bin/env bash
# Run connmgr's whole test suite against real PostgreSQL servers that the
# run starts itself: pg_regress (sql/, expected/), the TAP tests (test/t/)
# and the pgTAP tests (test/pgtap/).  Installs missing Debian packages,
# builds with -Werror, installs, and exits non-zero on any failure.
# Works as root (servers and tests then run as the postgres OS user).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

ensure_packages $CONNMGR_TEST_PACKAGES
build_and_install "$src"

work=$(scratch_copy "$src")
trap 'rm -rf "$work"' EXIT
status=0
as_run_user make -C "$work" PG_CONFIG="$PG_CONFIG" installcheck || status=1
if [ $status -ne 0 ] && [ -f "$work/regression.diffs" ]; then
	cat "$work/regression.diffs"
fi
as_run_user make -C "$work" PG_CONFIG="$PG_CONFIG" pgtapcheck || status=1
if [ $status -ne 0 ]; then
	for f in "$work"/tmp_check/log/*; do
		[ -f "$f" ] && { echo "=== $f"; tail -n 60 "$f"; }
	done
	echo "connmgr: TESTS FAILED"
else
	echo "connmgr: all tests passed"
fi
exit $status
