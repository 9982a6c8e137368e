#!/usr/bin/env bash
# Builds the release bundle dist/shoal-<version>.tar.gz that ansible/roles/shoal installs:
#   dist/src, dist/modules   compiled appliance (bin/shoal.js prefers dist/ when it exists)
#   bin/shoal.js             the entry point
#   package.json, package-lock.json
#   node_modules             production dependencies only
#   runtime/node             this machine's Node.js: Debian 12's nodejs is v18, the appliance needs >= 20
# Production dependencies come from `npm ci --omit=dev` in a staging directory, so better-sqlite3 is
# compiled there against the Node that ships in the bundle, and no dev dependency leaks in.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist

node=$(command -v node)
major=$("$node" -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "bundle: $node is Node $("$node" --version); the appliance needs >= 20" >&2
  exit 1
fi
version=$("$node" -p 'require("./package.json").version')
bundle=dist/shoal-$version.tar.gz

stage=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bundle.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/runtime"
# Compiled straight into the staging tree, not into the checkout's dist/: bin/shoal.js prefers
# dist/src when it exists, so a compiled tree left in the checkout would shadow the sources for
# everyone running from it, and stale outputs of deleted files could slip into the bundle.
# Source maps stay in: stack traces in the appliance's log then point at the TypeScript lines.
echo "bundle: compiling (tsc -p tsconfig.build.json)" >&2
npx tsc -p tsconfig.build.json --outDir "$stage/dist"
cp -a bin/shoal.js "$stage/bin/"
cp -a package.json package-lock.json "$stage/"
cp "$node" "$stage/runtime/node"

echo "bundle: installing production dependencies (npm ci --omit=dev; compiles better-sqlite3)" >&2
# The bundle's own Node goes first on PATH so node-gyp builds native modules for it.
(cd "$stage" && PATH="$stage/runtime:$PATH" npm ci --omit=dev --no-audit --no-fund --loglevel=error >&2)
# Build leftovers of better-sqlite3 are not needed at run time; only the .node file is.
find "$stage/node_modules" -type d \( -name obj.target -o -name .deps \) -prune -exec rm -rf {} + 2>/dev/null || true

# Reproducible ordering and ownership, so the same tree gives the same archive.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@${SOURCE_DATE_EPOCH:-0}" \
  -C "$stage" -czf "$bundle.partial" .
mv "$bundle.partial" "$bundle"
echo "$bundle"
