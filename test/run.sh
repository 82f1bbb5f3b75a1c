#!/usr/bin/env bash
# Run connmgr's whole test suite against real PostgreSQL servers that the
# run starts itself: pg_regress (sql/, expected/), the TAP tests (test/t/)
# and the pgTAP tests (test/pgtap/), on every supported PostgreSQL release
# available on this machine, one after another (test/matrix.sh builds with
# -Werror and installs into each); then the Debian package's build,
# install and smoke test (test/package.sh).  Installs missing Debian
# packages, and exits non-zero if anything fails.
# Works as root (servers and tests then run as the postgres OS user).
#
# The releases: 15 from Debian 12's packages; 17 and 18 from the
# relocatable installations postgresql-NN.*-bookworm-amd64.tar.xz in
# $CONNMGR_PG_TARBALLS, else ../shared/pg beside the checkout, else
# /work/shared/pg, unpacked into a temporary directory.  16 is supported
# but cannot be had here.
#
# Your own installations instead: their pg_config paths as arguments or in
# CONNMGR_PG_CONFIGS (separated by spaces), e.g.
#     CONNMGR_PG_CONFIGS="/opt/pg16/bin/pg_config /opt/pg17/bin/pg_config" bash test/run.sh
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

ensure_packages $CONNMGR_TEST_PACKAGES

# The releases connmgr supports, and where pgTAP's SQL files come from.
SUPPORTED="15 16 17 18"
PGTAP_SQL=/usr/share/postgresql/15/extension

tmp=$(mktemp -d "${TMPDIR:-/tmp}/connmgr-pg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

configs=()    # the pg_config of each installation to test
untested=()   # a line for each supported release not tested, and why

# pgTAP into an installation that lacks it (as root if need be).
add_pgtap() {
	local ext
	ext=$("$1" --sharedir)/extension
	[ -f "$ext/pgtap.control" ] && return 0
	echo "connmgr: installing pgTAP's SQL files into $ext"
	if [ -w "$ext" ]; then
		cp "$PGTAP_SQL"/pgtap* "$ext/"
	else
		as_root cp "$PGTAP_SQL"/pgtap* "$ext/"
	fi
}

# The newest tarball of release $1 in the first directory that has one.
find_tarball() {
	local major=$1 dir found
	local dirs=("$src/../shared/pg" /work/shared/pg)
	[ -n "${CONNMGR_PG_TARBALLS:-}" ] && dirs=("$CONNMGR_PG_TARBALLS")
	for dir in "${dirs[@]}"; do
		found=$(ls "$dir"/postgresql-"$major".*-bookworm-amd64.tar.xz 2>/dev/null |
			sort -V | tail -n 1)
		[ -n "$found" ] && { echo "$found"; return 0; }
	done
	return 1
}

# Unpack a tarball into its own directory, readable by the run user;
# prints the path of its pg_config.
unpack() {
	local tarball=$1 major=$2 dest=$tmp/$2 pg_config
	mkdir "$dest"
	tar -xJf "$tarball" -C "$dest"
	chmod -R go+rX "$dest"
	pg_config=$(find "$dest" -path '*/bin/pg_config' -type f | head -n 1)
	[ -n "$pg_config" ] || { echo "connmgr: no bin/pg_config in $tarball" >&2; return 1; }
	echo "$pg_config"
}

given=()      # installations named by the caller, if any
if [ $# -gt 0 ]; then given=("$@"); elif [ -n "${CONNMGR_PG_CONFIGS:-}" ]; then
	read -r -a given <<<"$CONNMGR_PG_CONFIGS"
fi
if [ ${#given[@]} -gt 0 ]; then
	configs=("${given[@]}")
	echo "connmgr: testing the installations given: ${configs[*]}"
	for pg_config in "${configs[@]}"; do
		[ -x "$pg_config" ] && add_pgtap "$pg_config"
	done
else
	for major in $SUPPORTED; do
		case $major in
		15)
			configs+=("/usr/lib/postgresql/15/bin/pg_config")
			echo "connmgr: PostgreSQL 15: Debian package postgresql-15"
			;;
		16)
			untested+=("PostgreSQL 16|not tested: supported, but no installation of it can be had on this machine")
			;;
		*)
			if tarball=$(find_tarball "$major"); then
				echo "connmgr: PostgreSQL $major: $tarball"
				pg_config=$(unpack "$tarball" "$major")
				add_pgtap "$pg_config"
				configs+=("$pg_config")
			else
				where=${CONNMGR_PG_TARBALLS:-$src/../shared/pg or /work/shared/pg}
				untested+=("PostgreSQL $major|NOT FOUND: no postgresql-$major.*-bookworm-amd64.tar.xz in $where")
			fi
			;;
		esac
	done
fi
not_tested=()
for line in "${untested[@]}"; do
	echo "connmgr: ${line%%|*}: ${line#*|}"
	not_tested+=(--not-tested "$line")
done

status=0
bash "$src/test/matrix.sh" "${not_tested[@]}" "${configs[@]}" || status=1

# The Debian package, built from the release tarball, installed and
# smoke-tested on a fresh cluster (PostgreSQL 15 only: the other releases
# here are not Debian packages).  Not for installations named by the caller.
if [ ${#given[@]} -eq 0 ]; then
	echo
	echo "connmgr: the Debian package (test/package.sh)"
	bash "$src/test/package.sh" || status=1
fi
echo
if [ $status -eq 0 ]; then echo "connmgr: all tests passed"; else echo "connmgr: TESTS FAILED"; fi
exit $status
