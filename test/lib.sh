# Shared by the test commands (run.sh, sandbox.sh, matrix.sh, package.sh):
# install what connmgr needs, build and install it, start a throwaway
# cluster, and run commands as an unprivileged OS user (PostgreSQL refuses
# to run as root).  Source it; it defines functions only.

# To build connmgr and run a server with it (the sandbox).
CONNMGR_PACKAGES="make gcc postgresql-15 postgresql-server-dev-15 libkrb5-dev"
# And to test it: pgTAP and pg_prove, the TAP harness, a client library,
# the Prometheus exporter and promtool, and what building the Debian
# package takes (test/package.sh), so that one apt-get update does.
CONNMGR_PACKAGES_DEB="git perl dpkg-dev debhelper postgresql-server-dev-all"
CONNMGR_TEST_PACKAGES="$CONNMGR_PACKAGES postgresql-15-pgtap
libtap-parser-sourcehandler-pgtap-perl libipc-run-perl python3-psycopg2
prometheus prometheus-postgres-exporter $CONNMGR_PACKAGES_DEB"

# Run a command as root: directly when we are root, else through sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		echo "connmgr: need root (or sudo) to run: $*" >&2
		return 1
	fi
}

# apt-get as root, non-interactive and quiet: its output is shown only when
# it fails.  When another apt-get or dpkg holds a lock, it waits for it, up to
# CONNMGR_APT_WAIT seconds (default 600), instead of failing: for dpkg's lock
# through DPkg::Lock::Timeout, and for the package lists' lock ("apt-get
# update", which that option does not cover in Debian 12's apt) by trying
# again every 5 seconds.
apt_get() {
	local wait=${CONNMGR_APT_WAIT:-600} start=$SECONDS out said=0
	out=$(mktemp "${TMPDIR:-/tmp}/connmgr-apt.XXXXXX")
	until as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -qq \
		-o DPkg::Lock::Timeout="$wait" "$@" >"$out" 2>&1; do
		if grep -q 'Could not get lock' "$out" && [ $((SECONDS - start)) -lt "$wait" ]; then
			[ $said -eq 1 ] || echo "connmgr: apt-get $*: waiting for another apt-get or dpkg to finish"
			said=1
			sleep 5
			continue
		fi
		echo "connmgr: apt-get $* failed:" >&2
		cat "$out" >&2
		rm -f "$out"
		return 1
	done
	rm -f "$out"
}

# Install those of the given Debian packages that are missing, with one
# apt-get update first.
# Without recommended packages: prometheus would bring node-exporter, a
# daemon the tests do not need.
ensure_packages() {
	local missing=""
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" ||
			missing="$missing $pkg"
	done
	[ -z "$missing" ] && return 0
	echo "connmgr: installing$missing"
	apt_get update
	apt_get install --no-install-recommends $missing
	# PostgreSQL may have come with them.
	find_pg_config
}

# The PostgreSQL to build against and run when the caller names none in
# PG_CONFIG: pg_config on PATH (Debian's picks its newest server
# development package), else the newest Debian installation.  Sets
# PG_CONFIG and PG_BINDIR, empty when there is none yet.
connmgr_pg_config_given=${PG_CONFIG:+1}
find_pg_config() {
	if [ -z "$connmgr_pg_config_given" ]; then
		PG_CONFIG=$(command -v pg_config ||
			{ ls -v /usr/lib/postgresql/*/bin/pg_config 2>/dev/null | tail -n 1; } || true)
	fi
	PG_BINDIR=""
	if [ -n "${PG_CONFIG:-}" ]; then PG_BINDIR=$("$PG_CONFIG" --bindir 2>/dev/null || true); fi
	return 0
}
find_pg_config

# The major release of an installation, from its pg_config ("PostgreSQL
# 15.20 (Debian ...)" is 15); empty when it says nothing of the kind.
pg_major() {
	"$1" --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p'
}

# The ports of the servers the scripts start all lie in a range that
# starts at CONNMGR_PORT_BASE (default 58430), one offset per server (the
# Makefile's defaults for "make installcheck" and "make pgtapcheck" are
# base + 2 and base + 3):
#   sandbox      base + 0
#   package      base + 1
#   matrix.sh    base + 2 + 2n (pg_regress) and base + 3 + 2n (pgTAP) for
#                its n-th installation, n = 1, 2, ...
CONNMGR_PORT_BASE=${CONNMGR_PORT_BASE:-58430}
case $CONNMGR_PORT_BASE in
'' | *[!0-9]*)
	echo "connmgr: CONNMGR_PORT_BASE must be a port number, not '$CONNMGR_PORT_BASE'" >&2
	exit 2
	;;
esac
port_at() { echo $((CONNMGR_PORT_BASE + $1)); }

# Build warning-free (-Werror) and install into the PostgreSQL tree.
build_and_install() {
	local src=$1
	make -s -C "$src" PG_CONFIG="$PG_CONFIG" WERROR=1
	as_root make -s -C "$src" PG_CONFIG="$PG_CONFIG" install
}

# The OS user servers and tests run as: ourselves, or postgres under root.
run_user() {
	if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# With PG_LIBDIR set (test/matrix.sh), that library directory comes first:
# a relocated installation's programs then find their own libpq.
as_run_user() {
	local env=(env PATH="$PG_BINDIR:$PATH")
	[ -n "${PG_LIBDIR:-}" ] &&
		env+=(LD_LIBRARY_PATH="$PG_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "${env[@]}" "$@"
	else
		"${env[@]}" "$@"
	fi
}

# A scratch copy of the source tree that the run user can write to, so that
# test results never land in (or need write access to) the checkout.
scratch_copy() {
	local src=$1 dest
	dest=$(mktemp -d "${TMPDIR:-/tmp}/connmgr.XXXXXX")
	tar -C "$src" --exclude=.git -cf - . | tar -C "$dest" -xf -
	[ "$(id -u)" -eq 0 ] && chown -R postgres: "$dest"
	echo "$dest"
}

# Create and start a throwaway cluster in $1/data with connmgr preloaded,
# listening only on a Unix socket in $1, on port $2; any further arguments
# are more postgresql.conf lines.  Its log is $1/server.log.
start_connmgr_cluster() {
	local dir=$1 port=$2
	shift 2
	as_run_user initdb -D "$dir/data" -U postgres -A trust >/dev/null || return 1
	{
		echo "shared_preload_libraries = 'connmgr'"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "port = $port"
		for line in "$@"; do echo "$line"; done
	} >>"$dir/data/postgresql.conf"
	as_run_user pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}

# A long step (a part of the suite, or test/matrix.sh or test/package.sh)
# runs in the background while the script waits for it: bash runs a trap
# only once its foreground command has ended, so this way a signal to the
# script is handled at once, and its trap can stop_step.
step=""
run_step() {
	local rc=0
	"$@" &
	step=$!
	wait "$step" || rc=$?
	step=""
	return $rc
}

# The process $1 and all its descendants.
process_tree() {
	local child
	for child in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
		process_tree "$child"
	done
	echo "$1"
}

# End the running step and everything it started with SIGTERM, and wait
# (up to 30 s) until they are all gone, so that nothing still uses what the
# caller removes next.  On SIGTERM the TAP harness of PostgreSQL 17 and
# later stops its servers; servers it leaves behind stop by themselves
# within a minute once their data directory is removed.
stop_step() {
	local pids pid alive
	[ -n "$step" ] || return 0
	pids=$(process_tree "$step")
	kill -TERM $pids 2>/dev/null || true
	for _ in $(seq 300); do
		alive=""
		for pid in $pids; do
			if kill -0 "$pid" 2>/dev/null; then alive="$alive $pid"; fi
		done
		[ -n "$alive" ] || break
		sleep 0.1
	done
	[ -z "$alive" ] || echo "connmgr: still running after SIGTERM:$alive" >&2
	step=""
}

# The releases connmgr supports: the verdict names each of them.
SUPPORTED_RELEASES="15 16 17 18"

# The parts of the suite that test/matrix.sh runs on each release, in order.
SUITE_PARTS="regress tap pgtap"

# Whether each of the parts $1 is one of $2; says which is not.
check_parts() {
	local part
	for part in $1; do
		case " $2 " in
		*" $part "*) ;;
		*)
			echo "connmgr: --parts: there is no part '$part' (there are: $2)" >&2
			return 1
			;;
		esac
	done
}

# "" when the suite parts $1 are all of them, else e.g. "regress, TAP only".
parts_note() {
	local part names=() ran=""
	for part in $SUITE_PARTS; do
		case " $1 " in *" $part "*) ;; *) continue ;; esac
		ran="$ran $part"
		case $part in tap) names+=(TAP) ;; pgtap) names+=(pgTAP) ;; *) names+=("$part") ;; esac
	done
	[ "$ran" = " $SUITE_PARTS" ] || echo "$(comma_list "${names[@]}") only"
}

# "a, b, c" of the arguments.
comma_list() {
	local IFS=,
	echo "$*" | sed 's/,/, /g'
}

# The verdict.  The report file $1 has one line per thing tested or not,
# "KIND|RELEASE|NAME|RESULT", KIND being
#   release   one installation's suite; RESULT starts with "passed" or "FAILED"
#   package   the Debian package's test; the same
#   untested  a release not tested; RESULT says why
# A supported release with no line was not among the installations given.
# $2 lists the releases required (spaces or commas): one not tested is a
# failure.  $3, when not all parts ran, says which did (e.g. "TAP only").
# Prints a line for each, supported releases first, and a closing line that
# names what passed, what failed and what was not tested.  Returns non-zero
# if anything failed, a required release was not tested, or nothing was.
print_verdict() {
	local file=$1 required=" ${2//,/ } " only=${3:+ ($3)}
	local kind rel name result rows=() width=0 row
	local -A state=()          # release => passed or FAILED
	local tested=() untested=() missing=() failed=() passed=() pkg=""

	# The rows: each supported release's in turn, then the others, the
	# package last.
	for rel in $SUPPORTED_RELEASES; do
		grep -q "^[a-z]*|$rel|" "$file" ||
			echo "untested|$rel|PostgreSQL $rel|not among the installations given" >>"$file"
	done
	for rel in $SUPPORTED_RELEASES ""; do
		while IFS='|' read -r kind row name result; do
			[ -z "$kind" ] || [ "$kind" = package ] && continue
			if [ -n "$rel" ]; then
				[ "$row" = "$rel" ] || continue
			else
				[[ " $SUPPORTED_RELEASES " == *" $row "* ]] && continue
			fi
			rows+=("$kind|$row|$name|$result")
		done <"$file"
	done
	while IFS= read -r row; do rows+=("$row"); done < <(grep '^package|' "$file")

	echo
	echo "================ connmgr: what was tested ================"
	for row in "${rows[@]}"; do
		name=${row#*|*|}
		name=${name%%|*}
		[ ${#name} -gt $width ] && width=${#name}
	done
	for row in "${rows[@]}"; do
		IFS='|' read -r kind rel name result <<<"$row"
		case $kind in
		untested)
			untested+=("$rel")
			if [[ $required == *" $rel "* ]]; then
				missing+=("$rel")
				result="NOT TESTED, but required: $result"
			else
				result="not tested: $result"
			fi
			;;
		release)
			[ "$rel" = "?" ] && rel=$name
			[ -n "${state[$rel]:-}" ] || tested+=("$rel")
			case $result in
			passed*) [ "${state[$rel]:-}" = FAILED ] || state[$rel]=passed ;;
			*) state[$rel]=FAILED ;;
			esac
			;;
		package) case $result in passed*) pkg=${pkg:-passed} ;; *) pkg=FAILED ;; esac ;;
		esac
		printf '%-*s  %s\n' $width "$name" "$result"
	done
	for rel in "${tested[@]}"; do
		if [ "${state[$rel]}" = passed ]; then passed+=("$rel"); else failed+=("$rel"); fi
	done
	# A required release that is not even supported.
	for rel in $required; do
		[ -n "${state[$rel]:-}" ] || [[ " ${missing[*]} " == *" $rel "* ]] || missing+=("$rel")
	done

	# What failed first, the closing line starting with FAILED; then what
	# passed; then what was not tested.
	local say=() status=0 pkg_passed=""
	[ "$pkg" = passed ] && pkg_passed=1
	if [ ${#failed[@]} -gt 0 ]; then
		say+=("FAILED on $(comma_list "${failed[@]}")$only")
		[ "$pkg" = FAILED ] && say[0]+=" and the Debian package"
	elif [ "$pkg" = FAILED ]; then
		say+=("FAILED: the Debian package")
	fi
	if [ ${#missing[@]} -gt 0 ]; then
		say+=("$(comma_list "${missing[@]}") required but not tested")
	fi
	if [ ${#tested[@]} -eq 0 ] && [ -z "$pkg" ]; then say+=("nothing was tested"); fi
	if [ ${#say[@]} -gt 0 ]; then
		status=1
		[[ ${say[0]} == FAILED* ]] || say[0]="FAILED: ${say[0]}"
	fi
	if [ ${#passed[@]} -gt 0 ]; then
		say+=("passed on $(comma_list "${passed[@]}")$only${pkg_passed:+ and the Debian package}")
	elif [ "$pkg" = passed ]; then
		say+=("passed: the Debian package")
	fi
	if [ ${#untested[@]} -gt 0 ]; then say+=("not tested: $(comma_list "${untested[@]}")"); fi
	local IFS=';'
	echo "connmgr: ${say[*]}" | sed 's/;/; /g'
	return $status
}
