#!/usr/bin/env bash
# The supply-chain gate: every lock file of the project (the host workspace,
# the guest workspace in plugins/, the fuzz targets) checked by cargo-deny
# against deny.toml: known advisories from the RustSec database, licenses,
# crates pulled in twice at incompatible versions, and where crates come
# from. Offline: the advisory database is the copy in ../shared/advisory-db
# (or $PRX_ADVISORY_DB); nothing is fetched.
#
# The npm lock file of the JavaScript toolchain (plugins/cli/js) is checked
# by scripts/npm-lock-check.mjs: registry sources, sha512 pins, licenses
# (npm has no offline advisory database to check against).
#
# Then it checks itself: a lock file holding smallvec 1.6.0, which has an
# advisory (tests/supply-chain/advisory), must be refused, naming it, and
# an npm lock file with a git dependency and a license off the list
# (tests/supply-chain/npm) must be refused, naming both.
#
# cargo-deny is installed into .tools by scripts/bootstrap.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

deny=.tools/bin/cargo-deny
source_db=${PRX_ADVISORY_DB:-../shared/advisory-db}
# cargo-deny keeps each database in a folder named after its URL; this is
# the one of the default RustSec URL, which deny.toml leaves in place.
db=target/advisory-dbs/advisory-db-3157b0e258782691
out=target/supply-chain

if [ ! -x "$deny" ]; then
  echo "supply-chain: $deny is missing; run scripts/bootstrap.sh" >&2
  exit 1
fi
if [ ! -d "$source_db/crates" ]; then
  echo "supply-chain: no advisory database at $source_db (a copy of github.com/rustsec/advisory-db); set PRX_ADVISORY_DB" >&2
  exit 1
fi

# cargo-deny reads the database from a git repository: make one of the
# copy, again whenever the copy changes.
stamp=$(cd "$source_db" && find . -path ./.git -prune -o -type f -printf '%P %s %T@\n' | sort | sha256sum | cut -c1-16)
if [ "$(cat "$db/.prx-stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$db"
  mkdir -p "$db"
  cp -r "$source_db"/. "$db"/
  rm -rf "$db/.git"
  (
    cd "$db"
    git init -q
    git add -A
    GIT_AUTHOR_DATE="2000-01-01T00:00:00Z" GIT_COMMITTER_DATE="2000-01-01T00:00:00Z" \
      git -c user.name=prx -c user.email=prx@localhost commit -q -m "advisory-db copy"
  )
  echo "$stamp" >"$db/.prx-stamp"
fi
mkdir -p "$out"

# check NAME DIR: cargo-deny over DIR's lock file; its report goes to
# $out/NAME.txt. The lock file must already be complete (--locked).
check() {
  local name=$1 dir=$2
  (cd "$dir" && cargo metadata --format-version 1 --locked --quiet) >"$out/$name.json"
  # deny.toml is shared; an exception that only one workspace needs is
  # not a finding in the others.
  "$deny" --offline --color never --log-level error \
    --metadata-path "$out/$name.json" --manifest-path "$dir/Cargo.toml" --config deny.toml \
    check --show-stats \
    -A unmatched-skip -A unnecessary-skip -A license-not-encountered -A advisory-not-detected \
    >"$out/$name.txt" 2>&1
}

status=0
for target in host:. guests:plugins fuzz:fuzz; do
  name=${target%%:*}
  if check "$name" "${target#*:}"; then
    echo "supply-chain: $name: $(grep -Eo '(advisories|bans|licenses|sources) (ok|FAILED)' "$out/$name.txt" | paste -sd, | sed 's/,/, /g')"
  else
    echo "supply-chain: $name: refused; cargo-deny says:" >&2
    cat "$out/$name.txt" >&2
    status=1
  fi
done

if node scripts/npm-lock-check.mjs plugins/cli/js/package-lock.json >"$out/npm.txt" 2>&1; then
  echo "supply-chain: npm: $(cat "$out/npm.txt")"
else
  echo "supply-chain: npm: refused:" >&2
  cat "$out/npm.txt" >&2
  status=1
fi

# The gate's own tests: it must refuse a known advisory, and say which.
if check advisory-fixture tests/supply-chain/advisory; then
  echo "supply-chain: the gate passed smallvec 1.6.0 (RUSTSEC-2021-0003): it checks nothing" >&2
  status=1
elif ! grep -q "RUSTSEC-2021-0003" "$out/advisory-fixture.txt"; then
  echo "supply-chain: the gate refused the fixture, but not for RUSTSEC-2021-0003:" >&2
  cat "$out/advisory-fixture.txt" >&2
  status=1
else
  echo "supply-chain: self-test: a lock file with smallvec 1.6.0 is refused (RUSTSEC-2021-0003)"
fi
if node scripts/npm-lock-check.mjs tests/supply-chain/npm/package-lock.json >"$out/npm-fixture.txt" 2>&1; then
  echo "supply-chain: the npm check passed a git dependency and a WTFPL license: it checks nothing" >&2
  status=1
elif ! grep -q "from-git@1.0.0: comes from git" "$out/npm-fixture.txt" || ! grep -q "license WTFPL" "$out/npm-fixture.txt"; then
  echo "supply-chain: the npm check refused its fixture, but not for both of its faults:" >&2
  cat "$out/npm-fixture.txt" >&2
  status=1
else
  echo "supply-chain: self-test: an npm lock file with a git dependency and a WTFPL license is refused"
fi
exit $status
