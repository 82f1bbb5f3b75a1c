#!/usr/bin/env bash
# Run connmgr's whole test suite against each PostgreSQL installation given
# by its pg_config, one after another:
#
#     bash test/matrix.sh [--parts LIST] [--report FILE] PG_CONFIG...
#     bash test/matrix.sh /usr/lib/postgresql/15/bin/pg_config /opt/pg17/bin/pg_config
#
# For each installation: copy the source tree to a scratch directory of its
# own (objects built for one release never meet another's, and the checkout
# stays clean), build there warning-free (WERROR=1), install into that
# installation, and run pg_regress ("make installcheck" without the TAP
# tests), the TAP tests (test/t/, "make installcheck" without pg_regress)
# and pgTAP ("make pgtapcheck").  --parts runs only some of them (regress,
# tap, pgtap; commas or spaces).  Each part runs even if an earlier one
# failed; a failing part's diffs and logs are printed.  At the end one line
# per installation says passed or FAILED, a line for each supported
# release not given says so, and a closing line names what passed; the
# exit status is non-zero if any failed.  With --report FILE, those lines
# are appended to FILE for test/run.sh's verdict instead (print_verdict in
# test/lib.sh says how).
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

parts=$SUITE_PARTS
report=""
while [ $# -gt 0 ]; do
	case $1 in
	--parts) parts=${2//,/ }; shift 2 ;;
	--report) report=$2; shift 2 ;;
	--) shift; break ;;
	-*) echo "$0: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
check_parts "$parts" "$SUITE_PARTS" || exit 2
if [ $# -eq 0 ] || [ -z "$parts" ]; then
	echo "usage: $0 [--parts regress,tap,pgtap] [--report FILE] PG_CONFIG..." >&2
	exit 2
fi
only=$(parts_note "$parts")

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

# Run one part as the run user, its output shown as it comes and kept in
# $out, without make's "+++ tap install-check in . +++" banners.
run_part() {
	local out=$1
	shift
	as_run_user "$@" 2>&1 | sed -u '/^\(# \)\?+++ .* +++$/d' | tee "$out"
}

# The report's lines (see print_verdict in test/lib.sh).
if [ -z "$report" ]; then
	report=$(mktemp "${TMPDIR:-/tmp}/connmgr-report.XXXXXX")
	print=1
else
	print=0
fi
report() { echo "release|$1|$2|$3" >>"$report"; }

# The scratch copy and logs of the installation under test, removed when
# it is done, and also when the run is interrupted.
work=""
logs=""
remove_scratch() {
	if [ "${CONNMGR_KEEP_SCRATCH:-0}" = 1 ]; then
		[ -z "$work" ] || echo "connmgr: kept $work (build and test results) and $logs"
	else
		rm -rf "$work" "$logs"
	fi
	work=""
	logs=""
}
trap 'stop_step; remove_scratch; [ $print -eq 0 ] || rm -f "$report"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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
		report "?" "$pg_config" "FAILED (no runnable pg_config there)"
		failed=1
		continue
	fi
	major=$(pg_major "$pg_config")
	echo "################ $version"
	# as_run_user puts these first in PATH and LD_LIBRARY_PATH: this
	# installation's programs and its own libpq (a relocated installation's
	# built-in library path may point nowhere, or somewhere else).
	PG_CONFIG=$pg_config
	PG_BINDIR=$("$pg_config" --bindir)
	PG_LIBDIR=$("$pg_config" --libdir)
	# Ports of their own for each installation (pg_regress's temporary
	# instance and the pgTAP cluster), in case runs overlap.
	regress_port=$(port_at $((2 + 2 * i)))
	pgtap_port=$(port_at $((3 + 2 * i)))
	work=$(scratch_copy "$src")
	logs=$(mktemp -d "${TMPDIR:-/tmp}/connmgr-matrix.XXXXXX")
	chmod 755 "$logs"
	started=$SECONDS
	status=""
	mk=(make -s -C "$work" PG_CONFIG="$pg_config")

	# "make clean" first: the checkout may hold another release's objects.
	if ! as_run_user "${mk[@]}" clean || ! as_run_user "${mk[@]}" WERROR=1; then
		status="build FAILED"
	else
		# Install as ourselves where we may write, else as root.
		if [ -w "$("$pg_config" --pkglibdir)" ] && [ -w "$("$pg_config" --sharedir)/extension" ]; then
			"${mk[@]}" install
		else
			as_root "${mk[@]}" install
		fi || status="install FAILED"
	fi
	if [ -z "$status" ]; then
		done_parts=()
		for part in $parts; do
			case $part in
			regress)
				run_step run_part "$logs/regress" "${mk[@]}" REGRESS_PORT="$regress_port" TAP_TESTS= installcheck &&
					done_parts+=("regress passed") ||
					{ done_parts+=("regress FAILED"); show_failure "$work" regress "$logs/regress"; }
				;;
			tap)
				run_step run_part "$logs/tap" "${mk[@]}" REGRESS= installcheck &&
					done_parts+=("TAP passed") ||
					{ done_parts+=("TAP FAILED"); show_failure "$work" tap "$logs/tap"; }
				;;
			pgtap)
				run_step run_part "$logs/pgtap" "${mk[@]}" PGTAP_PORT="$pgtap_port" pgtapcheck &&
					done_parts+=("pgTAP passed") ||
					done_parts+=("pgTAP FAILED")
				;;
			esac
		done
		status=$(comma_list "${done_parts[@]}")
	fi
	elapsed=$((SECONDS - started))
	case $status in
	*FAILED*) result="FAILED ($status; ${elapsed}s)"; failed=1 ;;
	*) result="passed ($status; ${elapsed}s)" ;;
	esac
	report "${major:-?}" "$version" "$result"
	echo "################ $version: $result"
	remove_scratch
done

if [ $print -eq 1 ]; then
	print_verdict "$report" "" "$only" || failed=1
fi
exit $failed
