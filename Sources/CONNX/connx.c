#include "connx.h"

// Reads a base-128 varint; returns bytes consumed or 0 when malformed/truncated.
static size_t read_varint(const uint8_t *p, size_t n, uint64_t *out) {
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        v |= (uint64_t)(p[i] & 0x7F) << (7 * i);
        if ((p[i] & 0x80) == 0) { *out = v; return i + 1; }
    }
    return 0;
}

static int check(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t n, int depth, int max_depth) {
    if (depth > max_depth) return 1;
    size_t pos = 0;
    while (pos < n) {
        uint64_t key;
        size_t used = read_varint(p + pos, n - pos, &key);
        if (used == 0) return -1;
        pos += used;
        uint32_t field = (uint32_t)(key >> 3);
        switch (key & 7) {
        case 0: {  // varint
            uint64_t ignored;
            used = read_varint(p + pos, n - pos, &ignored);
            if (used == 0) return -1;
            pos += used;
            break;
        }
        case 1:  // 64-bit
            if (n - pos < 8) return -1;
            pos += 8;
            break;
        case 5:  // 32-bit
            if (n - pos < 4) return -1;
            pos += 4;
            break;
        case 2: {  // length-delimited
            uint64_t len;
            used = read_varint(p + pos, n - pos, &len);
            if (used == 0) return -1;
            pos += used;
            if (len > n - pos) return -1;
            const ProtobufCFieldDescriptor *f = desc ? protobuf_c_message_descriptor_get_field(desc, field) : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                int r = check((const ProtobufCMessageDescriptor *)f->descriptor, p + pos, (size_t)len, depth + 1,
                              max_depth);
                if (r != 0) return r;
            }
            pos += (size_t)len;
            break;
        }
        default:  // groups (3, 4) are not used by ONNX and not supported by protobuf-c; 6, 7 do not exist
            return -1;
        }
    }
    return 0;
}

int connx_check_nesting(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data, size_t length,
                        int max_depth) {
    return check(descriptor, data, length, 0, max_depth);
}

int connx_check_model_nesting(const uint8_t *data, size_t length, int max_depth) {
    return check(&onnx__model_proto__descriptor, data, length, 0, max_depth);
}

int connx_check_tensor_nesting(const uint8_t *data, size_t length, int max_depth) {
    return check(&onnx__tensor_proto__descriptor, data, length, 0, max_depth);
}
