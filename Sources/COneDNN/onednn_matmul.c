#include "onednn_matmul.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// The part of oneDNN 2.x's C API (dnnl.h, dnnl_types.h) used here, declared by hand so that only
// the runtime library (Debian's libdnnl2) is needed. Where the real header is at hand its values
// are checked against these at compile time.
typedef int status_t;
typedef int64_t dims_t[12];
typedef struct { _Alignas(8) unsigned char bytes[696]; } memory_desc_t;
typedef struct { _Alignas(8) unsigned char bytes[2800]; } matmul_desc_t;
typedef void *engine_t, *stream_t, *primitive_desc_t, *primitive_t, *memory_t, *primitive_attr_t, *post_ops_t;
typedef struct { int arg; memory_t memory; } exec_arg_t;
typedef struct { int major, minor, patch; const char *hash; unsigned cpu_runtime, gpu_runtime; } version_t;

enum {
    odnn_success = 0, odnn_f32 = 3, odnn_tag_any = 1, odnn_tag_ab = 3, odnn_cpu = 1, odnn_stream_default = 1,
    odnn_query_impl_info_str = 8, odnn_query_weights_md = 131, odnn_query_scratchpad_md = 136, odnn_scratchpad_mode_user = 1,
    odnn_arg_src = 1, odnn_arg_dst = 17, odnn_arg_weights = 33, odnn_arg_scratchpad = 80, odnn_arg_from = 1, odnn_arg_to = 17,
};

#if __has_include(<oneapi/dnnl/dnnl.h>)
#include <oneapi/dnnl/dnnl.h>
#if DNNL_VERSION_MAJOR == 2
_Static_assert(sizeof(memory_desc_t) == sizeof(dnnl_memory_desc_t), "dnnl_memory_desc_t size");
_Static_assert(sizeof(matmul_desc_t) == sizeof(dnnl_matmul_desc_t), "dnnl_matmul_desc_t size");
_Static_assert(sizeof(exec_arg_t) == sizeof(dnnl_exec_arg_t) && sizeof(version_t) == sizeof(dnnl_version_t), "dnnl structs");
_Static_assert(odnn_f32 == dnnl_f32 && odnn_tag_any == dnnl_format_tag_any && odnn_tag_ab == dnnl_ab, "dnnl enums");
_Static_assert(odnn_cpu == dnnl_cpu && odnn_stream_default == dnnl_stream_default_flags, "dnnl enums");
_Static_assert(odnn_query_impl_info_str == dnnl_query_impl_info_str && odnn_query_weights_md == dnnl_query_weights_md
               && odnn_query_scratchpad_md == dnnl_query_scratchpad_md && odnn_scratchpad_mode_user == dnnl_scratchpad_mode_user, "dnnl queries");
_Static_assert(odnn_arg_src == DNNL_ARG_SRC && odnn_arg_dst == DNNL_ARG_DST && odnn_arg_weights == DNNL_ARG_WEIGHTS
               && odnn_arg_scratchpad == DNNL_ARG_SCRATCHPAD && odnn_arg_from == DNNL_ARG_FROM && odnn_arg_to == DNNL_ARG_TO, "dnnl args");
#endif
#endif

static struct {
    const version_t *(*version)(void);
    status_t (*engine_create)(engine_t *, int, size_t);
    status_t (*stream_create)(stream_t *, engine_t, unsigned);
    status_t (*stream_wait)(stream_t);
    status_t (*md_init_by_tag)(memory_desc_t *, int, const dims_t, int, int);
    status_t (*md_init_by_strides)(memory_desc_t *, int, const dims_t, int, const dims_t);
    size_t (*md_get_size)(const memory_desc_t *);
    int (*md_equal)(const memory_desc_t *, const memory_desc_t *);
    status_t (*matmul_desc_init)(matmul_desc_t *, const memory_desc_t *, const memory_desc_t *,
                                      const memory_desc_t *, const memory_desc_t *);
    status_t (*pd_create)(primitive_desc_t *, const void *, const void *, engine_t, const void *);
    status_t (*pd_query)(primitive_desc_t, int, int, void *);
    const memory_desc_t *(*pd_query_md)(primitive_desc_t, int, int);
    status_t (*pd_destroy)(primitive_desc_t);
    status_t (*reorder_pd_create)(primitive_desc_t *, const memory_desc_t *, engine_t,
                                       const memory_desc_t *, engine_t, const void *);
    status_t (*primitive_create)(primitive_t *, primitive_desc_t);
    status_t (*primitive_execute)(primitive_t, stream_t, int, const exec_arg_t *);
    status_t (*primitive_destroy)(primitive_t);
    status_t (*memory_create)(memory_t *, const memory_desc_t *, engine_t, void *);
    status_t (*memory_destroy)(memory_t);
    status_t (*attr_create)(primitive_attr_t *);
    status_t (*attr_set_post_ops)(primitive_attr_t, post_ops_t);
    status_t (*attr_set_scratchpad_mode)(primitive_attr_t, int);
    status_t (*attr_destroy)(primitive_attr_t);
    status_t (*post_ops_create)(post_ops_t *);
    status_t (*post_ops_append_sum)(post_ops_t, float);
    status_t (*post_ops_destroy)(post_ops_t);
    engine_t engine;
} api;

struct odnn_matmul {
    primitive_t primitive;
    memory_desc_t src, weights, dst, scratchpad;
    size_t scratchpad_size;
    int64_t k, n;
};

const char *odnn_bind(void *library) {
    if (api.engine) return 0;
#define BIND(field, symbol) if (!(*(void **)&api.field = dlsym(library, symbol))) return "missing " symbol;
    BIND(version, "dnnl_version")
    BIND(engine_create, "dnnl_engine_create")
    BIND(stream_create, "dnnl_stream_create")
    BIND(stream_wait, "dnnl_stream_wait")
    BIND(md_init_by_tag, "dnnl_memory_desc_init_by_tag")
    BIND(md_init_by_strides, "dnnl_memory_desc_init_by_strides")
    BIND(md_get_size, "dnnl_memory_desc_get_size")
    BIND(md_equal, "dnnl_memory_desc_equal")
    BIND(matmul_desc_init, "dnnl_matmul_desc_init")
    BIND(pd_create, "dnnl_primitive_desc_create")
    BIND(pd_query, "dnnl_primitive_desc_query")
    BIND(pd_query_md, "dnnl_primitive_desc_query_md")
    BIND(pd_destroy, "dnnl_primitive_desc_destroy")
    BIND(reorder_pd_create, "dnnl_reorder_primitive_desc_create")
    BIND(primitive_create, "dnnl_primitive_create")
    BIND(primitive_execute, "dnnl_primitive_execute")
    BIND(primitive_destroy, "dnnl_primitive_destroy")
    BIND(memory_create, "dnnl_memory_create")
    BIND(memory_destroy, "dnnl_memory_destroy")
    BIND(attr_create, "dnnl_primitive_attr_create")
    BIND(attr_set_post_ops, "dnnl_primitive_attr_set_post_ops")
    BIND(attr_set_scratchpad_mode, "dnnl_primitive_attr_set_scratchpad_mode")
    BIND(attr_destroy, "dnnl_primitive_attr_destroy")
    BIND(post_ops_create, "dnnl_post_ops_create")
    BIND(post_ops_append_sum, "dnnl_post_ops_append_sum")
    BIND(post_ops_destroy, "dnnl_post_ops_destroy")
#undef BIND
    // The structures above are oneDNN 2.x's; 3.x changed the API (and its soname).
    if (api.version()->major != 2) return "oneDNN is not version 2.x";
    engine_t engine;
    if (api.engine_create(&engine, odnn_cpu, 0) != odnn_success) return "no oneDNN CPU engine";
    api.engine = engine;
    return 0;
}

// The primitive's attributes: a scratchpad the caller passes (oneDNN's own is shared by all threads
// unless the library was built for concurrent execution, and the same primitive runs on several
// threads at once), and with `accumulate` a sum post-op (C = A·B + C).
static primitive_attr_t make_attr(int accumulate) {
    primitive_attr_t attr = 0;
    post_ops_t ops = 0;
    int ok = api.attr_create(&attr) == odnn_success
          && api.attr_set_scratchpad_mode(attr, odnn_scratchpad_mode_user) == odnn_success
          && (!accumulate || (api.post_ops_create(&ops) == odnn_success && api.post_ops_append_sum(ops, 1.0f) == odnn_success
                              && api.attr_set_post_ops(attr, ops) == odnn_success));
    if (ops) api.post_ops_destroy(ops);
    if (!ok && attr) { api.attr_destroy(attr); attr = 0; }
    return attr;
}

odnn_matmul *odnn_matmul_create(int64_t m, int64_t k, int64_t n, int trans_a, int64_t lda, int64_t ldc, int accumulate) {
    if (!api.engine) return 0;
    odnn_matmul *r = calloc(1, sizeof *r);
    if (!r) return 0;
    dims_t src = {m, k}, src_strides = {trans_a ? 1 : lda, trans_a ? lda : 1}, weights = {k, n};
    dims_t dst = {m, n}, dst_strides = {ldc, 1};
    matmul_desc_t desc;
    primitive_desc_t pd = 0;
    primitive_attr_t attr = make_attr(accumulate);
    const char *impl = 0;
    if (!attr
        || api.md_init_by_strides(&r->src, 2, src, odnn_f32, src_strides) != odnn_success
        || api.md_init_by_tag(&r->weights, 2, weights, odnn_f32, odnn_tag_any) != odnn_success
        || api.md_init_by_strides(&r->dst, 2, dst, odnn_f32, dst_strides) != odnn_success
        || api.matmul_desc_init(&desc, &r->src, &r->weights, 0, &r->dst) != odnn_success
        || api.pd_create(&pd, &desc, attr, api.engine, 0) != odnn_success
        || api.pd_query(pd, odnn_query_impl_info_str, 0, &impl) != odnn_success
        || !impl || strncmp(impl, "ref", 3) == 0) {   // the reference kernel is far slower than sgemm
        if (pd) api.pd_destroy(pd);
        if (attr) api.attr_destroy(attr);
        free(r);
        return 0;
    }
    if (attr) api.attr_destroy(attr);
    r->weights = *api.pd_query_md(pd, odnn_query_weights_md, 0);   // the layout the primitive chose
    r->scratchpad = *api.pd_query_md(pd, odnn_query_scratchpad_md, 0);
    r->scratchpad_size = api.md_get_size(&r->scratchpad);
    r->k = k;
    r->n = n;
    status_t status = api.primitive_create(&r->primitive, pd);
    api.pd_destroy(pd);
    if (status != odnn_success) { free(r); return 0; }
    return r;
}

void odnn_matmul_destroy(odnn_matmul *matmul) {
    if (!matmul) return;
    api.primitive_destroy(matmul->primitive);
    free(matmul);
}

size_t odnn_matmul_packed_size(const odnn_matmul *matmul) { return api.md_get_size(&matmul->weights); }

int odnn_matmul_same_packing(const odnn_matmul *a, const odnn_matmul *b) { return api.md_equal(&a->weights, &b->weights); }

// One stream per thread: oneDNN's streams are not to be shared between threads.
static stream_t thread_stream(void) {
    static _Thread_local stream_t stream;
    if (!stream && api.stream_create(&stream, api.engine, odnn_stream_default) != odnn_success) stream = 0;
    return stream;
}

// Executes `primitive` on memory objects made for this call around the caller's buffers (the same
// primitive may run on several threads at once; memory objects are cheap wrappers).
static int execute(primitive_t primitive, int count, const int *args, const memory_desc_t *const *descs,
                   void *const *buffers) {
    stream_t stream = thread_stream();
    if (!stream) return -1;
    exec_arg_t exec[4];
    int made = 0, status = 0;
    for (; made < count; made++) {
        exec[made].arg = args[made];
        if (api.memory_create(&exec[made].memory, descs[made], api.engine, buffers[made]) != odnn_success) { status = -1; break; }
    }
    if (status == 0 && (api.primitive_execute(primitive, stream, count, exec) != odnn_success
                        || api.stream_wait(stream) != odnn_success)) status = -1;
    while (made > 0) api.memory_destroy(exec[--made].memory);
    return status;
}

// This thread's scratchpad, grown to `size` bytes (kept: the next product wants the same).
static void *thread_scratchpad(size_t size) {
    static _Thread_local void *buffer;
    static _Thread_local size_t capacity;
    if (size > capacity) {
        free(buffer);
        capacity = (size + 4095) / 4096 * 4096;
        buffer = aligned_alloc(64, capacity);
        if (!buffer) capacity = 0;
    }
    return buffer;
}

int odnn_matmul_pack(const odnn_matmul *matmul, const float *b, int64_t ldb, int trans_b, void *packed) {
    dims_t plain = {matmul->k, matmul->n}, strides = {trans_b ? 1 : ldb, trans_b ? ldb : 1};
    memory_desc_t source, scratchpad;
    primitive_desc_t pd;
    primitive_t reorder;
    primitive_attr_t attr = make_attr(0);
    if (!attr) return -1;
    status_t status = api.md_init_by_strides(&source, 2, plain, odnn_f32, strides);
    if (status == odnn_success) status = api.reorder_pd_create(&pd, &source, api.engine, &matmul->weights, api.engine, attr);
    api.attr_destroy(attr);
    if (status != odnn_success) return -1;
    scratchpad = *api.pd_query_md(pd, odnn_query_scratchpad_md, 0);
    size_t scratchpad_size = api.md_get_size(&scratchpad);
    status = api.primitive_create(&reorder, pd);
    api.pd_destroy(pd);
    if (status != odnn_success) return -1;
    void *scratch = scratchpad_size ? thread_scratchpad(scratchpad_size) : 0;
    const int args[3] = {odnn_arg_from, odnn_arg_to, odnn_arg_scratchpad};
    const memory_desc_t *descs[3] = {&source, &matmul->weights, &scratchpad};
    void *buffers[3] = {(void *)b, packed, scratch};
    int result = scratchpad_size && !scratch ? -1 : execute(reorder, scratchpad_size ? 3 : 2, args, descs, buffers);
    api.primitive_destroy(reorder);
    return result;
}

int odnn_matmul_run(const odnn_matmul *matmul, const float *a, const void *packed, float *c) {
    void *scratchpad = matmul->scratchpad_size ? thread_scratchpad(matmul->scratchpad_size) : 0;
    if (matmul->scratchpad_size && !scratchpad) return -1;
    const int args[4] = {odnn_arg_src, odnn_arg_weights, odnn_arg_dst, odnn_arg_scratchpad};
    const memory_desc_t *descs[4] = {&matmul->src, &matmul->weights, &matmul->dst, &matmul->scratchpad};
    void *buffers[4] = {(void *)a, (void *)packed, c, scratchpad};
    return execute(matmul->primitive, matmul->scratchpad_size ? 4 : 3, args, descs, buffers);
}
