#!/usr/bin/env bash
# Dependency check: `cargo deny --offline check` (advisories, bans, licenses,
# sources) with the committed deny.toml, against the RustSec advisory
# database snapshot in ../shared/advisory-db/ (GitHub is unreachable, so the
# database is never fetched). See docs/security.md, "Dependencies".
#   bash deploy/deny.sh            install cargo-deny if missing, then check
#   bash deploy/deny.sh install    only install cargo-deny if missing
set -euo pipefail
cd "$(dirname "$0")/.."

# The version this configuration was written and checked with.
CARGO_DENY_VERSION=0.20.2

install_cargo_deny() {
  command -v cargo-deny >/dev/null 2>&1 && return 0
  # Built in cargo's own temporary directory, not in CARGO_TARGET_DIR, so
  # that it does not wait for the build-directory lock of a parallel build.
  # `exec`: in the background (deploy/test.sh) the job's pid is cargo's.
  exec env -u CARGO_TARGET_DIR cargo install --locked --version "$CARGO_DENY_VERSION" cargo-deny
}

if [ "${1:-}" = install ]; then
  install_cargo_deny
  exit 0
fi
command -v cargo-deny >/dev/null 2>&1 || (install_cargo_deny)

bundle=../shared/advisory-db/advisory-db.bundle
# deny.toml's db-path is target/advisory-db; cargo-deny looks for the
# database in a directory named after the default database URL.
db=target/advisory-db/advisory-db-3157b0e258782691
if [ ! -d "$db/.git" ]; then
  [ -f "$bundle" ] || { echo "deny.sh: $bundle not found (the shared dir must sit beside the repository)" >&2; exit 1; }
  rm -rf "$db"
  mkdir -p "$(dirname "$db")"
  git -c init.defaultBranch=master clone -q "$bundle" "$db"
fi
echo "advisory database snapshot: $(git -C "$db" log -1 --format=%cs) (advisories published later are not checked)"
# --offline keeps cargo-deny from fetching the advisory database (GitHub is
# unreachable here), but it also keeps `cargo metadata` from downloading
# crates: every package of Cargo.lock, for every target (windows-sys too),
# must be in the local registry first. A fresh machine has only what the
# Linux build used, so fetch the rest from crates.io now.
cargo fetch --locked
cargo deny --offline check
