#!/usr/bin/env bash
# Build the Go oracle programs (tests/oracle/*/main.go) into $OUT (default /tmp/argo-oracle/bin).
#
# Go and most libraries come from Debian (GO111MODULE=off, GOPATH ending in /usr/share/gocode).
# Argo Events v1.9.11 pins newer gjson, sjson and sprig than Debian ships, so those three are
# taken at Argo's versions from git clones of their public repositories and put first in
# GOPATH, in a temporary directory. Nothing fetched is committed. The clones default to the
# mirrors the project's sessions use; point GJSON_GIT, SJSON_GIT, SPRIG_GIT, LUA_GIT at any
# clone of tidwall/gjson, tidwall/sjson, Masterminds/sprig, yuin/gopher-lua.
#
# Version notes (also in docs/compatibility.md):
#   gjson v1.19.0   Argo's; its three iterator methods (All, Keys, Values: Go 1.23 "iter")
#                   are cut out so Debian's Go 1.19 compiles it. Argo calls none of them.
#   sjson v1.2.5    Argo's.
#   sprig v3.3.0    Argo's; dario.cat/mergo is Debian's imdario/mergo (same package, renamed);
#                   xstrings is Debian's 1.3.3 plus a stub ToPascalCase (only `camelcase`
#                   calls it; the engine does not support camelcase).
#   gopher-lua v1.1.2  Argo's.
#   govaluate 9aa4983  Debian's, which is Argo's commit.
#   gojq            Debian's 0.12.11 (Argo pins 0.12.19, which needs Go 1.23+).
#   Go              Debian's 1.19 (Argo builds with 1.26): text/template, regexp, strconv and
#                   encoding/json behave the same for what the corpora use, except regexp's
#                   (?<name>...) groups (Go 1.22+), which the generator avoids.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${OUT:-/tmp/argo-oracle/bin}"
# MIRROR: the folder holding git snapshots of the pinned libraries, one per repository
# (<owner>+<name>/repo), e.g. what the search tool's `fetch` brings in; no default path.
MIRROR="${MIRROR:-}"
GJSON_GIT="${GJSON_GIT:-$MIRROR/tidwall+gjson/repo}"
SJSON_GIT="${SJSON_GIT:-$MIRROR/tidwall+sjson/repo}"
SPRIG_GIT="${SPRIG_GIT:-$MIRROR/Masterminds+sprig/repo}"
LUA_GIT="${LUA_GIT:-$MIRROR/yuin+gopher-lua/repo}"
DEBIAN=/usr/share/gocode/src

for repo in "$GJSON_GIT" "$SJSON_GIT" "$SPRIG_GIT" "$LUA_GIT"; do
  git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 || {
    echo "build.sh: no git clone at '$repo' (set MIRROR, or GJSON_GIT/SJSON_GIT/SPRIG_GIT/LUA_GIT)" >&2; exit 2; }
done

GOPATH_DIR="$(mktemp -d /tmp/argo-oracle-gopath.XXXXXX)"
trap 'rm -rf "$GOPATH_DIR"' EXIT
SRC="$GOPATH_DIR/src"

unpack() {  # repo tag dest
  mkdir -p "$3"
  git -C "$1" archive "$2" | tar -x -C "$3"
}
unpack "$GJSON_GIT" v1.19.0 "$SRC/github.com/tidwall/gjson"
unpack "$SJSON_GIT" v1.2.5 "$SRC/github.com/tidwall/sjson"
unpack "$SPRIG_GIT" v3.3.0 "$SRC/github.com/Masterminds/sprig"
unpack "$LUA_GIT" v1.1.2 "$SRC/github.com/yuin/gopher-lua"
# GOPATH mode resolves ".../sprig/v3" as a directory.
ln -s . "$SRC/github.com/Masterminds/sprig/v3"

# gjson: drop the iter-based methods (Go 1.23) so Go 1.19 builds it.
python3 - "$SRC/github.com/tidwall/gjson/gjson.go" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read().replace('\t"iter"\n', "")
for name in ("All", "Keys", "Values"):
    m = re.search(r"\n(?://[^\n]*\n)*func \(t Result\) " + name + r"\(\) iter\.Seq.*?\n}\n", text, re.S)
    if not m:
        sys.exit(f"build.sh: gjson method {name} not found; check the gjson version")
    text = text[: m.start()] + "\n" + text[m.end():]
open(path, "w").write(text)
PY

mkdir -p "$SRC/dario.cat" "$SRC/github.com/huandu"
ln -s "$DEBIAN/github.com/imdario/mergo" "$SRC/dario.cat/mergo"
cp -r "$DEBIAN/github.com/huandu/xstrings" "$SRC/github.com/huandu/xstrings"
cat > "$SRC/github.com/huandu/xstrings/oracle_stub.go" <<'GO'
package xstrings

// ToPascalCase is called by sprig 3.3.0's camelcase only; Debian's xstrings 1.3.3 lacks it.
func ToPascalCase(s string) string { panic("camelcase is not available in the oracle build") }
GO

mkdir -p "$OUT"
for prog in gjson sjson govaluate template lua jq regexp; do
  mkdir -p "$SRC/argo-oracle/$prog"
  cp "$HERE/$prog/main.go" "$SRC/argo-oracle/$prog/"
  (cd "$SRC/argo-oracle/$prog" && GO111MODULE=off GOPATH="$GOPATH_DIR:/usr/share/gocode" GOFLAGS= \
     GOCACHE="${GOCACHE:-/tmp/argo-oracle/gocache}" go build -o "$OUT/$prog" .)
done
echo "built: $(ls "$OUT" | tr '\n' ' ')"
