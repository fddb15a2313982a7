#!/usr/bin/env bash
# Build and test the Java SDK with the JDK alone (no Maven Central here; pom.xml is for users
# who build with Maven).
#   bash build.sh jar     → build/linkloom-sdk.jar
#   bash build.sh test    → compile and run the tests (prints "N passed, M failed")
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p build
javac --release 17 -Xlint:all,-serial -Werror -d build/classes $(find src/main/java -name '*.java')
jar --create --file build/linkloom-sdk.jar -C build/classes .
if [ "${1:-jar}" = "test" ]; then
  javac --release 17 -d build/test-classes -cp build/classes $(find src/test/java -name '*.java')
  java -cp build/classes:build/test-classes io.linkloom.sdk.SdkTest
fi
