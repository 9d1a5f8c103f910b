#!/usr/bin/env bash
# The fast subset of the tests: the full suite minus its slowest classes (those that took ≥ 0.5 s in a
# full run here: they start the CLI as a subprocess, load the real-size ../shared exports, or train).
# The full suite stays the README's `swift test -c release -Xswiftc -enable-testing`.
#
#   scripts/test-fast.sh [more swift test options]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
slow=(
    ApplicationsTests.CLIRobustnessTests
    SegformerModelsTests.SegformerBuilderSharedTests
    SegformerModelsTests.SegformerBuilderTests
    SegmentationDataTests.SyntheticScenesTests
    SegmentationDataTests.DataPipelineTests
    TrainingTests.TrainingAgainstPyTorchTests
    TrainingTests.TrainerTests
)
skips=()
for class in "${slow[@]}"; do skips+=(--skip "^$class/"); done
exec swift test -c release -Xswiftc -enable-testing "${skips[@]}" "$@"
