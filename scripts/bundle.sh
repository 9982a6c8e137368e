#!/usr/bin/env bash
# `npm run bundle`: builds the release bundle dist/shoal-<version>.tar.gz that ansible/roles/shoal
# installs on a head node (`bash scripts/bundle.sh OUT_DIR` writes it to OUT_DIR instead) and
# prints its path as the last line. Inside, at the top level:
#   manifest.json            name, version, commit, build time, the Node runtime's version and ABI
#   bin/shoal.js             the entry point (it runs dist/src/cli/main.js when that exists)
#   dist/src, dist/modules   the compiled appliance; src/appliance.ts loads modules/<name>/index.js
#                            relative to itself, so both trees keep their places
#   web/dist                 the dashboard, served at /
#   node_modules             production dependencies only, better-sqlite3 built for runtime/node
#   runtime/node             this machine's Node.js: Debian 12's nodejs is 18, the appliance needs >= 20
#   package.json, package-lock.json
# Before packing, the staged tree is started as an appliance with every standard module (loopback
# only, throw-away data directory) and asked for its API and dashboard: a bundle that cannot serve
# is never written.
set -euo pipefail
out=$(realpath -m "${1:-$(dirname "$0")/../dist}")
cd "$(dirname "$0")/.."
say() { echo "bundle: $*" >&2; }

node=$(node -p process.execPath)
major=$("$node" -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  say "$node is Node $("$node" --version); the appliance needs >= 20"
  exit 1
fi
version=$("$node" -p 'require("./package.json").version')
mkdir -p "$out"
bundle=$out/shoal-$version.tar.gz

stage=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bundle.XXXXXX")
trap 'rm -rf "$stage"' EXIT
tree=$stage/tree
mkdir -p "$tree/bin" "$tree/runtime" "$tree/web"

# Compiled straight into the staging tree, not into the checkout's dist/: bin/shoal.js prefers
# dist/src when it exists, so a compiled tree left in the checkout would shadow the sources for
# everyone running from it, and outputs of deleted files could slip into the bundle. Source maps
# stay in: stack traces in the appliance's log then name TypeScript lines.
say "compiling the appliance (tsc -p tsconfig.build.json)"
npx --no-install tsc -p tsconfig.build.json --outDir "$tree/dist"
# The same reason for the dashboard: built into the stage, the checkout's web/dist is left alone.
say "building the dashboard (npm run web:build)"
npm run --silent web:build -- --outDir "$tree/web/dist" --emptyOutDir --logLevel warn >&2
cp -a bin/shoal.js "$tree/bin/"
# What the compiled image toolkit reads beside itself (the oci module's imports): the agent, the
# initramfs scripts and the recipe files it installs.
(cd images && find agent initramfs recipes -type f ! -name '*.ts' -exec install -D -m 0644 {} "$tree/dist/images/{}" \;)
cp -a package.json package-lock.json "$tree/"
cp "$node" "$tree/runtime/node"

say "installing production dependencies (npm ci --omit=dev)"
# The bundle's own Node goes first on PATH, so whatever npm builds is built for it.
export PATH="$tree/runtime:$PATH"
(cd "$tree" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
# better-sqlite3 is the one native addon. The checkout's build is reused when it is the same
# version (scripts/install-deps.sh built it with this same Node); whether it loads with the
# bundle's Node decides, and otherwise it is compiled here.
sqlite=$tree/node_modules/better-sqlite3
want=$(node -p "require('$sqlite/package.json').version")
if [ -f node_modules/better-sqlite3/build/Release/better_sqlite3.node ] &&
  [ "$(node -p "require('./node_modules/better-sqlite3/package.json').version")" = "$want" ]; then
  mkdir -p "$sqlite/build/Release"
  cp node_modules/better-sqlite3/build/Release/better_sqlite3.node "$sqlite/build/Release/"
fi
loads() { (cd "$tree" && node -e "const D = require('better-sqlite3'); new D(':memory:').close()" 2>/dev/null); }
if ! loads; then
  say "compiling better-sqlite3 $want for Node $(node --version)"
  rm -rf "$sqlite/build"
  (cd "$tree" && npm rebuild better-sqlite3 --loglevel=error >&2)
  loads || { say "better-sqlite3 does not load with the bundle's Node"; exit 1; }
fi
# Only the addon itself is needed at run time: not its objects, its test extension or the sources.
find "$sqlite/build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
find "$sqlite/build/Release" -mindepth 1 ! -name better_sqlite3.node -exec rm -rf {} +
rm -rf "$sqlite/deps" "$sqlite/src"

commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dirty=false
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then dirty=true; fi
COMMIT=$commit DIRTY=$dirty node -e '
  const pkg = require(process.argv[1] + "/package.json");
  const manifest = {
    name: pkg.name,
    version: pkg.version,
    commit: process.env.COMMIT,
    dirty: process.env.DIRTY === "true",
    builtAt: new Date().toISOString(),
    node: { version: process.version, abi: process.versions.modules, path: "runtime/node" },
    platform: process.platform,
    arch: process.arch,
    entry: "bin/shoal.js",
  };
  require("fs").writeFileSync(process.argv[1] + "/manifest.json", JSON.stringify(manifest, null, 2) + "\n");
' "$tree"

say "starting the staged appliance once (127.0.0.1, every standard module)"
mkdir -p "$stage/data"
cat >"$stage/config.yaml" <<EOF
dataDir: $stage/data
api: { listen: 127.0.0.1, port: 0 }
log: { level: warn }
modules:
  - { name: sim, options: {} }
  - { name: ipmi, options: { bindAddress: 127.0.0.1 } }
  - { name: redfish, options: {} }
  - { name: pxe, options: { advertiseUrl: "http://127.0.0.1:8080" } }
  - { name: images, options: {} }
  - { name: agent, options: {} }
EOF
# The checkout's node_modules are out of reach: NODE_PATH is unset and the tree has its own.
(cd "$stage" && env -u NODE_PATH -u NODE_OPTIONS "$tree/runtime/node" --input-type=module -e '
  import { spawn } from "node:child_process";
  import { readFileSync } from "node:fs";
  const [tree, config, data] = process.argv.slice(1);
  const child = spawn(`${tree}/runtime/node`, [`${tree}/bin/shoal.js`, "serve", "--config", config], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  child.stderr.on("data", (d) => (err += d));
  const fail = (why) => { child.kill("SIGKILL"); console.error(`bundle: the staged appliance ${why}\n${out}${err}`); process.exit(1); };
  const timer = setTimeout(() => fail("did not start within 60 s"), 60_000);
  child.on("exit", (code) => fail(`exited (${code})`));
  const url = await new Promise((resolve) => child.stdout.on("data", (d) => {
    out += d;
    const m = /appliance at (http:\/\/\S+)/.exec(out);
    if (m) resolve(m[1]);
  }));
  clearTimeout(timer);
  const token = readFileSync(`${data}/api-token`, "utf8").trim();
  const api = await fetch(`${url}/api/v1/nodes`, { headers: { authorization: `Bearer ${token}` } });
  if (api.status !== 200) fail(`answered GET /api/v1/nodes with ${api.status}`);
  const page = await fetch(`${url}/`);
  if (page.status !== 200 || !(await page.text()).includes("<script")) fail(`served no dashboard at / (${page.status})`);
  child.removeAllListeners("exit");
  child.kill("SIGTERM");
  const stopped = await new Promise((resolve) => {
    const timer = setTimeout(() => (child.kill("SIGKILL"), resolve(false)), 15_000);
    child.on("exit", () => (clearTimeout(timer), resolve(true)));
  });
  if (!stopped) { console.error(`bundle: the staged appliance did not stop within 15 s of SIGTERM\n${out}${err}`); process.exit(1); }
  console.error(`bundle: the staged appliance answered at ${url} (API and dashboard)`);
' "$tree" "$stage/config.yaml" "$stage/data")

say "packing $bundle"
# Sorted names, fixed owners and mtimes, no name or time in the gzip header: the same tree gives
# the same archive. The role names a release by the archive's sha256.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@${SOURCE_DATE_EPOCH:-0}" -C "$tree" -cf - . |
  gzip -n -6 >"$bundle.partial"
mv "$bundle.partial" "$bundle"
say "$(du -h "$bundle" | cut -f1) $(sha256sum "$bundle" | cut -c1-12)"
echo "$bundle"
