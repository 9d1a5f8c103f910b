// Hand-written helpers next to the generated ONNX protobuf-c code.
#ifndef CONNX_H
#define CONNX_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>
#include "onnx_subset.pb-c.h"

/// Walks serialized `data` as a message of type `descriptor` without allocating and reports how
/// deeply known sub-messages nest. protobuf-c's unpacker recurses once per nesting level, so a
/// hostile file nesting graphs inside attributes inside graphs could exhaust the stack; callers check
/// this first. Returns 0 when nesting stays within `max_depth`, 1 when it goes deeper, and -1 when the
/// bytes are not well-formed protobuf wire format (the unpacker would reject them too).
int connx_check_nesting(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data, size_t length,
                        int max_depth);

/// `connx_check_nesting` for a serialized ModelProto / TensorProto (Swift cannot take the address of the
/// generated `const` descriptors).
int connx_check_model_nesting(const uint8_t *data, size_t length, int max_depth);
int connx_check_tensor_nesting(const uint8_t *data, size_t length, int max_depth);

#endif
