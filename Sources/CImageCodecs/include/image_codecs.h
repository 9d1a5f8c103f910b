#ifndef IMAGE_CODECS_H
#define IMAGE_CODECS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Small, safe wrappers over libjpeg(-turbo) and libpng. Both libraries report errors by longjmp,
/// which Swift cannot catch, so every call here catches them and returns an error string instead.
/// Nothing here ever aborts on bad input.

/// Largest image accepted (width * height), checked from the header before any pixel allocation.
#define IC_MAX_PIXELS (100L * 1000L * 1000L)

/// Container formats, detected from the leading bytes (not from a file name).
enum {
    IC_FORMAT_UNKNOWN = 0,
    IC_FORMAT_JPEG = 1,
    IC_FORMAT_PNG = 2,
};

/// What the decoder should produce.
enum {
    /// 8-bit RGB, 3 channels: grey is replicated, palettes are looked up, alpha is dropped
    /// (what PIL's `convert("RGB")` gives).
    IC_MODE_RGB = 0,
    /// The stored samples, for label masks: grey or palette images give 1 channel (the grey value,
    /// or the palette INDEX as PIL's mode "P" does; alpha dropped), colour images give 3 channels.
    IC_MODE_NATIVE = 1,
};

/// How the source stored its pixels (reported in `ic_image.source_kind`).
enum {
    IC_KIND_GRAY = 0,
    IC_KIND_PALETTE = 1,
    IC_KIND_COLOR = 2,
};

typedef struct ic_image {
    int width;
    int height;
    int channels;              ///< 1 or 3
    int format;                ///< IC_FORMAT_*
    int source_kind;           ///< IC_KIND_*
    int source_bit_depth;      ///< bits per sample in the file (1, 2, 4, 8 or 16)
    unsigned char *pixels;     ///< row-major HWC, width*height*channels bytes; free with ic_free
} ic_image;

/// The container format of `data` (IC_FORMAT_UNKNOWN if neither JPEG nor PNG).
int ic_sniff(const unsigned char *data, size_t size);

/// Decodes a JPEG or PNG held in memory. Returns 0 on success (and fills `out`; free `out->pixels`
/// with ic_free), or -1 with a message in `err` (always NUL-terminated when errlen > 0).
int ic_decode(const unsigned char *data, size_t size, int mode, ic_image *out, char *err, size_t errlen);

/// ic_decode with a pixel limit (0: IC_MAX_PIXELS; never above it), checked from the header before any
/// pixel is allocated. A JPEG above the limit is decoded at a reduced scale (1/2, 1/4 or 1/8, libjpeg-turbo's
/// DCT scaling) when the result still covers min_width × min_height (0: no reduction) and fits the limit;
/// `out` then holds the reduced size.
int ic_decode_limited(const unsigned char *data, size_t size, int mode, long max_pixels, int min_width, int min_height,
                      ic_image *out, char *err, size_t errlen);

/// Encodes 8-bit grey (channels 1) or RGB (channels 3) pixels as a baseline JPEG (libjpeg-turbo, quality
/// 1…100) in memory. Returns 0 with a malloc'd buffer in `*jpeg` (free with ic_free), or -1 with a message.
int ic_encode_jpeg(const unsigned char *pixels, int width, int height, int channels, int quality,
                   unsigned char **jpeg, size_t *jpeg_size, char *err, size_t errlen);

/// Encodes 8-bit grey (channels 1) or RGB (channels 3) pixels as a PNG in memory. Returns 0 on success
/// with a malloc'd buffer in `*png` (free with ic_free) of `*png_size` bytes, or -1 with a message.
int ic_encode_png(const unsigned char *pixels, int width, int height, int channels,
                  unsigned char **png, size_t *png_size, char *err, size_t errlen);

/// Encodes 8-bit indices as a palette PNG (colour type 3) whose palette holds `colors` (1…256) RGB triples:
/// viewers show the colours, readers of the samples (PIL's mode "P", IC_MODE_NATIVE) get the indices.
/// Indices must be below `colors`. Returns 0 with a malloc'd buffer, or -1 with a message.
int ic_encode_png_palette(const unsigned char *indices, int width, int height, const unsigned char *palette, int colors,
                          unsigned char **png, size_t *png_size, char *err, size_t errlen);

/// Encodes and writes a PNG file (written to `path` directly; callers wanting atomicity write to a
/// temporary name and rename). Returns 0 on success, -1 with a message.
int ic_write_png_file(const char *path, const unsigned char *pixels, int width, int height, int channels,
                      char *err, size_t errlen);

void ic_free(void *p);

#ifdef __cplusplus
}
#endif

#endif
