#include "ckernels.h"
#include "vector_helpers.h"

// Philox4x32 with 10 rounds (Salmon et al., SC 2011; the Random123 constants). Independent blocks:
// the loop over them vectorises, each lane one block.
MULTIVERSION
void ck_philox_words(uint64_t first_block, ptrdiff_t blocks, uint32_t k0, uint32_t k1, uint32_t r0, uint32_t r1,
                     uint32_t *restrict out) {
    for (ptrdiff_t i = 0; i < blocks; i++) {
        uint64_t b = first_block + (uint64_t)i;
        uint32_t c0 = (uint32_t)b, c1 = (uint32_t)(b >> 32), c2 = r0, c3 = r1;
        uint32_t key0 = k0, key1 = k1;
        for (int round = 0; round < 10; round++) {
            uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
            uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
            uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
            uint32_t n0 = hi1 ^ c1 ^ key0, n2 = hi0 ^ c3 ^ key1;
            c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
            key0 += 0x9E3779B9u;
            key1 += 0xBB67AE85u;
        }
        out[4 * i] = c0;
        out[4 * i + 1] = c1;
        out[4 * i + 2] = c2;
        out[4 * i + 3] = c3;
    }
}
