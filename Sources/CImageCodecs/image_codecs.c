// JPEG and PNG decoding/encoding with every libjpeg/libpng error caught (setjmp/longjmp) and turned
// into a message. Header sizes are validated before any pixel buffer is allocated.

#include "image_codecs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void ic_free(void *p) { free(p); }

int ic_sniff(const unsigned char *data, size_t size) {
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (data && size >= 8 && memcmp(data, png_sig, 8) == 0) return IC_FORMAT_PNG;
    if (data && size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return IC_FORMAT_JPEG;
    return IC_FORMAT_UNKNOWN;
}

/// The pixel limit of a decode: the caller's, never above IC_MAX_PIXELS.
static unsigned long long pixel_limit(long max_pixels) {
    return (max_pixels > 0 && max_pixels < IC_MAX_PIXELS) ? (unsigned long long)max_pixels : (unsigned long long)IC_MAX_PIXELS;
}

static int check_size_limit(unsigned long w, unsigned long h, unsigned long long limit, char *err, size_t errlen) {
    if (w == 0 || h == 0) {
        set_err(err, errlen, "image has zero size (%lux%lu)", w, h);
        return -1;
    }
    if ((unsigned long long)w > limit || (unsigned long long)h > limit ||
        (unsigned long long)w * (unsigned long long)h > limit) {
        set_err(err, errlen, "image size %lux%lu (%llu pixels) exceeds the limit of %llu pixels", w, h,
                (unsigned long long)w * (unsigned long long)h, limit);
        return -1;
    }
    return 0;
}

static int check_size(unsigned long w, unsigned long h, char *err, size_t errlen) {
    return check_size_limit(w, h, IC_MAX_PIXELS, err, errlen);
}

/// The largest JPEG reduction (libjpeg-turbo decodes at 1/2, 1/4, 1/8 from the DCT coefficients,
/// without the full-size pixels ever existing) whose output still covers min_w × min_h and fits the
/// pixel limit; 1 when the image fits as it is or no target was given.
static int jpeg_reduction(unsigned long w, unsigned long h, int min_w, int min_h, unsigned long long limit) {
    if ((unsigned long long)w * h <= limit || min_w <= 0 || min_h <= 0) return 1;
    for (int d = 8; d >= 2; d /= 2) {
        unsigned long sw = (w + d - 1) / d, sh = (h + d - 1) / d;
        if (sw >= (unsigned long)min_w && sh >= (unsigned long)min_h && (unsigned long long)sw * sh <= limit) return d;
    }
    return 1;
}

// MARK: - JPEG

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_err_ctx;

static void jpeg_error_exit_cb(j_common_ptr cinfo) {
    jpeg_err_ctx *ctx = (jpeg_err_ctx *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, ctx->message);
    longjmp(ctx->jump, 1);
}

// libjpeg only warns when data ends early (and pads with grey); a truncated file is an error for us,
// as it is for PIL. Other warnings (extraneous bytes, ...) are tolerated like PIL does.
static void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_err_ctx *ctx = (jpeg_err_ctx *)cinfo->err;
        (*cinfo->err->format_message)(cinfo, ctx->message);
        longjmp(ctx->jump, 1);
    }
    if (level < 0) cinfo->err->num_warnings++;
}

static void jpeg_output_message_cb(j_common_ptr cinfo) { (void)cinfo; }

static inline unsigned char muldiv255(unsigned int a, unsigned int b) {
    unsigned int t = a * b + 128;
    return (unsigned char)((t + (t >> 8)) >> 8);
}

static int decode_jpeg(const unsigned char *data, size_t size, int mode, long max_pixels, int min_w, int min_h,
                       ic_image *out, char *err, size_t errlen) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err_ctx jerr;
    unsigned char *volatile pixels = NULL;
    unsigned char *volatile rowbuf = NULL;

    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_error_exit_cb;
    jerr.pub.emit_message = jpeg_emit_message_cb;
    jerr.pub.output_message = jpeg_output_message_cb;
    jerr.message[0] = 0;

    if (setjmp(jerr.jump)) {
        set_err(err, errlen, "%s", jerr.message[0] ? jerr.message : "JPEG decoding failed");
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(rowbuf);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    // Bound libjpeg's own working memory (progressive/multi-scan coefficient buffers).
    cinfo.mem->max_memory_to_use = 1024L * 1024L * 1024L;
    jpeg_mem_src(&cinfo, (const unsigned char *)data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);

    unsigned long long limit = pixel_limit(max_pixels);
    int reduction = jpeg_reduction(cinfo.image_width, cinfo.image_height, min_w, min_h, limit);
    if (reduction > 1) {
        cinfo.scale_num = 1;
        cinfo.scale_denom = (unsigned int)reduction;
    } else if (check_size_limit(cinfo.image_width, cinfo.image_height, limit, err, errlen) != 0) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }

    int cmyk = 0, gray = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        gray = 1;
        cinfo.out_color_space = (mode == IC_MODE_NATIVE) ? JCS_GRAYSCALE : JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cmyk = 1;
        cinfo.out_color_space = JCS_CMYK;
        break;
    default:
        cinfo.out_color_space = JCS_RGB;
        break;
    }
    jpeg_start_decompress(&cinfo);

    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    int comps = cinfo.output_components;
    int channels = (gray && mode == IC_MODE_NATIVE) ? 1 : 3;
    if (check_size_limit((unsigned long)w, (unsigned long)h, limit, err, errlen) != 0 ||
        !((comps == 1 && channels == 1) || (comps == 3 && channels == 3) || (comps == 4 && cmyk))) {
        if (!err || !err[0]) set_err(err, errlen, "unexpected JPEG output layout (%d components)", comps);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    pixels = (unsigned char *)malloc((size_t)w * (size_t)h * (size_t)channels);
    rowbuf = (unsigned char *)malloc((size_t)w * (size_t)comps);
    if (!pixels || !rowbuf) {
        set_err(err, errlen, "out of memory for a %dx%d image", w, h);
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(rowbuf);
        return -1;
    }
    // Adobe writes CMYK inverted (the usual case in practice).
    int inverted = cmyk && cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < cinfo.output_height) {
        unsigned int y = cinfo.output_scanline;
        JSAMPROW row = (JSAMPROW)rowbuf;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            longjmp(jerr.jump, 1);
        }
        unsigned char *dst = pixels + (size_t)y * (size_t)w * (size_t)channels;
        if (cmyk) {
            for (int x = 0; x < w; x++) {
                unsigned int c = rowbuf[4 * x], m = rowbuf[4 * x + 1], yy = rowbuf[4 * x + 2], k = rowbuf[4 * x + 3];
                if (!inverted) { c = 255 - c; m = 255 - m; yy = 255 - yy; k = 255 - k; }
                dst[3 * x] = muldiv255(c, k);
                dst[3 * x + 1] = muldiv255(m, k);
                dst[3 * x + 2] = muldiv255(yy, k);
            }
        } else {
            memcpy(dst, rowbuf, (size_t)w * (size_t)channels);
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(rowbuf);

    out->width = w;
    out->height = h;
    out->channels = channels;
    out->format = IC_FORMAT_JPEG;
    out->source_kind = gray ? IC_KIND_GRAY : IC_KIND_COLOR;
    out->source_bit_depth = 8;
    out->pixels = pixels;
    return 0;
}

// MARK: - PNG

typedef struct {
    const unsigned char *data;
    size_t size;
    size_t pos;
    char message[256];
} png_read_ctx;

static void png_error_cb(png_structp png, png_const_charp msg) {
    png_read_ctx *ctx = (png_read_ctx *)png_get_error_ptr(png);
    if (ctx) snprintf(ctx->message, sizeof ctx->message, "%s", msg ? msg : "PNG error");
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_read_cb(png_structp png, png_bytep dst, size_t length) {
    png_read_ctx *ctx = (png_read_ctx *)png_get_io_ptr(png);
    if (length > ctx->size - ctx->pos) {
        png_error(png, "PNG data ends early (truncated file)");
    }
    memcpy(dst, ctx->data + ctx->pos, length);
    ctx->pos += length;
}

static int decode_png(const unsigned char *data, size_t size, int mode, long max_pixels, ic_image *out, char *err, size_t errlen) {
    png_read_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.data = data;
    ctx.size = size;

    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_error_cb, png_warning_cb);
    if (!png) {
        set_err(err, errlen, "cannot create PNG reader");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_err(err, errlen, "cannot create PNG reader");
        return -1;
    }
    unsigned char *volatile pixels = NULL;
    unsigned char *volatile temp = NULL;
    png_bytep *volatile rows = NULL;

    if (setjmp(png_jmpbuf(png))) {
        set_err(err, errlen, "%s", ctx.message[0] ? ctx.message : "PNG decoding failed");
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(temp);
        free(rows);
        return -1;
    }
    png_set_read_fn(png, &ctx, png_read_cb);
    png_set_user_limits(png, 0x7fffffffU, 0x7fffffffU);  // our own pixel-count check below
    png_set_chunk_malloc_max(png, 64u * 1024u * 1024u);
    png_read_info(png, info);

    png_uint_32 w = 0, h = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL);
    if (check_size_limit(w, h, pixel_limit(max_pixels), err, errlen) != 0) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }

    int kind = (color_type == PNG_COLOR_TYPE_PALETTE) ? IC_KIND_PALETTE
             : (color_type & PNG_COLOR_MASK_COLOR) ? IC_KIND_COLOR : IC_KIND_GRAY;
    int channels;
    int keep16 = 0;  // native 16-bit grey: read 16-bit samples, check them below
    if (mode == IC_MODE_NATIVE && kind != IC_KIND_COLOR) {
        channels = 1;
        if (kind == IC_KIND_PALETTE) {
            png_set_packing(png);  // 1/2/4-bit indices -> one byte each, values unchanged
        } else {
            if (bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
            if (bit_depth == 16) keep16 = 1;
        }
    } else {
        channels = 3;
        if (kind == IC_KIND_PALETTE) png_set_palette_to_rgb(png);
        if (kind == IC_KIND_GRAY) {
            if (bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
            png_set_gray_to_rgb(png);
        }
        if (bit_depth == 16) png_set_strip_16(png);  // high byte, as PIL does for 16-bit RGB
    }
    if (color_type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t rowbytes = png_get_rowbytes(png, info);
    size_t expected = (size_t)w * (size_t)channels * (keep16 ? 2 : 1);
    if (rowbytes != expected) {
        set_err(err, errlen, "unexpected PNG row layout (%zu bytes per row, expected %zu)", rowbytes, expected);
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    temp = (unsigned char *)malloc(rowbytes * (size_t)h);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (size_t)h);
    if (!temp || !rows) {
        set_err(err, errlen, "out of memory for a %ux%u image", (unsigned)w, (unsigned)h);
        png_destroy_read_struct(&png, &info, NULL);
        free(temp);
        free(rows);
        return -1;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = temp + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    rows = NULL;

    if (keep16) {
        // 16-bit grey, native: label masks store class ids at full value. Ids up to 255 (the ignore
        // value) are kept as they are; a larger one cannot be a class id here, so it is an error
        // naming the value and where it is (taking a byte of it would silently change the class).
        size_t n = (size_t)w * (size_t)h;
        for (size_t i = 0; i < n; i++) {
            unsigned value = ((unsigned)temp[2 * i] << 8) | temp[2 * i + 1];
            if (value > 255) {
                free(temp);
                set_err(err, errlen, "16-bit mask value %u at (x %zu, y %zu) is not a class id (0…254, or 255 = ignore)",
                        value, i % (size_t)w, i / (size_t)w);
                return -1;
            }
        }
        pixels = (unsigned char *)malloc(n);
        if (!pixels) {
            free(temp);
            set_err(err, errlen, "out of memory for a %ux%u image", (unsigned)w, (unsigned)h);
            return -1;
        }
        for (size_t i = 0; i < n; i++) pixels[i] = temp[2 * i + 1];
        free(temp);
    } else {
        pixels = temp;
    }
    out->width = (int)w;
    out->height = (int)h;
    out->channels = channels;
    out->format = IC_FORMAT_PNG;
    out->source_kind = kind;
    out->source_bit_depth = bit_depth;
    out->pixels = pixels;
    return 0;
}

int ic_decode(const unsigned char *data, size_t size, int mode, ic_image *out, char *err, size_t errlen) {
    return ic_decode_limited(data, size, mode, 0, 0, 0, out, err, errlen);
}

int ic_decode_limited(const unsigned char *data, size_t size, int mode, long max_pixels, int min_width, int min_height,
                      ic_image *out, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!out) {
        set_err(err, errlen, "no output");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (mode != IC_MODE_RGB && mode != IC_MODE_NATIVE) {
        set_err(err, errlen, "unknown decode mode %d", mode);
        return -1;
    }
    switch (ic_sniff(data, size)) {
    case IC_FORMAT_JPEG: return decode_jpeg(data, size, mode, max_pixels, min_width, min_height, out, err, errlen);
    case IC_FORMAT_PNG: return decode_png(data, size, mode, max_pixels, out, err, errlen);
    default:
        set_err(err, errlen, "not a JPEG or PNG file (unrecognised signature)");
        return -1;
    }
}

// MARK: - PNG encoding

typedef struct {
    unsigned char *buf;
    size_t size;
    size_t cap;
    int oom;
    char message[256];
} png_write_ctx;

static void png_write_cb(png_structp png, png_bytep src, size_t length) {
    png_write_ctx *ctx = (png_write_ctx *)png_get_io_ptr(png);
    if (length > SIZE_MAX - ctx->size) png_error(png, "PNG output too large");
    if (ctx->size + length > ctx->cap) {
        size_t cap = ctx->cap ? ctx->cap : 4096;
        while (cap < ctx->size + length) {
            if (cap > SIZE_MAX / 2) png_error(png, "PNG output too large");
            cap *= 2;
        }
        unsigned char *nb = (unsigned char *)realloc(ctx->buf, cap);
        if (!nb) {
            ctx->oom = 1;
            png_error(png, "out of memory while encoding PNG");
        }
        ctx->buf = nb;
        ctx->cap = cap;
    }
    memcpy(ctx->buf + ctx->size, src, length);
    ctx->size += length;
}

static void png_flush_cb(png_structp png) { (void)png; }

static void png_write_error_cb(png_structp png, png_const_charp msg) {
    png_write_ctx *ctx = (png_write_ctx *)png_get_error_ptr(png);
    if (ctx) snprintf(ctx->message, sizeof ctx->message, "%s", msg ? msg : "PNG error");
    png_longjmp(png, 1);
}

/// Grey (channels 1, palette NULL), palette-indexed (channels 1 with `colors` RGB entries) or RGB.
static int encode_png(const unsigned char *pixels, int width, int height, int channels,
                      const unsigned char *palette, int colors,
                      unsigned char **png_out, size_t *png_size, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!png_out || !png_size || !pixels) {
        set_err(err, errlen, "no pixels or output");
        return -1;
    }
    *png_out = NULL;
    *png_size = 0;
    if (channels != 1 && channels != 3) {
        set_err(err, errlen, "PNG encoding supports 1 or 3 channels, got %d", channels);
        return -1;
    }
    if (width <= 0 || height <= 0 || check_size((unsigned long)width, (unsigned long)height, err, errlen) != 0) {
        if (!err || !err[0]) set_err(err, errlen, "invalid image size %dx%d", width, height);
        return -1;
    }
    png_write_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_write_error_cb, png_warning_cb);
    if (!png) {
        set_err(err, errlen, "cannot create PNG writer");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        set_err(err, errlen, "cannot create PNG writer");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        set_err(err, errlen, "%s", ctx.message[0] ? ctx.message : "PNG encoding failed");
        png_destroy_write_struct(&png, &info);
        free(ctx.buf);
        free(rows);
        return -1;
    }
    png_set_write_fn(png, &ctx, png_write_cb, png_flush_cb);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : (palette ? PNG_COLOR_TYPE_PALETTE : PNG_COLOR_TYPE_GRAY),
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette) {
        png_color entries[256];
        for (int i = 0; i < colors; i++) {
            entries[i].red = palette[3 * i];
            entries[i].green = palette[3 * i + 1];
            entries[i].blue = palette[3 * i + 2];
        }
        png_set_PLTE(png, info, entries, colors);
    }
    png_write_info(png, info);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (size_t)height);
    if (!rows) png_error(png, "out of memory while encoding PNG");
    size_t stride = (size_t)width * (size_t)channels;
    for (int y = 0; y < height; y++) rows[y] = (png_bytep)(pixels + (size_t)y * stride);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    *png_out = ctx.buf;
    *png_size = ctx.size;
    return 0;
}

int ic_encode_png(const unsigned char *pixels, int width, int height, int channels,
                  unsigned char **png_out, size_t *png_size, char *err, size_t errlen) {
    return encode_png(pixels, width, height, channels, NULL, 0, png_out, png_size, err, errlen);
}

int ic_encode_png_palette(const unsigned char *indices, int width, int height, const unsigned char *palette, int colors,
                          unsigned char **png_out, size_t *png_size, char *err, size_t errlen) {
    if (!palette || colors < 1 || colors > 256) {
        if (err && errlen) set_err(err, errlen, "a PNG palette has 1 to 256 colours, got %d", colors);
        return -1;
    }
    return encode_png(indices, width, height, 1, palette, colors, png_out, png_size, err, errlen);
}

int ic_write_png_file(const char *path, const unsigned char *pixels, int width, int height, int channels,
                      char *err, size_t errlen) {
    unsigned char *buf = NULL;
    size_t n = 0;
    if (ic_encode_png(pixels, width, height, channels, &buf, &n, err, errlen) != 0) return -1;
    FILE *f = fopen(path, "wb");
    if (!f) {
        set_err(err, errlen, "cannot open for writing");
        free(buf);
        return -1;
    }
    size_t written = fwrite(buf, 1, n, f);
    int closed = fclose(f);
    free(buf);
    if (written != n || closed != 0) {
        set_err(err, errlen, "write failed");
        return -1;
    }
    return 0;
}

// ---- JPEG encoding (libjpeg-turbo) -------------------------------------------------------------

int ic_encode_jpeg(const unsigned char *pixels, int width, int height, int channels, int quality,
                   unsigned char **jpeg, size_t *jpeg_size, char *err, size_t errlen) {
    *jpeg = NULL;
    *jpeg_size = 0;
    if (width <= 0 || height <= 0 || (channels != 1 && channels != 3)) {
        set_err(err, errlen, "cannot encode a %dx%d image with %d channels as JPEG", width, height, channels);
        return -1;
    }
    if (check_size((unsigned long)width, (unsigned long)height, err, errlen) != 0) return -1;
    struct jpeg_compress_struct cinfo;
    jpeg_err_ctx ctx;
    unsigned char *buffer = NULL;
    unsigned long size = 0;
    cinfo.err = jpeg_std_error(&ctx.pub);
    ctx.pub.error_exit = jpeg_error_exit_cb;
    ctx.pub.output_message = jpeg_output_message_cb;
    ctx.message[0] = 0;
    if (setjmp(ctx.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        set_err(err, errlen, "JPEG encoding failed: %s", ctx.message);
        return -1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &buffer, &size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality < 1 ? 1 : (quality > 100 ? 100 : quality), TRUE);
    // 4:4:4: no chroma subsampling, so thin coloured structures (lane markings, windows) keep their colour.
    for (int c = 0; c < cinfo.num_components; c++) {
        cinfo.comp_info[c].h_samp_factor = 1;
        cinfo.comp_info[c].v_samp_factor = 1;
    }
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * (size_t)width * (size_t)channels);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *jpeg = buffer;
    *jpeg_size = (size_t)size;
    return 0;
}
