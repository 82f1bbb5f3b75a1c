#!/usr/bin/env bash
# Build connmgr's Debian package as a release would be built, install it,
# smoke-test it on a fresh throwaway cluster, and remove it again.
#
# The package is built from the release tarball ("make dist" in a clone of
# HEAD), so a tarball that lacks a file the build or the extension needs
# fails here.  Uncommitted changes are therefore not tested.  Run from an
# unpacked tarball (no git), it builds from a copy of the tree instead.
#
# postgresql-NN-connmgr installs the same files as "make install"; those
# found before the install are saved and put back once the package is
# purged, so the machine is left as it was.  The cluster listens on a Unix
# socket in a temporary directory only; no existing cluster is touched.
# Works as root (the cluster then runs as the postgres OS user) and as a
# user with sudo.  Exits non-zero on any failure.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

port=$(port_at 1)
say() { echo "connmgr package: $*"; }
fail() {
	echo "connmgr package: $*" >&2
	exit 1
}

# Everything the script makes or changes, undone by cleanup on any exit.
work=""
package=""
installed=0
saved=""
holder=""
db=""

remove_package() {
	[ $installed -eq 1 ] || return 0
	apt_get purge "$package" || return 1
	installed=0
	# What "make install" had put there before, back as it was.
	if [ -n "$saved" ]; then
		as_root tar -C / -xpf "$saved" || return 1
		as_root rm -f "$saved"
		saved=""
	fi
}

cleanup() {
	local rc=$?
	trap - EXIT
	if [ -n "$holder" ]; then kill "$holder" 2>/dev/null || true; fi
	if [ -n "$db" ] && [ -f "$db/data/postmaster.pid" ]; then
		as_run_user pg_ctl -D "$db/data" -m immediate stop >/dev/null 2>&1 || true
	fi
	if [ $rc -ne 0 ] && [ -n "$db" ] && [ -f "$db/server.log" ]; then
		echo "=== server log (last 30 lines)"
		tail -n 30 "$db/server.log"
	fi
	remove_package || {
		echo "connmgr package: could not remove $package again" >&2
		rc=1
	}
	if [ -n "$work" ]; then as_root rm -rf "$work"; fi
	if [ $rc -eq 0 ]; then
		echo "connmgr package: smoke test passed"
	else
		echo "connmgr package: smoke test FAILED"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ensure_packages $CONNMGR_PACKAGES $CONNMGR_PACKAGES_DEB

# The release the package is for: Debian's PostgreSQL (PG_CONFIG, else
# the newest server development package).
[ -n "$PG_CONFIG" ] || fail "no pg_config: install postgresql-server-dev-NN"
PG_MAJOR=$(pg_major "$PG_CONFIG")
[ -n "$PG_MAJOR" ] || fail "$PG_CONFIG does not say which PostgreSQL it is"
package=postgresql-$PG_MAJOR-connmgr
say "for PostgreSQL $PG_MAJOR ($PG_CONFIG)"

case $(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true) in
	"" | not-installed) ;;
	*) fail "$package is on this machine already; remove it first (dpkg --purge $package)" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/connmgr-package.XXXXXX")
chmod 755 "$work"
cd "$work"
db="$work/pg"

# 1. The source: the release tarball of HEAD, when this is a git checkout.
meta() { perl -MJSON::PP -0777 -ne "print decode_json(\$_)->$1" "$2"; }
mkdir "$work/build"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	head=$(git -C "$src" rev-parse HEAD)
	say "building from the release tarball of HEAD ${head:0:12}"
	git -C "$src" diff --quiet HEAD ||
		say "note: uncommitted changes are not in it"
	git clone -q "$src" "$work/clone"
	git -C "$work/clone" checkout -q --detach "$head"
	make -s -C "$work/clone" dist >/dev/null
	version=$(meta '{version}' "$work/clone/META.json")
	tarball="$work/clone/connmgr-$version.tar.gz"
	[ -f "$tarball" ] || fail "make dist made no connmgr-$version.tar.gz"
	[ -s "$work/clone/connmgr-$version.zip" ] || fail "make dist made no connmgr-$version.zip"
	tar -C "$work/build" -xzf "$tarball"
	top=$(ls -A "$work/build")
	[ "$top" = "connmgr-$version" ] ||
		fail "the tarball should hold only connmgr-$version/, holds: $top"
	tree="$work/build/connmgr-$version"
	for dev in .ci bench .git; do
		[ ! -e "$tree/$dev" ] || fail "the tarball holds $dev, which export-ignore keeps out"
	done
else
	version=$(meta '{version}' "$src/META.json")
	say "not a git checkout: building from a copy of the tree"
	tree="$work/build/connmgr-$version"
	mkdir "$tree"
	tar -C "$src" -cf - . | tar -C "$tree" -xf -
fi

# One release version everywhere: META.json (both), debian/changelog.
deb_version=$(dpkg-parsechangelog -l "$tree/debian/changelog" -S Version)
[ "$deb_version" = "$version" ] ||
	fail "META.json says $version, debian/changelog $deb_version"
[ "$(meta '{provides}{connmgr}{version}' "$tree/META.json")" = "$version" ] ||
	fail "META.json: provides.connmgr.version is not $version"
[ -f "$tree/$(meta '{provides}{connmgr}{file}' "$tree/META.json")" ] ||
	fail "META.json: provides.connmgr.file is not in the tree"
[ -f "$tree/LICENSE" ] || fail "no LICENSE"

# 2. The package, with PostgreSQL's Debian tooling.
say "dpkg-buildpackage -us -uc -b (log: build.log)"
(cd "$tree" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 || {
	tail -n 40 "$work/build.log"
	fail "dpkg-buildpackage failed"
}
deb="$work/build/${package}_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || fail "no $(basename "$deb") was built"
depends=$(dpkg-deb -f "$deb" Depends)
echo "$depends" | grep -Eq "(^|, )postgresql-$PG_MAJOR( |,|$)" ||
	fail "$package does not depend on postgresql-$PG_MAJOR: Depends: $depends"
pkglibdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
files=$(dpkg-deb --fsys-tarfile "$deb" | tar -tf - | sed -n 's|^\./|/|; /[^/]$/p')
for f in "$pkglibdir/connmgr.so" "$sharedir/extension/connmgr.control" \
	"$sharedir/extension/connmgr--1.0.sql"; do
	echo "$files" | grep -qx "$f" || fail "$package lacks $f"
done

# 3. Install it; save first what "make install" put in its place.
existing=""
for f in $files; do
	if [ -e "$f" ]; then existing="$existing ${f#/}"; fi
done
if [ -n "$existing" ]; then
	saved="$work/saved.tar"
	as_root tar -C / -cf "$saved" $existing
fi
installed=1
say "installing $(basename "$deb")"
apt_get install --no-install-recommends "$deb"
[ "$(dpkg-query -W -f='${Version}' "$package")" = "$version" ] ||
	fail "$package $version is not installed"
dpkg -S "$pkglibdir/connmgr.so" | grep -q "^$package:" ||
	fail "$pkglibdir/connmgr.so does not come from $package"

# 4. A fresh cluster with the packaged library preloaded.
mkdir "$db"
[ "$(id -u)" -eq 0 ] && chown postgres: "$db"
start_connmgr_cluster "$db" "$port" "log_line_prefix = '%m [%p] %e '" ||
	fail "the cluster did not start with the packaged connmgr preloaded"

# 5. The smoke test.
sql() {
	local user=$1
	shift
	"$PG_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$db" -p "$port" \
		-U "$user" -d postgres "$@"
}
sql postgres -c "CREATE EXTENSION connmgr" || fail "CREATE EXTENSION connmgr failed"
extversion=$(sql postgres -c "SELECT extversion FROM pg_extension WHERE extname = 'connmgr'")
[ "$extversion" = 1.0 ] || fail "extension version is '$extversion', not 1.0"
say "CREATE EXTENSION connmgr: version $extversion"

sql postgres >/dev/null <<'SQL' || fail "could not set a connection limit"
CREATE ROLE smoke_class NOLOGIN;
CREATE ROLE smoke_user LOGIN IN ROLE smoke_class;
SELECT connmgr.set_connection_limit('smoke_class', per_member => 1);
SQL
[ "$(sql postgres -c "SELECT per_member FROM connmgr.connection_limits WHERE role_name = 'smoke_class'")" = 1 ] ||
	fail "connmgr.connection_limits does not show the limit"

# smoke_user's one allowed connection, held open.
sql smoke_user -c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
holder=$!
pid=""
for _ in $(seq 100); do
	pid=$(sql postgres -c "SELECT pid FROM pg_stat_activity WHERE usename = 'smoke_user'")
	[ -n "$pid" ] && break
	sleep 0.1
done
[ -n "$pid" ] || fail "smoke_user's first login did not get in"

if refusal=$(sql smoke_user -c "SELECT 1" 2>&1); then
	fail "a second login of smoke_user was admitted over per_member => 1"
fi
echo "$refusal" | grep -q 'FATAL:  too many connections for role "smoke_user"' ||
	fail "the second login failed, but not with connmgr's refusal: $refusal"
echo "$refusal" | grep -q 'DETAIL:.* "smoke_class" is 1\.' ||
	fail "the refusal does not name smoke_class's limit of 1: $refusal"
grep -q ' 53300 FATAL:  too many connections for role "smoke_user"' "$db/server.log" ||
	fail "the server log has no refusal with SQLSTATE 53300"
say "second login refused: 53300 too many connections for role \"smoke_user\""

listed=$(sql postgres -c "SELECT username || ' ' || pid FROM connmgr.listUserConnections('smoke_user')")
[ "$listed" = "smoke_user $pid" ] ||
	fail "listUserConnections('smoke_user') gave '$listed', not 'smoke_user $pid'"
say "listUserConnections('smoke_user'): pid $pid"

killed=$(sql postgres -c "SELECT success FROM connmgr.killUserConnections('smoke_user')")
[ "$killed" = t ] || fail "killUserConnections('smoke_user') gave '$killed'"
wait "$holder" 2>/dev/null || true
holder=""
[ "$(sql smoke_user -c "SELECT current_user")" = smoke_user ] ||
	fail "smoke_user could not log in again after killUserConnections"
say "killUserConnections freed the slot: smoke_user logs in again"

sql postgres -c "DROP EXTENSION connmgr" || fail "DROP EXTENSION connmgr failed"

# 6. Stop, remove the package at once (others share this PostgreSQL tree).
as_run_user pg_ctl -D "$db/data" -m fast stop >/dev/null
remove_package || fail "could not remove $package"
case $(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true) in
	"" | not-installed) ;;
	*) fail "$package is still on the machine after purging it" ;;
esac
say "$package $version removed again"
