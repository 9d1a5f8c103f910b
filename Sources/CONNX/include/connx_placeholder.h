// Replaced by the generated ONNX protobuf-c code.
