#!/usr/bin/env bash
# Builds README.md's Swift client example as a user meets it: the first ```swift block of "Using the
# Swift client", verbatim, as the main.swift of a package of its own outside this checkout, which
# depends on the checkout by path and has only `import ACBClient` to go on. Run by `make test`;
# ReadmeExampleTests runs what it builds against a bus. Its build products are kept in
# .build/readme-example, so a second run only relinks.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
package="${TMPDIR:-/tmp}/acb-readme-example-$(id -u)"
mkdir -p "$package/Sources/readme-example"
identity=$(basename "$root" | tr '[:upper:]' '[:lower:]')
cat > "$package/Package.swift" <<EOF
// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "readme-example",
    platforms: [.macOS(.v14)],
    dependencies: [.package(path: "$root")],
    targets: [
        .executableTarget(
            name: "readme-example", dependencies: [.product(name: "ACBClient", package: "$identity")])
    ]
)
EOF
awk '/^## Using the Swift client/ { section = 1 }
     section && /^```swift$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$root/README.md" > "$package/Sources/readme-example/main.swift"
if [ ! -s "$package/Sources/readme-example/main.swift" ]; then
  echo "readme-example: no swift block under \"Using the Swift client\" in README.md" >&2
  exit 1
fi
swift build --package-path "$package" --scratch-path "$root/.build/readme-example"
