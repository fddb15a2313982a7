#!/usr/bin/env bash
# Build the Java example backend against the SDK jar (bash ../../../sdks/java/build.sh jar first).
set -euo pipefail
cd "$(dirname "$0")"
sdk=../../../sdks/java/build/linkloom-sdk.jar
[ -f "$sdk" ] || bash ../../../sdks/java/build.sh jar
javac --release 17 -Xlint:all,-serial -Werror -cp "$sdk" -d build/classes $(find src -name '*.java')
