#!/usr/bin/env bash
# Builds devmongo with FerretDB patched by the .patch files beside this
# script, into the path given as the only argument:
#
#   tools/devmongo/build.sh /tmp/devmongo
#
# Why a patch: FerretDB 1.24 looks documents up by _id with the SQLite
# expression `_ferretdb_sjson->'$._id'`, but creates its unique _id index on
# `_ferretdb_sjson->"_id"`. The two give the same value, yet SQLite uses an
# expression index only for the expression it was made on, so every _id
# lookup, update and delete scanned the whole table: a collection of n
# documents cost n JSON parses per lookup, and a store of a few thousand
# sagas slowed to a crawl (sqlite-id-index.patch says more).
#
# How: the FerretDB module is copied out of the module cache into a
# temporary directory, patched there, and the build uses a copy of go.mod
# with a replace directive pointing at it (-modfile), so neither the module
# cache nor go.mod is changed. `go build .` in this directory still builds
# the unpatched server.
set -euo pipefail
if [ $# -ne 1 ]; then
	echo "usage: $0 OUTPUT-BINARY" >&2
	exit 2
fi
out="$1"
case "$out" in
/*) ;;
*) out="$PWD/$out" ;;
esac
cd "$(dirname "$0")"
here="$PWD"

tmp="$(mktemp -d)"
trap 'chmod -R u+w "$tmp" 2>/dev/null || true; rm -rf "$tmp"' EXIT

module="github.com/FerretDB/FerretDB"
version="$(go list -m -f '{{.Version}}' "$module")"
src="$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$src" ] || [ ! -d "$src" ]; then
	echo "$0: cannot find the source of $module@$version in the module cache" >&2
	exit 1
fi
cp -R "$src" "$tmp/ferretdb"
chmod -R u+w "$tmp/ferretdb"
for p in "$here"/*.patch; do
	if ! patch --quiet --forward -p1 -d "$tmp/ferretdb" <"$p"; then
		echo "$0: $(basename "$p") does not apply to $module@$version" >&2
		exit 1
	fi
done

cp go.mod "$tmp/go.mod"
cp go.sum "$tmp/go.sum"
go mod edit -modfile="$tmp/go.mod" -replace="$module=$tmp/ferretdb"
go build -modfile="$tmp/go.mod" -o "$out" .
