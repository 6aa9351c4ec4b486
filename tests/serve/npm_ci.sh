#!/bin/sh
# npm_ci.sh SRC DST: installs the serve tests' node packages (package.json
# and package-lock.json of SRC) into DST/node_modules with `npm ci`, once:
# again only when package.json or the lock file changes. The CTest fixture
# serve_npm_ci.
set -eu
src=$1
dst=$2
command -v node >/dev/null || { echo "npm_ci.sh: node not found: run scripts/deps.sh" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm_ci.sh: npm not found: run scripts/deps.sh" >&2; exit 1; }
echo "node $(node --version), npm $(npm --version)"
mkdir -p "$dst"
stamp="$dst/installed.stamp"
if [ -f "$stamp" ] && cat "$src/package.json" "$src/package-lock.json" | cmp -s - "$stamp"; then
  echo "npm_ci.sh: $dst/node_modules is up to date"
  exit 0
fi
rm -f "$stamp"
cp "$src/package.json" "$src/package-lock.json" "$dst/"
cd "$dst"
npm ci --no-audit --no-fund
# The client loads, in the version the lock file pins.
node -e '
const { OpenAI } = require("openai");
const fs = require("fs");
const want = JSON.parse(fs.readFileSync("package-lock.json")).packages["node_modules/openai"].version;
const got = JSON.parse(fs.readFileSync("node_modules/openai/package.json")).version;
if (typeof OpenAI !== "function" || got !== want) { console.error(`openai ${got}, expected ${want}`); process.exit(1); }
console.log(`openai ${got}`);'
cat "$src/package.json" "$src/package-lock.json" > "$stamp"
