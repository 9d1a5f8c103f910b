"""Seeded mutators for the fuzzing harness (scripts/fuzz/fuzz.py).

Every mutator takes a `random.Random` and bytes (or a folder) and returns a mutated copy. Three levels:
- bytes: bit flips, overwritten/inserted/deleted runs, truncation, splices;
- protobuf wire: the ONNX and TensorProto files are parsed as generic protobuf (no schema), then one
  varint (a dim, an attribute, an opset version, a data type, …) or one length is changed;
- structure: through the `onnx` package when it is installed (dims, attributes, opsets, initializer
  sizes), image headers (PNG IHDR with a valid CRC, JPEG SOF dims) and checkpoint JSON fields.
"""
import json
import os
import random
import struct
import zlib

# Values that break assumptions: zero, one, negative, around 2^31 / 2^32 / 2^63, huge.
INTERESTING = [0, 1, 2, 3, 7, 255, 256, 65535, 65536, 100000, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
               2**40, 2**62, 2**63 - 1, -1, -2, -(2**31), -(2**63)]


# MARK: bytes

def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        if not b:
            b = bytearray(rng.randbytes(rng.randint(1, 64)))
            continue
        op = rng.randrange(6)
        i = rng.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif op == 2:
            del b[i:i + rng.randint(1, 64)]
        elif op == 3:
            b[i:i] = rng.randbytes(rng.randint(1, 64))
        elif op == 4:
            del b[rng.randint(0, len(b)):]               # truncate
        else:
            j = rng.randrange(len(b))                    # duplicate a run elsewhere
            b[i:i] = b[j:j + rng.randint(1, 256)]
    return bytes(b)


# MARK: protobuf wire format (schema-less)

def _varint(data, i):
    v, shift = 0, 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("bad varint")
        c = data[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def _enc_varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        if v:
            out.append(c | 0x80)
        else:
            out.append(c)
            return bytes(out)


def wire_fields(data, start=0, end=None, depth=0, out=None):
    """Every field of a protobuf message and, recursively, of length-delimited fields that parse as
    messages: (kind, value_start, value_end, value, depth), kind 'varint' or 'len' (value_start of a
    'len' field is its length prefix)."""
    out = [] if out is None else out
    end = len(data) if end is None else end
    i = start
    while i < end:
        key, j = _varint(data, i)
        wire = key & 7
        if wire == 0:
            v, k = _varint(data, j)
            out.append(("varint", j, k, v, depth))
            i = k
        elif wire == 2:
            n, k = _varint(data, j)
            if k + n > end:
                raise ValueError("length past end")
            out.append(("len", j, k + n, n, depth))
            if depth < 6:
                try:
                    inner = []
                    wire_fields(data, k, k + n, depth + 1, inner)
                    out.extend(inner)
                except ValueError:
                    pass
            i = k + n
        elif wire == 1:
            i = j + 8
        elif wire == 5:
            i = j + 4
        else:
            raise ValueError("unknown wire type")
    if i != end:
        raise ValueError("message overruns")
    return out


def mutate_wire(rng: random.Random, data: bytes) -> bytes:
    """Changes one varint (to an interesting value) or one length prefix of a parsed protobuf."""
    try:
        fields = wire_fields(data)
    except ValueError:
        return mutate_bytes(rng, data)
    if not fields:
        return mutate_bytes(rng, data)
    kind, s, e, v, _ = rng.choice(fields)
    if kind == "varint":
        new = rng.choice(INTERESTING + [v + 1, v - 1, v * 2, v * 1000])
        return data[:s] + _enc_varint(new) + data[e:]
    # A length prefix: lie about it (the bytes stay), which desynchronises what follows.
    n, k = _varint(data, s)
    new = rng.choice([0, 1, n - 1, n + 1, n * 2, 2**31, 2**32 - 1])
    return data[:s] + _enc_varint(max(new, 0)) + data[k:]


# MARK: ONNX structure (needs the onnx package)

def mutate_onnx_structure(rng: random.Random, data: bytes) -> bytes:
    try:
        import onnx
        from onnx import helper
    except ImportError:
        return mutate_wire(rng, data)
    try:
        m = onnx.load_from_string(data)
    except Exception:
        return mutate_wire(rng, data)
    g = m.graph
    choice = rng.randrange(7)
    if choice == 0 and len(g.input) + len(g.output) + len(g.value_info):
        vi = rng.choice(list(g.input) + list(g.output) + list(g.value_info))
        dims = vi.type.tensor_type.shape.dim
        if dims:
            d = rng.choice(dims)
            if rng.random() < 0.3:
                d.dim_param = rng.choice(["batch", "height", "x", ""])
            else:
                d.dim_value = rng.choice(INTERESTING[:-3] + [rng.randint(0, 5000)])
    elif choice == 1 and g.node:
        n = rng.choice(g.node)
        if n.attribute:
            a = rng.choice(n.attribute)
            if a.type == onnx.AttributeProto.INT:
                a.i = rng.choice(INTERESTING)
            elif a.type == onnx.AttributeProto.INTS and a.ints:
                a.ints[rng.randrange(len(a.ints))] = rng.choice(INTERESTING)
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = rng.choice([0.0, -1.0, 1e30, float("nan"), float("inf")])
            elif a.type == onnx.AttributeProto.STRING:
                a.s = rng.choice([b"", b"bogus", b"tanh", b"linear", b"nearest"])
            else:
                n.attribute.remove(a)
        else:
            n.attribute.append(helper.make_attribute(rng.choice(["axis", "perm", "mode"]), rng.choice(INTERESTING)))
    elif choice == 2:
        for o in m.opset_import:
            if rng.random() < 0.5:
                o.version = rng.choice([1, 6, 9, 11, 12, 13, 17, 18, 20, 21, 23, 24, 99])
        if rng.random() < 0.2:
            del m.opset_import[:]
            m.opset_import.append(helper.make_opsetid("com.example", 1))
    elif choice == 3 and g.initializer:
        t = rng.choice(g.initializer)
        if t.dims and rng.random() < 0.6:
            t.dims[rng.randrange(len(t.dims))] = rng.choice(INTERESTING[:-3])
        elif t.raw_data:
            t.raw_data = t.raw_data[:rng.randrange(len(t.raw_data))]
        else:
            t.data_type = rng.choice([0, 2, 7, 8, 9, 10, 11, 16, 17, 99])
    elif choice == 4 and g.node:
        n = rng.choice(g.node)
        if n.input and rng.random() < 0.5:
            n.input[rng.randrange(len(n.input))] = rng.choice([x for other in g.node for x in other.output] + ["", "missing"])
        else:
            n.op_type = rng.choice(["Reshape", "Expand", "Tile", "ConstantOfShape", "Range", "Gather", "Resize",
                                    "Conv", "Softmax", "Gelu", "Pad", "Concat", "Split", "Slice", "Identity"])
    elif choice == 5 and g.node:
        i, j = rng.randrange(len(g.node)), rng.randrange(len(g.node))
        g.node[i].CopyFrom(g.node[j]) if rng.random() < 0.3 else g.node.insert(j, g.node.pop(i))
    else:
        # A node asking for a large constant: the shape of the ConstantOfShape/Expand comes from an
        # initializer with interesting values.
        name = "fuzz_shape_%d" % rng.randrange(1 << 20)
        dims = [rng.choice([1, 3, 512, 4096, 100000, 2**31, 2**40]) for _ in range(rng.randint(1, 4))]
        g.initializer.append(helper.make_tensor(name, onnx.TensorProto.INT64, [len(dims)], dims))
        out = name + "_out"
        g.node.append(helper.make_node(rng.choice(["ConstantOfShape", "Expand"]),
                                       [name] if rng.random() < 0.5 else [g.input[0].name if g.input else name, name],
                                       [out]))
        g.output.append(helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
    try:
        return m.SerializeToString()
    except Exception:
        return mutate_wire(rng, data)


# MARK: images

def _png_chunks(data):
    i, out = 8, []
    while i + 8 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        out.append((i, data[i + 4:i + 8], n))
        i += 12 + n
    return out


def mutate_image_header(rng: random.Random, data: bytes) -> bytes:
    """Changes the declared size (PNG IHDR with its CRC fixed; JPEG SOF), bit depth or colour type."""
    dims = [0, 1, 7, 4096, 10000, 65500, 100000, 2**31 - 1, 2**32 - 1]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        for off, typ, n in _png_chunks(data):
            if typ == b"IHDR" and n == 13:
                body = bytearray(data[off + 8:off + 21])
                field = rng.randrange(4)
                if field < 2:
                    body[4 * field:4 * field + 4] = struct.pack(">I", rng.choice(dims))
                elif field == 2:
                    body[8] = rng.choice([1, 2, 4, 8, 16, 3, 0])
                else:
                    body[9] = rng.choice([0, 2, 3, 4, 6, 1, 7])
                crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(body)) & 0xFFFFFFFF)
                return data[:off + 8] + bytes(body) + crc + data[off + 25:]
    if data[:2] == b"\xff\xd8":
        for i in range(2, len(data) - 9):
            if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2):
                b = bytearray(data)
                off = i + 5 + 2 * rng.randrange(2)                     # height, then width
                b[off:off + 2] = struct.pack(">H", rng.choice([0, 1, 7, 4096, 10000, 65500]))
                return bytes(b)
    return mutate_bytes(rng, data)


# MARK: checkpoints (a folder)

def mutate_checkpoint(rng: random.Random, folder: str) -> str:
    """Mutates one file of a checkpoint folder in place; returns what was done."""
    files = sorted(f for f in os.listdir(folder) if not f.startswith("."))
    if not files:
        return "empty"
    name = rng.choice(files)
    path = os.path.join(folder, name)
    if rng.random() < 0.1:
        os.remove(path)
        return "removed " + name
    data = open(path, "rb").read()
    if name.endswith(".json") and rng.random() < 0.7:
        try:
            state = json.loads(data)
        except ValueError:
            state = None
        if isinstance(state, dict) and state:
            key = rng.choice(sorted(state))
            if rng.random() < 0.15:
                del state[key]
            else:
                state[key] = rng.choice(INTERESTING + [0.5, -5, "x", None, [], {}, 1e308])
            open(path, "w").write(json.dumps(state))
            return "%s: %s" % (name, key)
    if name.endswith(".onnx") and rng.random() < 0.5:
        new = mutate_onnx_structure(rng, data) if rng.random() < 0.5 else mutate_wire(rng, data)
    else:
        new = mutate_bytes(rng, data)
    open(path, "wb").write(new)
    return "bytes of " + name
