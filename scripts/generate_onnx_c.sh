#!/bin/sh
# Regenerates the protobuf-c code for the ONNX subset schema (needs protoc-c, Debian: protobuf-c-compiler).
# The .c goes into Sources/CONNX, the .h into Sources/CONNX/include (the target's public headers; SwiftPM
# puts that folder on the C include path, so the generated `#include "onnx_subset.pb-c.h"` resolves).
set -eu
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc-c --proto_path=Sources/CONNX/proto --c_out="$out" Sources/CONNX/proto/onnx_subset.proto
cp "$out/onnx_subset.pb-c.c" Sources/CONNX/onnx_subset.pb-c.c
cp "$out/onnx_subset.pb-c.h" Sources/CONNX/include/onnx_subset.pb-c.h
echo "regenerated Sources/CONNX/onnx_subset.pb-c.c and Sources/CONNX/include/onnx_subset.pb-c.h"
