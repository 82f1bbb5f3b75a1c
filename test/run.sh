#!/usr/bin/env bash
# Run connmgr's whole test suite against real PostgreSQL servers that the
# run starts itself: pg_regress (sql/, expected/), the TAP tests (test/t/)
# and the pgTAP tests (test/pgtap/), on each supported PostgreSQL release
# found, one after another (test/matrix.sh builds with -Werror and installs
# into each); then the Debian package's build, install and smoke test
# (test/package.sh).  Installs missing Debian packages first.
# Works as root (servers and tests then run as the postgres OS user).
#
#     bash test/run.sh [--load N] [--parts LIST] [--require LIST] [PG_CONFIG...]
#
# The installations: the pg_config paths given as arguments, else those in
# CONNMGR_PG_CONFIGS (separated by spaces), else for each supported release
# Debian's installation of it (/usr/lib/postgresql/NN, with its server
# development package) or else the newest postgresql-NN.*-bookworm-amd64.tar.xz
# in CONNMGR_PG_TARBALLS, or by default in ../shared/pg beside the
# checkout, unpacked into a temporary directory.  It says which it uses.
#
#   --load N       N CPU-bound processes run beside the suite, started after
#                  the set-up and stopped with the run whatever happens
#                  (CONNMGR_LOAD=N); the load average is printed at the
#                  start and the end
#   --parts LIST   only these of regress, tap, pgtap, package (commas or
#                  spaces; CONNMGR_PARTS); by default all of them, and all
#                  but package when installations are given
#   --require LIST these releases must be tested: one not found is a
#                  failure (CONNMGR_REQUIRE), e.g. --require 15,17,18
#
# The final lines name each release tested with its result, each supported
# release not tested and why, and the package's result; the closing line
# says what passed, what failed and what was not tested, e.g.
#     connmgr: passed on 15 and the Debian package; not tested: 16, 17, 18
# It exits non-zero if anything failed, a required release was not tested,
# or nothing was tested.  Ports: CONNMGR_PORT_BASE (test/lib.sh).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

usage() {
	echo "usage: bash test/run.sh [--load N] [--parts LIST] [--require LIST] [PG_CONFIG...]"
	echo "(the comment at the top of test/run.sh and the README's \"Tests\" say more)"
}

load=${CONNMGR_LOAD:-0}
parts=${CONNMGR_PARTS:-}
require=${CONNMGR_REQUIRE:-}
while [ $# -gt 0 ]; do
	case $1 in
	--load=*) load=${1#*=} ;;
	--parts=*) parts=${1#*=} ;;
	--require=*) require=${1#*=} ;;
	--load | --parts | --require)
		[ $# -ge 2 ] || { echo "connmgr: $1 needs a value" >&2; exit 2; }
		case $1 in --load) load=$2 ;; --parts) parts=$2 ;; --require) require=$2 ;; esac
		shift
		;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) echo "connmgr: unknown option $1" >&2; usage >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
case $load in
'' | *[!0-9]*) echo "connmgr: --load takes a number of processes, not '$load'" >&2; exit 2 ;;
esac
require=${require//,/ }

# The installations given, and where they come from.
given=()
if [ $# -gt 0 ]; then
	given=("$@")
	given_by="as arguments"
elif [ -n "${CONNMGR_PG_CONFIGS:-}" ]; then
	read -r -a given <<<"$CONNMGR_PG_CONFIGS"
	given_by="in CONNMGR_PG_CONFIGS"
fi
# The package is Debian's release, not the caller's installations.
if [ -z "$parts" ]; then
	parts="$SUITE_PARTS package"
	[ ${#given[@]} -eq 0 ] || parts=$SUITE_PARTS
fi
parts=${parts//,/ }
check_parts "$parts" "$SUITE_PARTS package" || exit 2
suite_parts=""
for part in $parts; do [ "$part" = package ] || suite_parts="$suite_parts $part"; done
suite_parts=${suite_parts# }
package=0
case " $parts " in *" package "*) package=1 ;; esac

ensure_packages $CONNMGR_TEST_PACKAGES

tmp=$(mktemp -d "${TMPDIR:-/tmp}/connmgr-pg.XXXXXX")
chmod 755 "$tmp"
report=$tmp/report
: >"$report"
load_pid=""   # the leader of the CPU-bound processes' process group

# --load: N endless CPU-bound loops in a process group of their own, which
# stop_load ends as a whole.  Each loop also ends by itself once this run
# is gone, so none outlives it even when the run is killed with SIGKILL.
start_load() {
	local n=$1
	echo "connmgr: load: starting $n CPU-bound processes beside the suite ($(nproc) CPUs)"
	echo "connmgr: load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
	setsid bash -c '
		for _ in $(seq "$1"); do
			while kill -0 "$2" 2>/dev/null; do
				for ((i = 0; i < 200000; i++)); do :; done
			done &
		done
		wait' connmgr-load "$n" $$ </dev/null >/dev/null 2>&1 &
	load_pid=$!
}

stop_load() {
	[ -n "$load_pid" ] || return 0
	echo "connmgr: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	kill -TERM -- "-$load_pid" 2>/dev/null || true
	wait "$load_pid" 2>/dev/null || true
	echo "connmgr: load: stopped the $load processes"
	load_pid=""
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	stop_step
	stop_load
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT
trap 'echo "connmgr: interrupted" >&2; exit 130' INT
trap 'echo "connmgr: terminated" >&2; exit 143' TERM
trap 'exit 129' HUP

# pgTAP into an installation that lacks it (as root if need be), from
# whichever Debian postgresql-NN-pgtap package is installed.
add_pgtap() {
	local ext pgtap_sql
	ext=$("$1" --sharedir)/extension
	[ -f "$ext/pgtap.control" ] && return 0
	pgtap_sql=$(ls -v /usr/share/postgresql/*/extension/pgtap.control 2>/dev/null | tail -n 1)
	[ -n "$pgtap_sql" ] || { echo "connmgr: no Debian pgTAP package to take pgTAP from" >&2; return 1; }
	pgtap_sql=$(dirname "$pgtap_sql")
	echo "connmgr: installing pgTAP's SQL files from $pgtap_sql into $ext"
	if [ -w "$ext" ]; then
		cp "$pgtap_sql"/pgtap* "$ext/"
	else
		as_root cp "$pgtap_sql"/pgtap* "$ext/"
	fi
}

# Where tarballs are looked for, and how the output names that place.
if [ -n "${CONNMGR_PG_TARBALLS:-}" ]; then
	tarballs=$CONNMGR_PG_TARBALLS
	tarballs_from="CONNMGR_PG_TARBALLS ($tarballs)"
else
	tarballs=$src/../shared/pg
	tarballs_from="../shared/pg beside the checkout ($(realpath -ms "$tarballs"))"
fi

# The newest tarball of release $1.
find_tarball() {
	ls "$tarballs"/postgresql-"$1".*-bookworm-amd64.tar.xz 2>/dev/null | sort -V | tail -n 1
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

# Debian's installation of release $1, if it has what building needs.
debian_pg_config() {
	local pg_config=/usr/lib/postgresql/$1/bin/pg_config
	[ -x "$pg_config" ] && [ -f "$("$pg_config" --pgxs 2>/dev/null)" ] && echo "$pg_config"
}

untested() { echo "untested|$1|PostgreSQL $1|$2" >>"$report"; }

configs=()    # the pg_config of each installation to test
if [ -z "$suite_parts" ]; then
	for major in $SUPPORTED_RELEASES; do untested "$major" "--parts: only the Debian package"; done
elif [ ${#given[@]} -gt 0 ]; then
	configs=("${given[@]}")
	echo "connmgr: the installations given $given_by: ${configs[*]}"
else
	echo "connmgr: installations: Debian's in /usr/lib/postgresql, else tarballs in $tarballs_from"
	for major in $SUPPORTED_RELEASES; do
		if pg_config=$(debian_pg_config "$major"); then
			echo "connmgr: PostgreSQL $major: Debian's installation, $(dirname "$(dirname "$pg_config")")"
			configs+=("$pg_config")
		elif tarball=$(find_tarball "$major") && [ -n "$tarball" ]; then
			echo "connmgr: PostgreSQL $major: $(basename "$tarball") from $tarballs_from"
			pg_config=$(unpack "$tarball" "$major")
			configs+=("$pg_config")
		else
			why="no Debian installation of it, and no postgresql-$major.*-bookworm-amd64.tar.xz in $tarballs_from"
			[ -d "$tarballs" ] || why="$why, which does not exist"
			echo "connmgr: PostgreSQL $major: not found: $why"
			untested "$major" "not found: $why"
		fi
	done
fi
case " $suite_parts " in
*" pgtap "*)
	for pg_config in "${configs[@]}"; do
		if [ -x "$pg_config" ]; then add_pgtap "$pg_config"; fi
	done
	;;
esac

if [ "$load" -gt 0 ]; then start_load "$load"; fi

status=0
if [ ${#configs[@]} -gt 0 ]; then
	run_step bash "$src/test/matrix.sh" --parts "$suite_parts" --report "$report" "${configs[@]}" ||
		status=1
fi

# The Debian package, built from the release tarball, installed and
# smoke-tested on a fresh cluster, for Debian's own PostgreSQL.
if [ $package -eq 1 ]; then
	echo
	echo "################ connmgr: the Debian package (test/package.sh)"
	started=$SECONDS
	name="Debian package postgresql-$(pg_major "$PG_CONFIG")-connmgr"
	if run_step bash "$src/test/package.sh"; then
		result="passed (built from the release tarball, installed, smoke-tested, removed"
	else
		result="FAILED (see \"connmgr package:\" above"
		status=1
	fi
	echo "package|$(pg_major "$PG_CONFIG")|$name|$result; $((SECONDS - started))s)" >>"$report"
fi

stop_load
echo "connmgr: the run took $((SECONDS / 60)) min $((SECONDS % 60)) s"
print_verdict "$report" "$require" "$(parts_note "$suite_parts")" || status=1
exit $status
