#!/usr/bin/env bash
# The README's test command: installs everything the tests need (Debian
# packages, Go modules, staticcheck), then runs every check and test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
export PATH="$PATH:$(go env GOPATH)/bin"

go mod download

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== staticcheck"
staticcheck ./...

echo "== go test"
go test -race -count=1 -timeout 15m ./...

# Our go-smtp fork is a module of its own: ./... does not reach its tests
# (the changes of doc/go-smtp-fork.md, its fuzz seeds).
echo "== go test (third_party/go-smtp)"
(cd third_party/go-smtp && go test -race -count=1 .)

# The same for our go-milter fork (third_party/go-milter/MXGATE.md).
echo "== go test (third_party/go-milter)"
(cd third_party/go-milter && go test -race -count=1 .)
