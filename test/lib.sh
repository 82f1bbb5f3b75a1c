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
			[ $said -eq 1 ] || echo "connmgr: apt-get $1: waiting for another apt-get or dpkg to finish"
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
