#!/usr/bin/env bash
# Run connmgr's whole test suite against each PostgreSQL installation given
# by its pg_config, one after another:
#
#     bash test/matrix.sh /usr/lib/postgresql/15/bin/pg_config /opt/pg17/bin/pg_config
#
# For each installation: copy the source tree to a scratch directory of its
# own (objects built for one release never meet another's, and the checkout
# stays clean), build there warning-free (WERROR=1), install into that
# installation, and run pg_regress ("make installcheck" without the TAP
# tests), the TAP tests (test/t/, "make installcheck" without pg_regress)
# and pgTAP ("make pgtapcheck").  Each part runs even if an earlier one
# failed; a failing part's diffs and logs are printed.  At the end one line
# per installation says passed or FAILED; the exit status is non-zero if
# any failed.
#
# It installs no packages: pg_prove, Perl's IPC::Run and pgTAP (in each
# installation's share/extension) must be there; test/run.sh sees to that.
# Works as root (the tests then run as the postgres OS user, which must be
# able to read and execute the installations) or as an ordinary user
# (installing through sudo where the installation is not writable).
# Ports: from CONNMGR_PORT_BASE (see test/lib.sh).
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

# --not-tested "NAME|WHY" (repeatable) adds a line for a release the
# caller could not test to the report.
names=()
results=()
untested=()
while [ $# -gt 0 ] && [ "$1" = --not-tested ]; do
	untested+=("$2")
	shift 2
done
if [ $# -eq 0 ]; then
	echo "usage: $0 [--not-tested 'NAME|WHY']... PG_CONFIG..." >&2
	exit 2
fi

# Print a failed part's evidence: pg_regress's diffs, and for each TAP test
# that prove reported as failed its log and the tail of its servers' logs.
show_failure() {
	local work=$1 part=$2 out=$3 t f
	case $part in
	regress)
		for f in "$work/regression.diffs" "$work/tmp_check_regress/log/postmaster.log"; do
			[ -f "$f" ] && { echo "=== $f"; tail -n 300 "$f"; }
		done
		;;
	tap)
		# prove's summary names each failed script: "test/t/010_limits.pl (Wstat: ...".
		# Of its log, what led to each failure, and how it ended.
		for t in $(sed -n 's|^test/t/\([^ ]*\)\.pl  *(Wstat.*|\1|p' "$out" | sort -u); do
			f=$work/tmp_check/log/regress_log_$t
			if [ -f "$f" ]; then
				echo "=== $f: before each failure"
				grep -B 30 -A 5 'not ok' "$f" | head -n 400
				echo "=== $f: its end"
				tail -n 40 "$f"
			fi
			for f in "$work/tmp_check/log/${t}"_*.log; do
				[ -f "$f" ] && { echo "=== $f"; tail -n 60 "$f"; }
			done
		done
		;;
	esac
}

# Run one part as the run user, its output shown as it comes and kept in $out.
run_part() {
	local out=$1
	shift
	as_run_user "$@" 2>&1 | tee "$out"
}

failed=0
i=0
for pg_config in "$@"; do
	i=$((i + 1))
	echo
	echo "################ connmgr matrix: $pg_config"
	# An absolute path: make runs in the scratch copy.
	case $pg_config in
	*/*) [ -e "$pg_config" ] && pg_config=$(cd "$(dirname "$pg_config")" && pwd)/$(basename "$pg_config") ;;
	*) pg_config=$(command -v "$pg_config" || echo "$pg_config") ;;
	esac
	if ! [ -x "$pg_config" ] || ! version=$("$pg_config" --version 2>/dev/null); then
		echo "connmgr: $pg_config is not a runnable pg_config"
		names+=("$pg_config")
		results+=("FAILED (no runnable pg_config there)")
		failed=1
		continue
	fi
	names+=("$version")
	echo "################ $version"
	# as_run_user puts these first in PATH and LD_LIBRARY_PATH: this
	# installation's programs and its own libpq (a relocated installation's
	# built-in library path may point nowhere, or somewhere else).
	PG_CONFIG=$pg_config
	PG_BINDIR=$("$pg_config" --bindir)
	PG_LIBDIR=$("$pg_config" --libdir)
	# Ports of their own for each installation (pg_regress's temporary
	# instance and the pgTAP cluster), in case runs overlap.
	ports="REGRESS_PORT=$(port_at $((2 + 2 * i)))"
	pgtap_port=$(port_at $((3 + 2 * i)))
	work=$(scratch_copy "$src")
	logs=$(mktemp -d "${TMPDIR:-/tmp}/connmgr-matrix.XXXXXX")
	chmod 755 "$logs"
	started=$SECONDS
	status=""

	# "make clean" first: the checkout may hold another release's objects.
	if ! as_run_user make -s -C "$work" PG_CONFIG="$pg_config" clean ||
		! as_run_user make -s -C "$work" PG_CONFIG="$pg_config" WERROR=1; then
		status="build FAILED"
	else
		# Install as ourselves where we may write, else as root.
		if [ -w "$("$pg_config" --pkglibdir)" ] && [ -w "$("$pg_config" --sharedir)/extension" ]; then
			make -s -C "$work" PG_CONFIG="$pg_config" install
		else
			as_root make -s -C "$work" PG_CONFIG="$pg_config" install
		fi || status="install FAILED"
	fi
	if [ -z "$status" ]; then
		parts=()
		run_part "$logs/regress" make -C "$work" PG_CONFIG="$pg_config" $ports TAP_TESTS= installcheck &&
			parts+=("regress passed") ||
			{ parts+=("regress FAILED"); show_failure "$work" regress "$logs/regress"; }
		run_part "$logs/tap" make -C "$work" PG_CONFIG="$pg_config" $ports REGRESS= installcheck &&
			parts+=("TAP passed") ||
			{ parts+=("TAP FAILED"); show_failure "$work" tap "$logs/tap"; }
		run_part "$logs/pgtap" env PGTAP_PORT=$pgtap_port make -C "$work" PG_CONFIG="$pg_config" pgtapcheck &&
			parts+=("pgTAP passed") ||
			parts+=("pgTAP FAILED")
		status=$(IFS=,; echo "${parts[*]}" | sed 's/,/, /g')
	fi
	elapsed=$((SECONDS - started))
	case $status in
	*FAILED*) results+=("FAILED ($status; ${elapsed}s)"); failed=1 ;;
	*) results+=("passed ($status; ${elapsed}s)") ;;
	esac
	echo "################ $version: ${results[-1]}"
	if [ "${CONNMGR_KEEP_SCRATCH:-0}" = 1 ]; then
		echo "connmgr: kept $work (build and test results) and $logs"
	else
		rm -rf "$work" "$logs"
	fi
done

echo
for line in "${untested[@]}"; do
	names+=("${line%%|*}")
	results+=("${line#*|}")
done
echo "================ connmgr test matrix ================"
width=0
for name in "${names[@]}"; do [ ${#name} -gt $width ] && width=${#name}; done
for n in "${!names[@]}"; do
	printf '%-*s  %s\n' $width "${names[$n]}" "${results[$n]}"
done
if [ $failed -ne 0 ]; then
	echo "connmgr: TESTS FAILED"
else
	echo "connmgr: all tests passed on every installation"
fi
exit $failed
