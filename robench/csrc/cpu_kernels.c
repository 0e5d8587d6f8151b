/* CPU kernels for robench (built by robench/native.py, called from robench/cpu_kernels.py): each
 * equals a torch path bit for bit.
 *
 * Compiled once per machine by robench.native with the system C compiler and called through
 * ctypes on a range of rows or elements, so that several threads can share one call.
 * Unsigned 32- and 64-bit arithmetic wraps, as the torch paths' int32 / int64 operators do.
 */
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__AVX__)
#include <immintrin.h>
#endif
/* jpeg_compression's DCTs and colour conversions, and pixelate's box passes, in SSE2's 16-bit lanes
 * (with a few of SSSE3's instructions) where the machine has them (x86-64 since Intel's Core 2 and
 * AMD's Bulldozer and Jaguar), unless ROBENCH_PORTABLE is defined: then the generic int32 lanes and
 * scalar loops, as on other machines. Where it also has FMA, two of each six divisions by 255 in
 * jpeg's conversion out, and pixelate's, are fused product-sums (levels_over_255); where it has
 * SSE4.1, the inverse DCTs clamp by packusdw (clamped_levels). The tests build these (portable,
 * SIMD with SSSE3 alone, with SSE4.1 but not AVX, and this machine's) and compare them. */
#if defined(__SSE2__) && defined(__SSSE3__) && !defined(ROBENCH_PORTABLE)
#include <emmintrin.h>
#include <tmmintrin.h>
#if defined(__SSE4_1__)
#include <smmintrin.h> /* packusdw (clamped_levels) */
#endif
#define SIMD_LANES 1
#else
#define SIMD_LANES 0
#endif

#define MIX1 0xBF58476D1CE4E5B9ULL
#define MIX2 0x94D049BB133111EBULL

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= MIX1;
    x ^= x >> 27;
    x *= MIX2;
    return x ^ (x >> 31);
}

static inline uint32_t lowbias32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7FEB352DU;
    x ^= x >> 15;
    x *= 0x846CA68BU;
    return x ^ (x >> 16);
}

/* The two 32-bit keys of a sample's stream `call` (BatchRNG: SplitMix64 of the seed and call). */
static inline void stream_key(int64_t seed, int64_t call, uint32_t *low, uint32_t *high) {
    const uint64_t key = mix64((uint64_t)seed ^ ((uint64_t)call * MIX1));
    *low = (uint32_t)key;
    *high = (uint32_t)(key >> 32);
}

/* Element `counter`'s 32-bit hash in the stream with these keys. */
static inline uint32_t hash(uint32_t counter, uint32_t low, uint32_t high) {
    return lowbias32(lowbias32(counter + low) ^ high);
}

enum { BITS = 0, UNIFORM = 1, NORMAL = 2 };

enum { DRAW = 0, GAUSSIAN = 1, SPECKLE = 2, IMPULSE = 3 };

static inline float clamp01(float value) { return value < 0.0f ? 0.0f : (value > 1.0f ? 1.0f : value); }

/* Eight float32 lanes (GCC / Clang vector extension: one AVX register, two SSE ones). */
typedef float lanes8 __attribute__((vector_size(32)));

static inline lanes8 load8(const float *p) {
    lanes8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The widest float32 vector of the machine for loops over columns: WIDE lanes (16 with AVX-512,
 * whose 512-bit registers made the blurs' sums 1.2-1.3x faster here, else 8). */
#if defined(__AVX512F__)
#define WIDE 16
#else
#define WIDE 8
#endif
typedef float wide_floats __attribute__((vector_size(4 * WIDE)));

static inline wide_floats load_wide(const float *p) {
    wide_floats v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* A normal value z as it is (DRAW) or as the noise it adds to x: GAUSSIAN x + sigma * z, SPECKLE
 * x * (1 + sigma * z), clamped to [0, 1]. */
static inline __attribute__((always_inline)) float with_noise(const int kind, float x, float z, float sigma) {
    return kind == DRAW ? z : clamp01(kind == GAUSSIAN ? x + sigma * z : x * (1.0f + sigma * z));
}

/* Normal values from the hashes of counters 0..hashed-1 under these keys, as BatchRNG.normal lays
 * them out (size values, hashed = ceil(size / 2)): value j from the low 16 bits of hash j, value
 * hashed + j from its high 16 bits; each passed through with_noise with its x and stored in y.
 * `kind` is a constant at each call, so each is its own vectorised loop. */
static inline __attribute__((always_inline)) void normal_loop(
    const int kind, int64_t size, uint32_t low, uint32_t high, const float *restrict table,
    float sigma, const float *restrict x, float *restrict y) {
    const int64_t hashed = (size + 1) / 2, pairs = size / 2;
    const float *restrict x_high = x + hashed;
    float *restrict y_high = y + hashed;
    for (int64_t j = 0; j < pairs; ++j) {
        const uint32_t h = hash((uint32_t)j, low, high);
        const float z_low = table[(int32_t)(h & 0xFFFF)], z_high = table[(int32_t)(h >> 16)];
        y[j] = with_noise(kind, kind == DRAW ? 0.0f : x[j], z_low, sigma);
        y_high[j] = with_noise(kind, kind == DRAW ? 0.0f : x_high[j], z_high, sigma);
    }
    if (pairs < hashed) { /* an odd size: the last hash's high half is not used */
        const float z_low = table[(int32_t)(hash((uint32_t)pairs, low, high) & 0xFFFF)];
        y[pairs] = with_noise(kind, kind == DRAW ? 0.0f : x[pairs], z_low, sigma);
    }
}

/* BatchRNG._draw for rows [row_begin, row_end): the hashes of element counters 0..hashed-1 of
 * streams first, first + 1, ... (stream[j] / counter[j] per column when streams > 1, else stream 0
 * and counter j), written as int32 bits, float32 uniforms in [0, 1) from the top 24 bits, or
 * (NORMAL, one stream, columns values) normal values as normal_loop lays them out. out is
 * (rows, columns) of int32 or float32. */
void robench_draw(const int64_t *seeds, int64_t row_begin, int64_t row_end, int64_t first,
                  int64_t streams, const int64_t *stream, const int32_t *counter, int64_t hashed,
                  int64_t columns, int mode, const float *table, void *out) {
    uint32_t low_one, high_one;
    uint32_t *low = &low_one, *high = &high_one;
    if (streams > 1) {
        low = malloc(2 * (size_t)streams * sizeof(uint32_t));
        if (low == NULL) abort();
        high = low + streams;
    }
    for (int64_t b = row_begin; b < row_end; ++b) {
        for (int64_t s = 0; s < streams; ++s) stream_key(seeds[b], first + s, &low[s], &high[s]);
        int32_t *restrict bits = (int32_t *)out + b * columns;
        float *restrict values = (float *)out + b * columns;
        const uint32_t l = low[0], h = high[0];
        if (streams > 1) {
            for (int64_t j = 0; j < hashed; ++j) {
                const int64_t s = stream[j];
                const uint32_t x = hash((uint32_t)counter[j], low[s], high[s]);
                if (mode == BITS) bits[j] = (int32_t)x;
                else values[j] = (float)(x >> 8) * (1.0f / 16777216.0f);
            }
        } else if (mode == BITS) {
            for (int64_t j = 0; j < hashed; ++j) bits[j] = (int32_t)hash((uint32_t)j, l, h);
        } else if (mode == UNIFORM) {
            for (int64_t j = 0; j < hashed; ++j)
                values[j] = (float)(hash((uint32_t)j, l, h) >> 8) * (1.0f / 16777216.0f);
        } else {
            normal_loop(DRAW, columns, l, h, table, 0.0f, NULL, values);
        }
    }
    if (streams > 1) free(low);
}

/* The noise corruptions for samples [row_begin, row_end) of `size` values each, hashing their
 * draws in place (stream `call` of each sample's seed, as one BatchRNG.normal / bits would):
 * GAUSSIAN x + sigma * z and SPECKLE x * (1 + sigma * z), clamped to [0, 1], with z from the
 * normal table, and IMPULSE: x replaced by the hash's lowest bit where its top 24 bits fall below
 * the threshold. parameter[b] is sample b's sigma (a float32 value) or threshold (an integer
 * below 2^24). */
void robench_noise(int kind, const float *images, const int64_t *seeds, int64_t call,
                   const double *parameter, const float *table, float *out, int64_t row_begin,
                   int64_t row_end, int64_t size) {
    for (int64_t b = row_begin; b < row_end; ++b) {
        uint32_t low, high;
        stream_key(seeds[b], call, &low, &high);
        const float *restrict x = images + b * size;
        float *restrict y = out + b * size;
        if (kind == IMPULSE) {
            const uint32_t threshold = (uint32_t)parameter[b];
            for (int64_t j = 0; j < size; ++j) {
                const uint32_t h = hash((uint32_t)j, low, high);
                const float salt = (float)(h & 1), value = x[j];
                y[j] = ((h >> 8) & 0xFFFFFF) < threshold ? salt : value;
            }
            continue;
        }
        const float sigma = (float)parameter[b];
        if (kind == GAUSSIAN) normal_loop(GAUSSIAN, size, low, high, table, sigma, x, y);
        else normal_loop(SPECKLE, size, low, high, table, sigma, x, y);
    }
}

/* _PoissonInverse.__call__'s count for one value, by its CPU tables: the guide gives how many of
 * row `row`'s thresholds are at most the start of k's bucket (2^guide_bits buckets), and those in
 * the bucket are walked one by one (each row is padded with 2^24, above every k); `walk` holds
 * each position's threshold and count side by side (width positions a row), so the walk's last
 * read is in the line of its answer. (The first two steps without a branch: 0.67x; the branch's
 * prediction lets the answer's load start before the compare.) */
static inline int32_t poisson_count(int32_t row, int32_t k, const int16_t *guide, const int32_t *walk, int64_t width,
                                    int guide_bits) {
    const int64_t bucket = ((int64_t)row << guide_bits) + (k >> (24 - guide_bits));
    const int32_t *pair = walk + 2 * ((int64_t)row * width + guide[bucket]);
    while (pair[0] <= k) pair += 2;
    return pair[1];
}

/* _PoissonInverse.__call__ for elements [begin, end) of int32 rows and uniforms k. */
void robench_poisson(const int32_t *rows, const int32_t *k, const int16_t *guide, const int32_t *walk, int64_t width,
                     int32_t *out, int64_t begin, int64_t end, int guide_bits) {
    for (int64_t i = begin; i < end; ++i) out[i] = poisson_count(rows[i], k[i], guide, walk, width, guide_bits);
}

/* ShotNoise.apply_mixed for samples [row_begin, row_end) of `size` values each: a value's uint8
 * level (x * 255 rounded half to even) picks the Poisson row first_row[b] + level, and the top 24
 * bits of its hash (stream `call`, as BatchRNG.bits would) the count (poisson_count); the count
 * over photons[b], clamped to [0, 1], is written to out. Returns how many values were outside
 * [0, 1] (or NaN): those are sampled at level 0, and the caller raises. SHOT_BLOCK values at a
 * time, in three loops: levels and hashes (vectorised), the walks (with nothing between them,
 * one walk's loads overlap the next's: 1.8x over one loop doing all steps of each value), and the
 * division and clamp (vectorised). */
#define SHOT_BLOCK 256
int64_t robench_shot_noise(const float *images, const int64_t *seeds, int64_t call,
                           const int64_t *first_row, const int64_t *photons, const int16_t *guide,
                           const int32_t *walk, int64_t width, float *out,
                           int64_t row_begin, int64_t row_end, int64_t size, int guide_bits) {
    int64_t outside = 0;
    for (int64_t b = row_begin; b < row_end; ++b) {
        uint32_t low, high;
        stream_key(seeds[b], call, &low, &high);
        const int32_t first = (int32_t)first_row[b];
        const float divisor = (float)photons[b];
        const float *x = images + b * size;
        float *y = out + b * size;
        for (int64_t j0 = 0; j0 < size; j0 += SHOT_BLOCK) {
            const int64_t n = size - j0 < SHOT_BLOCK ? size - j0 : SHOT_BLOCK;
            int32_t rows[SHOT_BLOCK], ks[SHOT_BLOCK], counts[SHOT_BLOCK];
            for (int64_t i = 0; i < n; ++i) { /* vectorised */
                const float level = nearbyintf(x[j0 + i] * 255.0f);
                const int inside = level >= 0.0f && level <= 255.0f;
                outside += !inside;
                rows[i] = first + (inside ? (int32_t)level : 0);
                ks[i] = (int32_t)((hash((uint32_t)(j0 + i), low, high) >> 8) & 0xFFFFFF);
            }
            for (int64_t i = 0; i < n; ++i) counts[i] = poisson_count(rows[i], ks[i], guide, walk, width, guide_bits);
            for (int64_t i = 0; i < n; ++i) y[j0 + i] = clamp01((float)counts[i] / divisor); /* vectorised */
        }
    }
    return outside;
}

/* One pass of Pillow's BOX resize, `count` lines at a time: output line o sums input lines
 * [lo[o], hi[o]) (each `count` values, `stride` apart) and, with weights, rounds
 * (sum * weight[o] + 2^21) >> 22 and clips to 0..255 (Pillow's 22-bit fixed point); without
 * (every output a single tap), the sum is the level. Vectorised along the lines. */
static void box_pass(const int32_t *restrict in, int32_t *restrict out, int64_t outputs, int64_t count,
                     const int32_t *lo, const int32_t *hi, const int32_t *weight) {
    for (int64_t o = 0; o < outputs; ++o) {
        int32_t *restrict sum = out + o * count;
        for (int64_t k = 0; k < count; ++k) sum[k] = 0;
        for (int32_t i = lo[o]; i < hi[o]; ++i)
            for (int64_t k = 0; k < count; ++k) sum[k] += in[i * count + k];
        if (weight == NULL) continue;
        const int32_t scale = weight[o]; /* in int32 as Pillow: the product stays below 2^31 */
        for (int64_t k = 0; k < count; ++k) {
            const int32_t value = (sum[k] * scale + (1 << 21)) >> 22;
            sum[k] = value < 0 ? 0 : (value > 255 ? 255 : value);
        }
    }
}

/* Eight int32 lanes, and an 8 x 8 transpose in registers (three rounds of interleaving). */
typedef int32_t int_lanes8 __attribute__((vector_size(32)));
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define SHUFFLE8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shufflevector(a, b, i0, i1, i2, i3, i4, i5, i6, i7)
#endif
#endif
#ifndef SHUFFLE8
#define SHUFFLE8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shuffle(a, b, (int_lanes8){i0, i1, i2, i3, i4, i5, i6, i7})
#define SHUFFLE_SHORT8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) \
    __builtin_shuffle(a, b, (short_lanes8){i0, i1, i2, i3, i4, i5, i6, i7})
#else
#define SHUFFLE_SHORT8 SHUFFLE8
#endif

/* Eight int16 lanes (one SSE register), and four int32 ones of the same bits. */
typedef int16_t short_lanes8 __attribute__((vector_size(16)));
typedef int32_t int_lanes4 __attribute__((vector_size(16)));

static inline short_lanes8 load_short8(const int16_t *p) {
    short_lanes8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Each lane clamped to 0 .. 255. */
static inline int_lanes8 clamp255_lanes(int_lanes8 v) {
    v &= ~(v < 0); /* comparisons give -1 (all bits) where true */
    const int_lanes8 over = v > 255;
    return (v & ~over) | (over & 255);
}

static inline void transpose8(int_lanes8 r[8]) {
    int_lanes8 t[8], u[8];
    for (int i = 0; i < 8; i += 2) { /* pairs of rows, 32-bit interleaved */
        t[i] = SHUFFLE8(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = SHUFFLE8(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4) { /* quads of rows, 64-bit interleaved */
        u[i] = SHUFFLE8(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 1] = SHUFFLE8(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[i + 2] = SHUFFLE8(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 3] = SHUFFLE8(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int i = 0; i < 4; ++i) { /* u[i] holds columns i and i + 4 of rows 0-3, u[i + 4] of rows 4-7 */
        r[i] = SHUFFLE8(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[i + 4] = SHUFFLE8(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

/* Whole-batch outputs go past the caches once a thread's share of them is this large (16 MiB):
 * a streamed (non-temporal) store costs no read of the line it overwrites, a third of a copy's
 * memory traffic (1.6x faster over a 154 MB batch here); smaller outputs stay in cache for
 * whoever reads them next. Kernels that stream call stream_end() before returning. */
#define STREAM_MIN_FLOATS ((int64_t)1 << 22)

static inline int streams(int64_t floats) { return floats >= STREAM_MIN_FLOATS; }

/* Orders the streamed stores (pixelate's with AVX, jpeg's movntps in the SIMD build) before
 * whatever the caller does next (another thread's reads). */
static inline void stream_end(void) {
#if defined(__x86_64__) && (defined(__AVX__) || SIMD_LANES)
    _mm_sfence();
#endif
}

/* upscale_row's loads and permutations made once for a call: group g of eight columns loads
 * from up_col[8g] and permutes by up_col[8g + i] - up_col[8g] (w / 8 groups; none without GCC's
 * variable shuffle). */
typedef struct {
    int64_t groups;
    int32_t *first;   /* up_col[8g] */
    int32_t *offsets; /* [8g + i]: up_col[8g + i] - up_col[8g] */
} upscale_plan;

static upscale_plan upscale_plan_make(const int32_t *up_col, int64_t w) {
    upscale_plan plan = {0, NULL, NULL};
#if defined(__GNUC__) && !defined(__clang__)
    plan.groups = w / 8;
    plan.first = malloc((size_t)(plan.groups + 1) * sizeof(int32_t));
    plan.offsets = malloc((size_t)(8 * plan.groups + 8) * sizeof(int32_t));
    if (plan.first == NULL || plan.offsets == NULL) abort();
    for (int64_t g = 0; g < plan.groups; ++g) {
        plan.first[g] = up_col[8 * g];
        for (int i = 0; i < 8; ++i) plan.offsets[8 * g + i] = up_col[8 * g + i] - up_col[8 * g];
    }
#endif
    (void)up_col, (void)w;
    return plan;
}

static void upscale_plan_free(upscale_plan *plan) {
    free(plan->first);
    free(plan->offsets);
}

/* out[c] = source[up_col[c]] for c in [0, w), up_col non-decreasing by at most 1 per column (an
 * upscale): eight columns read at most eight consecutive source values, one load and one
 * permutation (GCC's variable shuffle; elsewhere one column at a time). Reads up to 7 values past
 * the source's last used one. */
static inline void upscale_row(const float *restrict source, float *restrict out, const int32_t *restrict up_col,
                               int64_t w) {
    int64_t c = 0;
#if defined(__GNUC__) && !defined(__clang__)
    for (; c + 8 <= w; c += 8) {
        int_lanes8 index;
        memcpy(&index, up_col + c, sizeof index);
        const int32_t first = up_col[c];
        const lanes8 values = load8(source + first), picked = __builtin_shuffle(values, index - first);
        memcpy(out + c, &picked, sizeof picked);
    }
#endif
    for (; c < w; ++c) out[c] = source[up_col[c]];
}

/* One upscaled row by its plan (as upscale_row; see upscale_plan). */
static inline void upscale_row_planned(const float *restrict source, float *restrict out,
                                       const int32_t *restrict up_col, const upscale_plan *plan, int64_t w) {
    int64_t c = 0;
#if defined(__GNUC__) && !defined(__clang__)
    for (int64_t g = 0; g < plan->groups; ++g, c += 8) {
        int_lanes8 offsets;
        memcpy(&offsets, plan->offsets + c, sizeof offsets);
        const lanes8 picked = __builtin_shuffle(load8(source + plan->first[g]), offsets);
        memcpy(out + c, &picked, sizeof picked);
    }
#endif
    (void)plan;
    for (; c < w; ++c) out[c] = source[up_col[c]];
}

#if defined(__x86_64__) && defined(__AVX__)
/* Eight floats from src to dst, streamed (dst 32-byte aligned) if `stream`, a constant at each call. */
static inline __attribute__((always_inline)) void put8(float *dst, const float *src, const int stream) {
    if (stream)
        _mm256_stream_ps(dst, _mm256_loadu_ps(src));
    else
        _mm256_storeu_ps(dst, _mm256_loadu_ps(src));
}

/* put_floats_fetching's body, `stream` a constant at each call. */
static inline __attribute__((always_inline)) void put_rows_fetching(float *restrict dst, const float *restrict src,
                                                                    int64_t n, const float *ahead, const int stream) {
    int64_t i = 0;
    if (stream)
        for (; i < n && ((uintptr_t)(dst + i) & 31); ++i) dst[i] = src[i];
    __builtin_prefetch(ahead, 0, 3);
    for (; i + 16 <= n; i += 16) {
        __builtin_prefetch(ahead + i, 0, 3);
        put8(dst + i, src + i, stream);
        put8(dst + i + 8, src + i + 8, stream);
    }
    if (i + 8 <= n) {
        put8(dst + i, src + i, stream);
        i += 8;
    }
    for (; i < n; ++i) dst[i] = src[i];
    __builtin_prefetch(ahead + n - 1, 0, 3);
}
#endif

/* dst[0 .. n) = src[0 .. n) (src a row in cache), streamed if `stream` (with AVX: from dst's
 * first 32-byte boundary on), each line (16 floats) of the n floats at `ahead` fetched into the
 * cache as it goes (a hint, never a fault): one loop for both. */
static inline void put_floats_fetching(float *restrict dst, const float *restrict src, int64_t n, int stream,
                                       const float *ahead) {
#if defined(__x86_64__) && defined(__AVX__)
    if (stream)
        put_rows_fetching(dst, src, n, ahead, 1);
    else
        put_rows_fetching(dst, src, n, ahead, 0);
#else
    (void)stream;
    memcpy(dst, src, (size_t)n * sizeof(float));
    for (int64_t c = 0; c < n; c += 16) __builtin_prefetch(ahead + c, 0, 3);
#endif
}

/* Pixelate's upscale of a small plane (small_w wide) into an h x w plane y: output row r copies
 * small row up_row[r] at columns up_col, made once in `row` for the rows that repeat it. With each
 * row written, row r of the plane `next` (the next input, or NULL) is fetched into the cache: its
 * reads from memory overlap these writes instead of waiting their turn after them (at 2 threads,
 * 224 px: 1.19x). */
static void upscale_plane(const float *small, int64_t small_w, const int32_t *up_row, const int32_t *up_col,
                          const upscale_plan *plan, int64_t h, int64_t w, float *restrict row, float *y, int stream,
                          const float *next) {
    for (int64_t r = 0; r < h; ++r) {
        if (r == 0 || up_row[r] != up_row[r - 1])
            upscale_row_planned(small + up_row[r] * small_w, row, up_col, plan, w);
        put_floats_fetching(y + r * w, row, w, stream, next != NULL ? next + r * w : row); /* row: in cache */
    }
}

/* box_pass over eight lines side by side: in[c] holds element c of each (eight int32, in[c * 8 + k]
 * for line k), out[o] likewise. */
static void box_pass8(const int32_t *restrict in, int32_t *restrict out, int64_t outputs, const int32_t *lo,
                      const int32_t *hi, const int32_t *weight) {
    for (int64_t o = 0; o < outputs; ++o) {
        int_lanes8 sum = {0, 0, 0, 0, 0, 0, 0, 0}, value;
        for (int32_t i = lo[o]; i < hi[o]; ++i) {
            memcpy(&value, in + 8 * i, sizeof value);
            sum += value;
        }
        if (weight != NULL) { /* in int32 as Pillow: the product stays below 2^31 */
            sum = clamp255_lanes((sum * weight[o] + (1 << 21)) >> 22);
        }
        memcpy(out + 8 * o, &sum, sizeof sum);
    }
}

#if SIMD_LANES
static int windows_fit16(const int32_t *lo, const int32_t *hi, int64_t outputs);
static void pixelate16(const float *images, float *out, int64_t begin, int64_t end, int64_t h, int64_t w,
                       int64_t small_h, int64_t small_w, const int32_t *col_lo, const int32_t *col_hi,
                       const int32_t *col_weight, const int32_t *row_lo, const int32_t *row_hi,
                       const int32_t *row_weight, const int32_t *up_row, const int32_t *up_col);
#endif

/* Pixelate.apply for planes [begin, end) of h x w floats: uint8 levels (x * 255 rounded half to
 * even), Pillow's two-pass BOX downscale to small_h x small_w (columns, then rows), / 255, and
 * the upscale, where output pixel (y, x) copies small pixel (up_row[y], up_col[x]). The plane
 * goes by bands of eight rows, each transposed in cache (8 x 8 tiles in registers) so that the
 * column pass adds whole vectors, eight rows at a time, and transposed back into the narrow
 * plane, whose row pass adds whole lines; each distinct upscaled row is built once and written
 * to the rows that repeat it. With SSE2, passes whose windows are all at most 64 wide go to
 * pixelate16 instead (the same steps in int16 lanes). */
void robench_pixelate(const float *images, float *out, int64_t begin, int64_t end, int64_t h,
                      int64_t w, int64_t small_h, int64_t small_w, const int32_t *col_lo,
                      const int32_t *col_hi, const int32_t *col_weight, const int32_t *row_lo,
                      const int32_t *row_hi, const int32_t *row_weight, const int32_t *up_row,
                      const int32_t *up_col) {
#if SIMD_LANES
    if (windows_fit16(col_lo, col_hi, small_w) && windows_fit16(row_lo, row_hi, small_h)) {
        pixelate16(images, out, begin, end, h, w, small_h, small_w, col_lo, col_hi, col_weight, row_lo, row_hi,
                   row_weight, up_row, up_col);
        return;
    }
#endif
    int32_t *band = calloc((size_t)(16 * w + 8 * small_w + (h + small_h) * small_w), sizeof(int32_t));
    float *small = malloc((size_t)(small_h * small_w + 8 + w) * sizeof(float)); /* + 8: upscale_row reads ahead */
    if (band == NULL || small == NULL) abort();
    int32_t *columns = band + 8 * w, *picked = columns + 8 * w, *narrow = picked + 8 * small_w;
    int32_t *low = narrow + h * small_w;
    float *row = small + small_h * small_w + 8; /* the upscaled row, written to each row that repeats it */
    const int stream = streams((end - begin) * h * w);
    upscale_plan plan = upscale_plan_make(up_col, w);
    for (int64_t p = begin; p < end; ++p) {
        const float *restrict x = images + p * h * w;
        for (int64_t r0 = 0; r0 < h; r0 += 8) {
            const int64_t rows = h - r0 < 8 ? h - r0 : 8; /* a short last band: its other lanes go unused */
            for (int64_t i = 0; i < rows; ++i) {
                int32_t *restrict level = band + i * w;
                const float *restrict source = x + (r0 + i) * w;
                for (int64_t c = 0; c < w; ++c) level[c] = (int32_t)nearbyintf(source[c] * 255.0f);
            }
            int64_t c0 = 0;
            for (; c0 + 8 <= w; c0 += 8) {
                int_lanes8 tile[8];
                for (int i = 0; i < 8; ++i) memcpy(&tile[i], band + i * w + c0, sizeof tile[i]);
                transpose8(tile);
                memcpy(columns + 8 * c0, tile, sizeof tile);
            }
            for (; c0 < w; ++c0)
                for (int i = 0; i < 8; ++i) columns[8 * c0 + i] = band[i * w + c0];
            box_pass8(columns, picked, small_w, col_lo, col_hi, col_weight);
            int64_t j0 = 0;
            for (; j0 + 8 <= small_w; j0 += 8) {
                int_lanes8 tile[8];
                memcpy(tile, picked + 8 * j0, sizeof tile);
                transpose8(tile);
                for (int64_t i = 0; i < rows; ++i) memcpy(narrow + (r0 + i) * small_w + j0, &tile[i], sizeof tile[i]);
            }
            for (; j0 < small_w; ++j0)
                for (int64_t i = 0; i < rows; ++i) narrow[(r0 + i) * small_w + j0] = picked[8 * j0 + i];
        }
        box_pass(narrow, low, small_h, small_w, row_lo, row_hi, row_weight);
        for (int64_t i = 0; i < small_h * small_w; ++i) small[i] = (float)low[i] / 255.0f;
        upscale_plane(small, small_w, up_row, up_col, &plan, h, w, row, out + p * h * w, stream,
                      p + 1 < end ? x + h * w : NULL);
    }
    stream_end();
    upscale_plan_free(&plan);
    free(band);
    free(small);
}

/* ---- Zoom blur (plugins/distortions/blur.py: zoom_total) ---- */

/* zoom_total for planes [begin, end) of h x w floats: each plane plus its clipped zoom by each of
 * `factors` zooms, added in order. Zoom k reads the crop at (top, left) of crop_h x crop_w
 * (ints[7k .. 7k + 3]) as torch's align-corners bilinear resize does for output pixel (y + trim_top,
 * x + trim_left) (ints[7k + 4], ints[7k + 5]): source = scale * index in float32 (scales[2k], [2k + 1]),
 * truncated, the next row or column unless at the crop's last, weights 1 - l and l, rounded as
 * torch's CPU kernel that resize takes (ints[7k + 6]): 0, its generic kernel,
 * fma(wy0, fma(wx0, a, wx1 * b), wy1 * fma(wx0, c, wx1 * d)); 1, its channels-last kernel, the
 * four corner weights' products wy0 * wx0, ... summed as fma(d, w11, fma(c, w10, fma(a, w00, b * w01))).
 * The row and column tables of every zoom are made once; each output row gathers its zooms' four
 * corners with upscale_row's permutations (from a copy of the plane: it reads ahead) and
 * accumulates in cache. A positive `divisor` gives ZoomBlur's mean instead: the sum / divisor,
 * clamped to [0, 1]. */
void robench_zoom_total(const float *images, float *out, int64_t begin, int64_t end, int64_t h, int64_t w,
                        int64_t factors, const int32_t *ints, const float *scales, float divisor) {
    int32_t *row_at = malloc((size_t)(factors * (2 * h + 2 * w)) * sizeof(int32_t));
    float *weights = malloc((size_t)(factors * (2 * h + 2 * w) + 5 * w + h * w + 8) * sizeof(float));
    if (row_at == NULL || weights == NULL) abort();
    int32_t *row_step = row_at + factors * h, *col_at = row_step + factors * h, *col_next = col_at + factors * w;
    float *wy = weights, *wx = weights + factors * 2 * h, *acc = wx + factors * 2 * w;
    float *corner = acc + w; /* a row's four corners per column: a, b (top row), c, d (the row below) */
    float *plane = corner + 4 * w; /* the plane, + 8: upscale_row reads ahead */
    for (int64_t k = 0; k < factors; ++k) {
        const int32_t *g = ints + 7 * k;
        for (int64_t y = 0; y < h; ++y) {
            const float source = scales[2 * k] * (float)(y + g[4]);
            const int32_t y0 = (int32_t)source;
            const float l = source - (float)y0;
            row_at[k * h + y] = (g[0] + y0) * (int32_t)w + g[1];
            row_step[k * h + y] = y0 < g[2] - 1 ? (int32_t)w : 0;
            wy[2 * (k * h + y)] = 1.0f - l;
            wy[2 * (k * h + y) + 1] = l;
        }
        for (int64_t x = 0; x < w; ++x) { /* a scale under 1: columns advance by 0 or 1 (upscale_row) */
            const float source = scales[2 * k + 1] * (float)(x + g[5]);
            const int32_t x0 = (int32_t)source;
            const float l = source - (float)x0;
            col_at[k * w + x] = x0;
            col_next[k * w + x] = x0 < g[3] - 1 ? x0 + 1 : x0;
            wx[k * 2 * w + x] = 1.0f - l;
            wx[k * 2 * w + w + x] = l;
        }
    }
    for (int64_t p = begin; p < end; ++p) {
        memcpy(plane, images + p * h * w, (size_t)(h * w) * sizeof(float));
        for (int64_t y = 0; y < h; ++y) {
            memcpy(acc, plane + y * w, (size_t)w * sizeof(float));
            for (int64_t k = 0; k < factors; ++k) {
                const float *top = plane + row_at[k * h + y], *below = top + row_step[k * h + y];
                const float wy0 = wy[2 * (k * h + y)], wy1 = wy[2 * (k * h + y) + 1];
                const float *restrict wx0 = wx + k * 2 * w, *restrict wx1 = wx0 + w;
                float *restrict a = corner, *restrict b = a + w, *restrict c = b + w, *restrict d = c + w;
                upscale_row(top, a, col_at + k * w, w);
                upscale_row(top, b, col_next + k * w, w);
                upscale_row(below, c, col_at + k * w, w);
                upscale_row(below, d, col_next + k * w, w);
                float *restrict sum = acc;
                if (ints[7 * k + 6]) { /* torch's channels-last kernel */
                    for (int64_t x = 0; x < w; ++x) {
                        const float w00 = wy0 * wx0[x], w01 = wy0 * wx1[x], w10 = wy1 * wx0[x], w11 = wy1 * wx1[x];
                        sum[x] += fmaf(d[x], w11, fmaf(c[x], w10, fmaf(a[x], w00, b[x] * w01)));
                    }
                    continue;
                }
                for (int64_t x = 0; x < w; ++x)
                    sum[x] += fmaf(wy0, fmaf(wx0[x], a[x], wx1[x] * b[x]), wy1 * fmaf(wx0[x], c[x], wx1[x] * d[x]));
            }
            if (divisor > 0.0f) /* ZoomBlur's mean, clamped as torch's clamp_ (NaN stays) */
                for (int64_t x = 0; x < w; ++x) acc[x] = clamp01(acc[x] / divisor);
            memcpy(out + p * h * w + y * w, acc, (size_t)w * sizeof(float));
        }
    }
    free(row_at);
    free(weights);
}

/* ---- JPEG round trip (plugins/distortions/_jpeg.py, libjpeg's integer arithmetic) ---- */

enum { F0298 = 2446, F0390 = 3196, F0541 = 4433, F0765 = 6270, F0899 = 7373, F1175 = 9633,
       F1501 = 12299, F1847 = 15137, F1961 = 16069, F2053 = 16819, F2562 = 20995, F3072 = 25172 };

/* One 1-D pass of jpeg_fdct_islow over v[0 .. 7] (eight transforms side by side, one per lane),
 * before its descale (outputs 0 and 4 scaled by 2^13 like the others, as _fdct_butterfly). The
 * int32 lanes hold every value: libjpeg's own bound for 8-bit samples (its INT32 intermediates). */
static inline void fdct_lanes(int_lanes8 *v) {
    const int_lanes8 t0 = v[0] + v[7], t1 = v[1] + v[6], t2 = v[2] + v[5], t3 = v[3] + v[4];
    const int_lanes8 t7 = v[0] - v[7], t6 = v[1] - v[6], t5 = v[2] - v[5], t4 = v[3] - v[4];
    const int_lanes8 t10 = t0 + t3, t13 = t0 - t3, t11 = t1 + t2, t12 = t1 - t2;
    v[0] = (t10 + t11) * 8192;
    v[4] = (t10 - t11) * 8192;
    const int_lanes8 z = (t12 + t13) * F0541;
    v[2] = z + t13 * F0765;
    v[6] = z - t12 * F1847;
    const int_lanes8 z5 = (t4 + t6 + t5 + t7) * F1175;
    const int_lanes8 z1 = (t4 + t7) * -F0899, z2 = (t5 + t6) * -F2562;
    const int_lanes8 z3 = (t4 + t6) * -F1961 + z5, z4 = (t5 + t7) * -F0390 + z5;
    v[7] = t4 * F0298 + z1 + z3;
    v[5] = t5 * F2053 + z2 + z4;
    v[3] = t6 * F3072 + z2 + z3;
    v[1] = t7 * F1501 + z1 + z4;
}

/* One 1-D pass of jpeg_idct_islow over v[0 .. 7], eight side by side, before its descale. */
static inline void idct_lanes(int_lanes8 *v) {
    const int_lanes8 d0 = v[0], d1 = v[1], d2 = v[2], d3 = v[3], d4 = v[4], d5 = v[5], d6 = v[6], d7 = v[7];
    const int_lanes8 z = (d2 + d6) * F0541;
    const int_lanes8 tmp2 = z - d6 * F1847, tmp3 = z + d2 * F0765;
    const int_lanes8 tmp0 = (d0 + d4) * 8192, tmp1 = (d0 - d4) * 8192;
    const int_lanes8 tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
    const int_lanes8 z5 = (d7 + d3 + d5 + d1) * F1175;
    const int_lanes8 z1 = (d7 + d1) * -F0899, z2 = (d5 + d3) * -F2562;
    const int_lanes8 z3 = (d7 + d3) * -F1961 + z5, z4 = (d5 + d1) * -F0390 + z5;
    const int_lanes8 t0 = d7 * F0298 + z1 + z3, t1 = d5 * F2053 + z2 + z4;
    const int_lanes8 t2 = d3 * F3072 + z2 + z3, t3 = d1 * F1501 + z1 + z4;
    v[0] = tmp10 + t3;
    v[1] = tmp11 + t2;
    v[2] = tmp12 + t1;
    v[3] = tmp13 + t0;
    v[4] = tmp13 - t0;
    v[5] = tmp12 - t1;
    v[6] = tmp11 - t2;
    v[7] = tmp10 - t3;
}

#if !SIMD_LANES
/* Encode and decode a (rows x cols) plane of int16 levels, both multiples of 8, block by block in
 * place with the quantisation table (natural order): FDCT rows then columns, rounding quantisation of
 * |coef| / 8q (half up, sign restored), dequantisation, IDCT columns then rows, + 128, clamped.
 * A block is eight vectors, its rows; the row passes run on it transposed. */
static void code_plane(int16_t *plane, int64_t rows, int64_t cols, const int32_t *table) {
    int_lanes8 divisor[8], half[8], quant[8];
    lanes8 reciprocal[8];
    for (int u = 0; u < 8; ++u) {
        for (int k = 0; k < 8; ++k) {
            quant[u][k] = table[u * 8 + k];
            divisor[u][k] = 8 * table[u * 8 + k];
            half[u][k] = divisor[u][k] / 2;
            reciprocal[u][k] = 1.0f / (float)divisor[u][k];
        }
    }
    for (int64_t by = 0; by < rows; by += 8) {
        for (int64_t bx = 0; bx < cols; bx += 8) {
            int_lanes8 v[8];
            for (int r = 0; r < 8; ++r)
                v[r] = __builtin_convertvector(load_short8(plane + (by + r) * cols + bx), int_lanes8) - 128;
            transpose8(v); /* the row pass */
            fdct_lanes(v);
            for (int i = 0; i < 8; ++i) v[i] = (v[i] + 1024) >> 11;
            transpose8(v); /* the column pass */
            fdct_lanes(v);
            for (int u = 0; u < 8; ++u) {
                v[u] = (v[u] + 16384) >> 15;
                /* level = (magnitude + d / 2) / d rounded down: a float32 estimate, off by at most one
                 * (the quotient stays below 2^15), then set right by the remainder */
                const int_lanes8 sign = v[u] >> 31, dividend = ((v[u] ^ sign) - sign) + half[u];
                lanes8 estimate = __builtin_convertvector(dividend, lanes8) * reciprocal[u];
                int_lanes8 level = __builtin_convertvector(estimate, int_lanes8);
                const int_lanes8 remainder = dividend - level * divisor[u];
                level -= remainder >= divisor[u]; /* a true comparison is -1 */
                level += remainder < 0;
                v[u] = ((level ^ sign) - sign) * quant[u];
            }
            idct_lanes(v); /* the column pass */
            for (int i = 0; i < 8; ++i) v[i] = (v[i] + 1024) >> 11;
            transpose8(v); /* the row pass */
            idct_lanes(v);
            for (int i = 0; i < 8; ++i) v[i] = clamp255_lanes(((v[i] + 131072) >> 18) + 128);
            transpose8(v);
            for (int r = 0; r < 8; ++r) {
                const short_lanes8 levels = __builtin_convertvector(v[r], short_lanes8);
                memcpy(plane + (by + r) * cols + bx, &levels, sizeof levels);
            }
        }
    }
}
#endif

/* Eight values x * 255 clamped to [0, 255] and rounded half to even (+ then - 1.5 * 2^23: exact in
 * this range, so nearbyintf's result): the scalar loop's levels, as floats. Written with vectors
 * because GCC vectorised the scalar loop by carrying the clamp's three cases through every product
 * of the colour transform and blending them (some 130 instructions for four pixels). */
static inline lanes8 level_lanes(lanes8 x) {
    const lanes8 v = x * 255.0f, top = (lanes8){0} + 255.0f;
    const int_lanes8 below = v < (lanes8){0}, above = v > top; /* -1 where true */
    int_lanes8 bits, top_bits;
    memcpy(&bits, &v, sizeof bits);
    memcpy(&top_bits, &top, sizeof top_bits);
    bits = (bits & ~below & ~above) | (top_bits & above);
    lanes8 clamped;
    memcpy(&clamped, &bits, sizeof clamped);
    return (clamped + 12582912.0f) - 12582912.0f;
}

#if SIMD_LANES
/* code_plane's arithmetic in 16-bit lanes (SSE2), libjpeg-turbo's way: every multiply of its
 * 1-D passes is one of pmaddwd's pairs, a * ca + b * cb summed in int32 from int16 lanes, so a
 * block row takes one SSE register (the int32 lanes take two, and the first Zen splits those
 * into halves anyway). The sums are the int32 path's integer sums, regrouped (z1 .. z5 folded
 * into each pair's constants), so equal. Between the passes the values fit int16, as in
 * libjpeg-turbo's SIMD code: the FDCT's first pass gives 4x a row DCT of levels - 128 (under
 * 5,700; it takes the levels themselves, and its output 0, 4x a row's sum, under 2^13, has
 * 4 x 8 x 128 taken off after: outputs 1 .. 7 sum weights that sum to 0), the coefficients lie
 * under 2^13, and the IDCT's first pass gives 4x a column's inverse (under 2^14 with the
 * quantisation's error, and under 2^15 with DC_BIAS added to its row 0); descale16 would
 * saturate where they did not. The tests compare this path with the generic one
 * (ROBENCH_PORTABLE) on every DCT basis function's sign pattern at full contrast. */
typedef struct {
    __m128i lo, hi; /* lanes 0-3 and 4-7, int32 */
} pair_sums;

/* The int16 pair (a, b) as one int32 lane's bits, and in each int32 lane: pmaddwd's constants. */
static inline int32_t pair_bits(int a, int b) { return (int32_t)(((uint32_t)(uint16_t)b << 16) | (uint16_t)a); }

static inline __m128i pair16(int a, int b) { return _mm_set1_epi32(pair_bits(a, b)); }

static inline pair_sums madd16(__m128i a, __m128i b, int ca, int cb) {
    const __m128i c = pair16(ca, cb);
    return (pair_sums){_mm_madd_epi16(_mm_unpacklo_epi16(a, b), c), _mm_madd_epi16(_mm_unpackhi_epi16(a, b), c)};
}

static inline pair_sums add_sums(pair_sums x, pair_sums y) {
    return (pair_sums){_mm_add_epi32(x.lo, y.lo), _mm_add_epi32(x.hi, y.hi)};
}

static inline pair_sums sub_sums(pair_sums x, pair_sums y) {
    return (pair_sums){_mm_sub_epi32(x.lo, y.lo), _mm_sub_epi32(x.hi, y.hi)};
}

/* x >> shift in each lane, back to int16 (descale16 with its rounding already added) */
static inline __m128i shift16(pair_sums x, int shift) {
    return _mm_packs_epi32(_mm_srai_epi32(x.lo, shift), _mm_srai_epi32(x.hi, shift));
}

/* (x + 2^(shift - 1)) >> shift in each lane, back to int16 (saturating: never reached here) */
static inline __m128i descale16(pair_sums x, int shift) {
    const __m128i half = _mm_set1_epi32(1 << (shift - 1));
    return shift16(add_sums(x, (pair_sums){half, half}), shift);
}

/* fdct_lanes on int16 lanes, descaled by `shift` (11, then 15: nothing else). */
static inline void fdct16(__m128i *v, int shift) {
    const __m128i t0 = _mm_add_epi16(v[0], v[7]), t1 = _mm_add_epi16(v[1], v[6]);
    const __m128i t2 = _mm_add_epi16(v[2], v[5]), t3 = _mm_add_epi16(v[3], v[4]);
    const __m128i t7 = _mm_sub_epi16(v[0], v[7]), t6 = _mm_sub_epi16(v[1], v[6]);
    const __m128i t5 = _mm_sub_epi16(v[2], v[5]), t4 = _mm_sub_epi16(v[3], v[4]);
    const __m128i t10 = _mm_add_epi16(t0, t3), t13 = _mm_sub_epi16(t0, t3);
    const __m128i t11 = _mm_add_epi16(t1, t2), t12 = _mm_sub_epi16(t1, t2);
    /* outputs 0 and 4, (8192 (t10 +- t11) + 2^(shift - 1)) >> shift, without multiplies (the first
     * Zen has one pipe for them): 4 (t10 +- t11) in the row pass, (t10 +- t11 + 2) >> 2 in the column
     * pass, whose sums are 4x a 2-D coefficient's in [-32768, 32640] (levels -128 .. 127), as in
     * libjpeg-turbo's jfdctint-sse2 */
    const __m128i sum = _mm_add_epi16(t10, t11), difference = _mm_sub_epi16(t10, t11);
    if (shift == 11) {
        v[0] = _mm_slli_epi16(sum, 2);
        v[4] = _mm_slli_epi16(difference, 2);
    } else {
        v[0] = _mm_srai_epi16(_mm_add_epi16(sum, _mm_set1_epi16(2)), 2);
        v[4] = _mm_srai_epi16(_mm_add_epi16(difference, _mm_set1_epi16(2)), 2);
    }
    v[2] = descale16(madd16(t13, t12, F0541 + F0765, F0541), shift);  /* z + t13 F0765 */
    v[6] = descale16(madd16(t13, t12, F0541, F0541 - F1847), shift);  /* z - t12 F1847 */
    const __m128i z3 = _mm_add_epi16(t4, t6), z4 = _mm_add_epi16(t5, t7);
    /* descale16's rounding added once to each shared sum */
    const pair_sums half = {_mm_set1_epi32(1 << (shift - 1)), _mm_set1_epi32(1 << (shift - 1))};
    const pair_sums z3z5 = add_sums(madd16(z3, z4, F1175 - F1961, F1175), half); /* z3 -F1961 + z5 */
    const pair_sums z4z5 = add_sums(madd16(z3, z4, F1175, F1175 - F0390), half); /* z4 -F0390 + z5 */
    v[7] = shift16(add_sums(madd16(t4, t7, F0298 - F0899, -F0899), z3z5), shift);
    v[1] = shift16(add_sums(madd16(t4, t7, -F0899, F1501 - F0899), z4z5), shift);
    v[5] = shift16(add_sums(madd16(t5, t6, F2053 - F2562, -F2562), z4z5), shift);
    v[3] = shift16(add_sums(madd16(t5, t6, -F2562, F3072 - F2562), z3z5), shift);
}

/* idct_lanes on int16 lanes, with its eight outputs' sums (before the descale) in out. */
static inline void idct16(const __m128i *v, pair_sums *out) {
    const pair_sums tmp3 = madd16(v[2], v[6], F0541 + F0765, F0541), tmp2 = madd16(v[2], v[6], F0541, F0541 - F1847);
    const pair_sums tmp0 = madd16(v[0], v[4], 8192, 8192), tmp1 = madd16(v[0], v[4], 8192, -8192);
    const pair_sums tmp10 = add_sums(tmp0, tmp3), tmp13 = sub_sums(tmp0, tmp3);
    const pair_sums tmp11 = add_sums(tmp1, tmp2), tmp12 = sub_sums(tmp1, tmp2);
    const __m128i z3 = _mm_add_epi16(v[7], v[3]), z4 = _mm_add_epi16(v[5], v[1]);
    const pair_sums z3z5 = madd16(z3, z4, F1175 - F1961, F1175), z4z5 = madd16(z3, z4, F1175, F1175 - F0390);
    const pair_sums t0 = add_sums(madd16(v[7], v[1], F0298 - F0899, -F0899), z3z5);
    const pair_sums t3 = add_sums(madd16(v[7], v[1], -F0899, F1501 - F0899), z4z5);
    const pair_sums t1 = add_sums(madd16(v[5], v[3], F2053 - F2562, -F2562), z4z5);
    const pair_sums t2 = add_sums(madd16(v[5], v[3], -F2562, F3072 - F2562), z3z5);
    out[0] = add_sums(tmp10, t3);
    out[7] = sub_sums(tmp10, t3);
    out[1] = add_sums(tmp11, t2);
    out[6] = sub_sums(tmp11, t2);
    out[2] = add_sums(tmp12, t1);
    out[5] = sub_sums(tmp12, t1);
    out[3] = add_sums(tmp13, t0);
    out[4] = sub_sums(tmp13, t0);
}

static inline void transpose16(__m128i r[8]) { /* 8 x 8 int16: 16-, 32-, then 64-bit interleaving */
    __m128i a[8], b[8];
    for (int i = 0; i < 8; i += 2) {
        a[i] = _mm_unpacklo_epi16(r[i], r[i + 1]);
        a[i + 1] = _mm_unpackhi_epi16(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        b[i] = _mm_unpacklo_epi32(a[i], a[i + 2]);
        b[i + 1] = _mm_unpackhi_epi32(a[i], a[i + 2]);
        b[i + 2] = _mm_unpacklo_epi32(a[i + 1], a[i + 3]);
        b[i + 3] = _mm_unpackhi_epi32(a[i + 1], a[i + 3]);
    }
    for (int i = 0; i < 4; ++i) {
        r[2 * i] = _mm_unpacklo_epi64(b[i], b[i + 4]);
        r[2 * i + 1] = _mm_unpackhi_epi64(b[i], b[i + 4]);
    }
}

/* x saturated to int16, as packssdw does. */
static inline int32_t saturate16(int32_t x) { return x < -32768 ? -32768 : (x > 32767 ? 32767 : x); }

/* Whether every AC coefficient of an 8 x 8 block whose levels lie within `range` of each other
 * quantises to zero under table (natural order), by a bound on jpeg_fdct_islow's integer passes.
 * Each pass's output k sums weights M[k] (fdct16's folded constants; their magnitudes sum to
 * l1[k]) over its inputs. For k > 0 the weights sum to 0, so adding a constant to the inputs
 * changes nothing; the first pass's output 0 (4x its row's sum, no rounding) varies with the rows
 * by 4 x 8 x range / 2 at most once their common part is taken out, which the second pass's
 * outputs v > 0 cancel, and its outputs u > 0 are within l1[u] range / 2^12 + 1/2. The second
 * pass's |c| is then within (l1[v] d + 2^14) / 2^15, and c quantises to zero when |c| < 4q. */
static int flat_enough(const int32_t *table, int64_t range) {
    static const int64_t l1[8] = {65536, 59386, 60544, 59380, 65536, 59386, 60548, 59384};
    for (int u = 0; u < 8; ++u) {
        /* 4096 x the bound on the first pass's output u */
        const int64_t first = u == 0 ? 16 * 4096 * range : l1[u] * range + 2048;
        for (int v = 0; v < 8; ++v)
            if ((u | v) != 0 && (l1[v] * first + ((int64_t)16384 << 12)) / ((int64_t)32768 << 12) >= 4 * table[v * 8 + u])
                return 0;
    }
    return 1;
}

/* The widest range of levels (largest minus smallest, 0 .. 255) that flat_enough allows under
 * table; -1 if none. */
static int32_t flat_range(const int32_t *table) {
    int32_t lo = -1, hi = 255; /* flat_enough is monotone in the range */
    while (lo < hi) {
        const int32_t mid = (lo + hi + 1) / 2;
        if (flat_enough(table, mid))
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* An 8 x 8 block of plane left with its DC coefficient dc alone: every pixel the inverse passes'
 * arithmetic on that one value (8192 x, descaled by 11, then 18), + 128, clamped to 0 .. 255. */
static inline void fill_dc(int16_t *plane, int64_t cols, int64_t by, int64_t bx, int32_t dc) {
    const int32_t column = saturate16((dc * 8192 + 1024) >> 11);
    const int32_t level = saturate16((column * 8192 + (1 << 17)) >> 18) + 128;
    const __m128i fill = _mm_set1_epi16((int16_t)(level < 0 ? 0 : (level > 255 ? 255 : level)));
    for (int r = 0; r < 8; ++r) _mm_storeu_si128((__m128i *)(plane + (by + r) * cols + bx), fill);
}

/* An inverse row pass's sums (DC_BIAS in them) as levels: >> 18, as int16, clamped to 0 .. 255
 * (top: 255 in each lane). SSE4.1's packusdw clamps at 0 as it packs. */
static inline __m128i clamped_levels(pair_sums sums, __m128i top) {
    const __m128i lo = _mm_srai_epi32(sums.lo, 18), hi = _mm_srai_epi32(sums.hi, 18);
#if defined(__SSE4_1__)
    return _mm_min_epi16(_mm_packus_epi32(lo, hi), top);
#else
    return _mm_min_epi16(_mm_max_epi16(_mm_packs_epi32(lo, hi), _mm_setzero_si128()), top);
#endif
}

/* What the inverse's row pass adds to its DC input, 4112: 8192 x 4112 = 2^17 + 128 x 2^18, the
 * final descale's rounding and the levels' + 128 at once (as jidctint adds them to its DC), as
 * every output sums 8192 x the DC input. */
#define DC_BIAS ((1 << 4) + (128 << 5))

/* One quantisation table's constants for code_plane16, in its rows' int16 lanes (natural order).
 * The quotient floor(n / d), n = |coefficient| + d / 2 (below 2^14 + 2^10), d = 8q, is two
 * pmulhuw: ((n m) >> 16) 2^(17 - l) >> 16 with 2^(l - 1) < d <= 2^l and m = ceil(2^(15 + l) / d)
 * (below 2^16), exact for every q of 1 .. 255 (the baseline tables' range) and every n below 2^15
 * (checked). A block coded as its DC alone quantises the DC by the float reciprocal r = 1 / d
 * rounded up by 2^-23 to 2^-22 of itself: n r, rounded, lies at or above n / d and below the next
 * whole number (n / d + 1 - 1 / d times (1 + 2^-21) stays under it while (n / d + 1) d < 2^20). */
typedef struct {
    __m128i half[8], quant[8], multiplier[8], scale[8]; /* d / 2, q, m, 2^(17 - l) */
    __m128i corner_quant;                               /* rows 0 and 1's q, interleaved (lanes 0-3) */
    float dc_reciprocal;                                /* r of the DC's d */
    int32_t dc_quant;                                   /* the DC's q */
} quantiser16;

static void make_quantiser16(const int32_t *table, quantiser16 *z) {
    for (int u = 0; u < 8; ++u) {
        int16_t half[8], quant[8], multiplier[8], scale[8];
        for (int k = 0; k < 8; ++k) {
            const int32_t q = table[u * 8 + k], d = 8 * q;
            int l = 3; /* d >= 8 */
            while ((1 << l) < d) ++l;
            half[k] = (int16_t)(4 * q);
            quant[k] = (int16_t)q;
            multiplier[k] = (int16_t)(uint16_t)(((1 << (15 + l)) + d - 1) / d);
            scale[k] = (int16_t)(1 << (17 - l));
        }
        z->half[u] = _mm_loadu_si128((const __m128i *)half);
        z->quant[u] = _mm_loadu_si128((const __m128i *)quant);
        z->multiplier[u] = _mm_loadu_si128((const __m128i *)multiplier);
        z->scale[u] = _mm_loadu_si128((const __m128i *)scale);
    }
    z->corner_quant = _mm_unpacklo_epi16(z->quant[0], z->quant[1]);
    z->dc_reciprocal = (float)(1.0 / (8.0 * table[0]) * (1.0 + 0x3p-24));
    z->dc_quant = table[0];
}

/* code_plane in 16-bit lanes, quantised by z (make_quantiser16's; the product level * q fits
 * int16). A block whose levels span no more than `flat` (flat_range's for this table; -1: no
 * block is tested) is coded as its DC alone. */
static void code_plane16(int16_t *plane, int64_t rows, int64_t cols, const quantiser16 *z, int32_t flat) {
    const float dc_reciprocal = z->dc_reciprocal;
    /* the 2 x 2 shortcut's pmaddwd pairs (8192, K) for outputs 0 .. 7 of a pass: K is +K[y] for
     * y < 4, -K[7 - y] after */
    const int odd[4] = {F1501 - F0899 + F1175 - F0390, F1175, F1175 - F0390, F1175 - F0899};
    __m128i corner_row[2]; /* each output's pair; outputs 0-3 and 4-7 in int32 lanes */
    int32_t lanes[8];
    for (int y = 0; y < 8; ++y) lanes[y] = pair_bits(8192, y < 4 ? odd[y] : -odd[7 - y]);
    corner_row[0] = _mm_loadu_si128((const __m128i *)lanes);
    corner_row[1] = _mm_loadu_si128((const __m128i *)(lanes + 4));
    for (int64_t by = 0; by < rows; by += 8) {
        for (int64_t bx = 0; bx < cols; bx += 8) {
            __m128i v[8];
            for (int r = 0; r < 8; ++r)
                v[r] = _mm_loadu_si128((const __m128i *)(plane + (by + r) * cols + bx)); /* levels, not centred */
            if (flat >= 0) { /* levels within `flat` of each other: only the DC can survive (flat_range) */
                __m128i top = v[0], bottom = v[0], sum = v[0];
                for (int r = 1; r < 8; ++r) {
                    top = _mm_max_epi16(top, v[r]);
                    bottom = _mm_min_epi16(bottom, v[r]);
                    sum = _mm_add_epi16(sum, v[r]); /* 8 levels: within int16 */
                }
                top = _mm_max_epi16(top, _mm_shuffle_epi32(top, 0x4E));
                bottom = _mm_min_epi16(bottom, _mm_shuffle_epi32(bottom, 0x4E));
                top = _mm_max_epi16(top, _mm_shuffle_epi32(top, 0xB1));
                bottom = _mm_min_epi16(bottom, _mm_shuffle_epi32(bottom, 0xB1));
                top = _mm_max_epi16(top, _mm_shufflelo_epi16(top, 0xB1));
                bottom = _mm_min_epi16(bottom, _mm_shufflelo_epi16(bottom, 0xB1));
                if ((int16_t)_mm_cvtsi128_si32(top) - (int16_t)_mm_cvtsi128_si32(bottom) <= flat) {
                    /* the DC: both passes' output 0, (4 x sum + 2) >> 2, is the sum of levels - 128 */
                    __m128i total = _mm_madd_epi16(sum, _mm_set1_epi16(1));
                    total = _mm_add_epi32(total, _mm_shuffle_epi32(total, 0x4E));
                    total = _mm_add_epi32(total, _mm_shuffle_epi32(total, 0xB1));
                    const int32_t dc = _mm_cvtsi128_si32(total) - 64 * 128, q = z->dc_quant;
                    /* floor((|dc| + 4q) / 8q) by the quantiser's float reciprocal (|dc| <= 8192: exact) */
                    const int32_t value = (int32_t)((float)((dc < 0 ? -dc : dc) + 4 * q) * dc_reciprocal) * q;
                    fill_dc(plane, cols, by, bx, dc < 0 ? -value : value);
                    continue;
                }
            }
            transpose16(v); /* the row pass */
            fdct16(v, 11);
            v[0] = _mm_sub_epi16(v[0], _mm_set1_epi16(4 * 8 * 128)); /* the levels centred: only output 0 moves */
            transpose16(v); /* the column pass */
            fdct16(v, 15);
            /* sign * floor((|c| + 4q) / 8q): SSSE3's pabsw, then psignw. The product by q comes after the
             * shortcuts' tests, for the coefficients each uses (the 2 x 2's four, or all 64): 87% of
             * blocks need no more than four of the 64 */
            for (int u = 0; u < 8; ++u) {
                const __m128i dividend = _mm_add_epi16(_mm_abs_epi16(v[u]), z->half[u]);
                const __m128i quotient = _mm_mulhi_epu16(_mm_mulhi_epu16(dividend, z->multiplier[u]), z->scale[u]);
                v[u] = _mm_sign_epi16(quotient, v[u]); /* 0 stays 0 */
            }
            /* a block whose only coefficient left is its DC (47% of the benchmark's blocks at 224 px,
             * severity 3): every pixel the same, the inverse passes' arithmetic on that one value (as
             * libjpeg's jidctint skips columns of zeros) */
            __m128i high = v[2]; /* rows 2 .. 7, zero in both shortcuts */
            for (int u = 3; u < 8; ++u) high = _mm_or_si128(high, v[u]);
            const __m128i rest =
                _mm_or_si128(_mm_or_si128(_mm_and_si128(v[0], _mm_set_epi16(-1, -1, -1, -1, -1, -1, -1, 0)), v[1]), high);
            if (_mm_movemask_epi8(_mm_cmpeq_epi16(rest, _mm_setzero_si128())) == 0xFFFF) {
                fill_dc(plane, cols, by, bx, (int16_t)_mm_cvtsi128_si32(v[0]) * z->dc_quant);
                continue;
            }
            /* a block whose coefficients left are in its top left 2 x 2 (87% of the benchmark's blocks
             * at 224 px, severity 3, DC-only ones included): idct16's sums with the rest zero are
             * 8192 d0 +- K d1 in each pass (K the odd part's folded constants), so each output row is
             * two pmaddwd of its column-pass pair (w_y0, w_y1), and no transposes */
            const __m128i corner =
                _mm_or_si128(_mm_and_si128(_mm_or_si128(v[0], v[1]), _mm_set_epi16(-1, -1, -1, -1, -1, -1, 0, 0)), high);
            if (_mm_movemask_epi8(_mm_cmpeq_epi16(corner, _mm_setzero_si128())) == 0xFFFF) {
                /* (d0v, d1v) in int32 lane v, times q */
                const __m128i pairs = _mm_mullo_epi16(_mm_unpacklo_epi16(v[0], v[1]), z->corner_quant);
                const __m128i top = _mm_set1_epi16(255);
                /* the column pass for all eight rows y at once: w_yv in lane y of columns[v] */
                __m128i columns[2];
                for (int c = 0; c < 2; ++c) {
                    const __m128i pair = _mm_shuffle_epi32(pairs, c == 0 ? 0x00 : 0x55); /* (d0c, d1c) in every lane */
                    columns[c] = descale16((pair_sums){_mm_madd_epi16(pair, corner_row[0]),
                                                       _mm_madd_epi16(pair, corner_row[1])}, 11);
                }
                columns[0] = _mm_add_epi16(columns[0], _mm_set1_epi16(DC_BIAS)); /* the row pass's DC inputs */
                const __m128i rows[2] = {_mm_unpacklo_epi16(columns[0], columns[1]),
                                         _mm_unpackhi_epi16(columns[0], columns[1])}; /* (w_y0, w_y1) in lane y % 4 */
                for (int y = 0; y < 8; ++y) {
                    const __m128i row = _mm_shuffle_epi32(rows[y / 4], (y % 4) * 0x55); /* (w_y0, w_y1) in every lane */
                    const pair_sums sums = {_mm_madd_epi16(row, corner_row[0]), _mm_madd_epi16(row, corner_row[1])};
                    _mm_storeu_si128((__m128i *)(plane + (by + y) * cols + bx), clamped_levels(sums, top));
                }
                continue;
            }
            for (int u = 0; u < 8; ++u) v[u] = _mm_mullo_epi16(v[u], z->quant[u]); /* times q */
            pair_sums sums[8];
            idct16(v, sums); /* the column pass */
            for (int i = 0; i < 8; ++i) v[i] = descale16(sums[i], 11);
            transpose16(v); /* the row pass */
            v[0] = _mm_add_epi16(v[0], _mm_set1_epi16(DC_BIAS)); /* its DC inputs */
            idct16(v, sums);
            const __m128i top = _mm_set1_epi16(255);
            for (int i = 0; i < 8; ++i) /* clamped to 0 .. 255 */
                v[i] = clamped_levels(sums[i], top);
            transpose16(v);
            for (int r = 0; r < 8; ++r) _mm_storeu_si128((__m128i *)(plane + (by + r) * cols + bx), v[r]);
        }
    }
}
#define CODE_PLANE(plane, rows, cols, table, quantiser, flat) code_plane16(plane, rows, cols, quantiser, flat)
#else
#define CODE_PLANE(plane, rows, cols, table, quantiser, flat) code_plane(plane, rows, cols, table)
#endif /* SIMD_LANES */

static inline int64_t clamp_index(int64_t i, int64_t size) { return i < 0 ? 0 : (i >= size ? size - 1 : i); }

#if SIMD_LANES
/* Eight levels x * 255 rounded half to even (cvtps2dq in the default rounding mode, as
 * nearbyintf), saturated to int16. */
static inline __m128i raw_levels16(const float *p) {
    const __m128 scale = _mm_set1_ps(255.0f);
    return _mm_packs_epi32(_mm_cvtps_epi32(_mm_mul_ps(_mm_loadu_ps(p), scale)),
                           _mm_cvtps_epi32(_mm_mul_ps(_mm_loadu_ps(p + 4), scale)));
}

/* Eight levels (x * 255 clamped to [0, 255], rounded half to even by cvtps2dq in the default
 * rounding mode, as nearbyintf) in int16 lanes. */
static inline __m128i levels16(const float *p) {
    const __m128 top = _mm_set1_ps(255.0f), zero = _mm_setzero_ps();
    const __m128 a = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_loadu_ps(p), top), zero), top);
    const __m128 b = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_loadu_ps(p + 4), top), zero), top);
    return _mm_packs_epi32(_mm_cvtps_epi32(a), _mm_cvtps_epi32(b));
}

/* Whether any of the int16 levels OR'd into `bits` lies outside 0 .. 255 (has a bit past 0xFF). */
static inline int outside_levels(__m128i bits) {
    return _mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(bits, _mm_set1_epi16((int16_t)0xFF00)), _mm_setzero_si128())) !=
           0xFFFF;
}
#endif

/* jccolor.c's chroma offset and rounding: 128 in 16.16 fixed point, plus one half less one. */
#define YCC_CHROMA_OFFSET ((128 << 16) + (1 << 15) - 1)

#if SIMD_LANES
/* ycc_row for eight pixels' levels in 16-bit lanes, in pmaddwd's pairs of products (the first Zen
 * has one pipe for them): the luma's sum L = 19595 R + 38470 G + 7471 B as (R, G) . (19595, 22086)
 * + (G, B) . (16384, 7471) (38470 is beyond int16; as jccolext-sse2 splits it), each chroma's as
 * one pair, its 32768 B (or R) added after the shift. The roundings are pavgw's (a + b + 1) >> 1
 * of 16-bit lanes, so no constant is added to the int32 sums:
 * - luma: (L + 2^15) >> 16 = ((L >> 15) + 1) >> 1;
 * - blue: jccolor.c's (2^15 B - S + 128 2^16 + 2^15 - 1) >> 16, S = 11059 R + 21709 G, is
 *   (255 - (S >> 15) + B + 1) >> 1 (write S = 2^15 a + s, s < 2^15: the sum's low part
 *   2^15 - 1 - s stays under 2^15, and (B - a) / 2 is whole or a half), and red the same with
 *   S = 27439 G + 5329 B and R.
 * Exact for every (R, G, B) of 0 .. 255 (all 2^24 checked). The luma is stored, the chroma returned. */
static inline void ycc8_lanes(__m128i r, __m128i g, __m128i b, int16_t *luminance, __m128i *blue, __m128i *red) {
    const __m128i luma_rg = pair16(19595, 22086), luma_gb = pair16(16384, 7471), blue_rg = pair16(11059, 21709);
    const __m128i red_gb = pair16(27439, 5329), top = _mm_set1_epi16(255), zero = _mm_setzero_si128();
    const __m128i rg[2] = {_mm_unpacklo_epi16(r, g), _mm_unpackhi_epi16(r, g)};
    const __m128i gb[2] = {_mm_unpacklo_epi16(g, b), _mm_unpackhi_epi16(g, b)};
    __m128i sums[3][2]; /* >> 15: luma 0 .. 510, chroma 0 .. 255 */
    for (int k = 0; k < 2; ++k) {
        sums[0][k] = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(rg[k], luma_rg), _mm_madd_epi16(gb[k], luma_gb)), 15);
        sums[1][k] = _mm_srai_epi32(_mm_madd_epi16(rg[k], blue_rg), 15);
        sums[2][k] = _mm_srai_epi32(_mm_madd_epi16(gb[k], red_gb), 15);
    }
    _mm_storeu_si128((__m128i *)luminance, _mm_avg_epu16(_mm_packs_epi32(sums[0][0], sums[0][1]), zero));
    *blue = _mm_avg_epu16(_mm_sub_epi16(top, _mm_packs_epi32(sums[1][0], sums[1][1])), b);
    *red = _mm_avg_epu16(_mm_sub_epi16(top, _mm_packs_epi32(sums[2][0], sums[2][1])), r);
}

/* ycc8_lanes with the chroma stored too. */
static inline void ycc8(__m128i r, __m128i g, __m128i b, int16_t *luminance, int16_t *blue, int16_t *red) {
    __m128i cb, cr;
    ycc8_lanes(r, g, b, luminance, &cb, &cr);
    _mm_storeu_si128((__m128i *)blue, cb);
    _mm_storeu_si128((__m128i *)red, cr);
}

/* A hint to fetch the line at each plane's p + ahead (the next row's, while this one is converted):
 * the hardware's prefetcher alone left the conversion in waiting for its input (1.01-1.03x at
 * 224 px, two threads). Never faults. */
static inline void fetch_ahead(const float *xr, const float *xg, const float *xb, int64_t ahead) {
    _mm_prefetch((const char *)(xr + ahead), _MM_HINT_T0);
    _mm_prefetch((const char *)(xg + ahead), _MM_HINT_T0);
    _mm_prefetch((const char *)(xb + ahead), _MM_HINT_T0);
}
#endif

/* One row of RGB levels -> YCbCr (jccolor.c): w pixels of float images (levels: x * 255 rounded
 * half to even, clamped) into int16 luma, blue and red chroma; the SIMD path fetches the input
 * `ahead` floats on (fetch_ahead). */
static void ycc_row(const float *restrict xr, const float *restrict xg, const float *restrict xb, int64_t w,
                    int64_t ahead, int16_t *restrict luminance, int16_t *restrict blue, int16_t *restrict red) {
    const int32_t offset = YCC_CHROMA_OFFSET;
    int64_t c = 0;
    (void)ahead; /* the SIMD path's */
#if SIMD_LANES
    /* levels in 0 .. 255 need no clamp: the row without, its levels checked; in the rare row with
     * one outside, again with levels16's clamps (1.03-1.04x) */
    __m128i outside = _mm_setzero_si128(); /* the levels' bits, OR'd: any past 0xFF, a level outside 0 .. 255 */
    const int64_t whole = w / 8 * 8;
    if (whole > 0) { /* each 8 pixels' levels read a step before their colour transform (see ycc_down16) */
        __m128i r = raw_levels16(xr), g = raw_levels16(xg), b = raw_levels16(xb);
        for (; c < whole; c += 8) {
            if (c % 16 == 0) fetch_ahead(xr + c, xg + c, xb + c, ahead); /* a 64-byte line each 16 floats */
            const int64_t next = c + 8 < whole ? c + 8 : c; /* the last time: its own again, unused */
            const __m128i rn = raw_levels16(xr + next), gn = raw_levels16(xg + next), bn = raw_levels16(xb + next);
            outside = _mm_or_si128(outside, _mm_or_si128(r, _mm_or_si128(g, b)));
            ycc8(r, g, b, luminance + c, blue + c, red + c);
            r = rn; g = gn; b = bn;
        }
    }
    if (outside_levels(outside)) /* a level outside 0 .. 255 (x beyond [0, 1] or NaN): the row again, clamped */
        for (c = 0; c + 8 <= w; c += 8)
            ycc8(levels16(xr + c), levels16(xg + c), levels16(xb + c), luminance + c, blue + c, red + c);
#else
    /* eight pixels in vectors (see level_lanes), the sums in float32: every product and partial sum
     * is a whole number below 2^24 in magnitude, so exact, and the sums are not negative: their
     * truncation after * 2^-16 is the shift (float multiplies have two pipes where int32 ones have
     * one) */
    for (; c + 8 <= w; c += 8) {
        const lanes8 vr = level_lanes(load8(xr + c)), vg = level_lanes(load8(xg + c)), vb = level_lanes(load8(xb + c));
        const float shift = 0x1p-16f, chroma_offset = (float)offset;
        const int_lanes8 luma_lanes =
            __builtin_convertvector((19595.0f * vr + 38470.0f * vg + 7471.0f * vb + 32768.0f) * shift, int_lanes8);
        const int_lanes8 blue_lanes = __builtin_convertvector(
            (-11059.0f * vr - 21709.0f * vg + chroma_offset + 32768.0f * vb) * shift, int_lanes8);
        const int_lanes8 red_lanes = __builtin_convertvector(
            (32768.0f * vr - 27439.0f * vg + chroma_offset - 5329.0f * vb) * shift, int_lanes8);
        const short_lanes8 y8 = __builtin_convertvector(luma_lanes, short_lanes8),
                           cb8 = __builtin_convertvector(blue_lanes, short_lanes8),
                           cr8 = __builtin_convertvector(red_lanes, short_lanes8);
        memcpy(luminance + c, &y8, sizeof y8);
        memcpy(blue + c, &cb8, sizeof cb8);
        memcpy(red + c, &cr8, sizeof cr8);
    }
#endif
    for (; c < w; ++c) {
        const float fr = nearbyintf(xr[c] * 255.0f), fg = nearbyintf(xg[c] * 255.0f), fb = nearbyintf(xb[c] * 255.0f);
        const int32_t vr = (int32_t)(fr < 0.0f ? 0.0f : (fr > 255.0f ? 255.0f : fr));
        const int32_t vg = (int32_t)(fg < 0.0f ? 0.0f : (fg > 255.0f ? 255.0f : fg));
        const int32_t vb = (int32_t)(fb < 0.0f ? 0.0f : (fb > 255.0f ? 255.0f : fb));
        luminance[c] = (int16_t)((19595 * vr + 38470 * vg + 7471 * vb + (1 << 15)) >> 16);
        blue[c] = (int16_t)((-11059 * vr - 21709 * vg + offset + 32768 * vb) >> 16);
        red[c] = (int16_t)((32768 * vr - 27439 * vg + offset - 5329 * vb) >> 16);
    }
}

/* One row of h2v2_downsample (jcsample.c: bias 1, 2, 1, 2, ...) from two chroma rows of w values
 * into w2 (columns past the image repeat its last one). */
static void downsample_row(const int16_t *restrict p0, const int16_t *restrict p1, int64_t w, int64_t w2,
                           int16_t *restrict row) {
    const int64_t inside = w / 2; /* columns 2j, 2j + 1 both inside the image */
    int64_t j = 0;
    for (; j + 8 <= inside; j += 8) { /* column sums, then each int32 lane's two halves added */
        const short_lanes8 left = load_short8(p0 + 2 * j) + load_short8(p1 + 2 * j);
        const short_lanes8 right = load_short8(p0 + 2 * j + 8) + load_short8(p1 + 2 * j + 8);
        int_lanes4 a, b;
        memcpy(&a, &left, sizeof a);
        memcpy(&b, &right, sizeof b);
        const int_lanes4 bias = {1, 2, 1, 2};
        const int_lanes4 lo = (((a << 16) >> 16) + (a >> 16) + bias) >> 2;
        const int_lanes4 hi = (((b << 16) >> 16) + (b >> 16) + bias) >> 2;
        short_lanes8 low, high;
        memcpy(&low, &lo, sizeof low);
        memcpy(&high, &hi, sizeof high);
        const short_lanes8 out = SHUFFLE_SHORT8(low, high, 0, 2, 4, 6, 8, 10, 12, 14); /* the int32 lanes' low halves */
        memcpy(row + j, &out, sizeof out);
    }
    for (; j < w2; ++j) {
        const int64_t c0 = clamp_index(2 * j, w), c1 = clamp_index(2 * j + 1, w);
        row[j] = (int16_t)((p0[c0] + p1[c0] + p0[c1] + p1[c1] + 1 + (j & 1)) >> 2);
    }
}

#if SIMD_LANES
/* ycc_row for row x1 (its red, green and blue) fused with downsample_row from the chroma of the
 * row above (blue0, red0: ycc_row's) and its own, over its first w / 16 * 16 columns: each 8
 * columns' chroma added to the row above's in registers and its column pairs by pmaddwd. Writes
 * the luma row and the first w / 16 * 8 chroma values; returns the columns done, or 0 (nothing to
 * keep) if a level falls outside 0 .. 255: ycc_row's clamps are then needed. Software-pipelined,
 * as ycc_row: each 8 columns' levels (load, x * 255, cvtps2dq, pack) are made a step before their
 * colour transform. The first Zen's FP scheduler holds about one step's operations, so the
 * transform's chain, waiting on its own levels, had left it idle (1.11x in the conversion in). */
static int64_t ycc_down16(const float *restrict xr, const float *restrict xg, const float *restrict xb, int64_t w,
                          const int16_t *restrict blue0, const int16_t *restrict red0, int16_t *restrict luminance,
                          int16_t *restrict blue, int16_t *restrict red) {
    const __m128i ones = _mm_set1_epi16(1), bias = _mm_setr_epi32(1, 2, 1, 2); /* jcsample.c's 1, 2, 1, 2 */
    __m128i outside = _mm_setzero_si128(); /* as ycc_row's */
    const int64_t whole = w / 16 * 16; /* in 16s: the rest is left to ycc_row's and downsample_row's loops */
    if (whole == 0) return 0;
    __m128i r = raw_levels16(xr), g = raw_levels16(xg), b = raw_levels16(xb);
    for (int64_t c = 0; c < whole; c += 8) {
        if (c % 16 == 0) fetch_ahead(xr + c, xg + c, xb + c, w); /* the next row's */
        const int64_t next = c + 8 < whole ? c + 8 : c; /* the last time: its own again, unused */
        const __m128i rn = raw_levels16(xr + next), gn = raw_levels16(xg + next), bn = raw_levels16(xb + next);
        outside = _mm_or_si128(outside, _mm_or_si128(r, _mm_or_si128(g, b)));
        __m128i cb, cr;
        ycc8_lanes(r, g, b, luminance + c, &cb, &cr);
        cb = _mm_add_epi16(cb, _mm_loadu_si128((const __m128i *)(blue0 + c)));
        cr = _mm_add_epi16(cr, _mm_loadu_si128((const __m128i *)(red0 + c)));
        const __m128i down_b = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(cb, ones), bias), 2);
        const __m128i down_r = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(cr, ones), bias), 2);
        _mm_storel_epi64((__m128i *)(blue + c / 2), _mm_packs_epi32(down_b, down_b)); /* 4 values */
        _mm_storel_epi64((__m128i *)(red + c / 2), _mm_packs_epi32(down_r, down_r));
        r = rn; g = gn; b = bn;
    }
    return outside_levels(outside) ? 0 : whole;
}
#endif

/* h2v2_fancy_upsample's (jdsample.c) first step for one output row: the column sums 3 near + far
 * of its chroma rows near and far (cw values) into line, valid at [-1, cw] (its own padding beyond:
 * whole vectors of 8 are written). */
static void column_sums(const int16_t *restrict near, const int16_t *restrict far, int64_t cw, int16_t *restrict line) {
    for (int64_t j = 0; j < cw; j += 8) {
        const short_lanes8 sums = 3 * load_short8(near + j) + load_short8(far + j);
        memcpy(line + j, &sums, sizeof sums);
    }
    line[-1] = line[0];
    line[cw] = line[cw - 1];
}

/* Output column c of h2v2_fancy_upsample from its row's column sums: (3 line[c / 2] + its left
 * neighbour + 8) >> 4 for even c, (... + its right neighbour + 7) >> 4 for odd c. */
static inline int32_t fancy_at(const int16_t *line, int64_t c) {
    const int64_t j = c / 2;
    return c % 2 == 0 ? (3 * line[j] + line[j - 1] + 8) >> 4 : (3 * line[j] + line[j + 1] + 7) >> 4;
}

/* One row of h2v2_fancy_upsample from the chroma rows near and far (cw values; far weighs 1, near
 * 3) into w values of up, by way of their column sums in line (see column_sums; up's padding, as
 * line's: whole vectors of 16 are written). */
static void upsample_row(const int16_t *restrict near, const int16_t *restrict far, int64_t cw,
                         int16_t *restrict line, int16_t *restrict up) {
    column_sums(near, far, cw, line);
    for (int64_t j = 0; j < cw; j += 8) { /* outputs 2j (left neighbour) and 2j + 1 (right one) */
        const short_lanes8 centre = 3 * load_short8(line + j);
        const short_lanes8 even = (centre + load_short8(line + j - 1) + 8) >> 4;
        const short_lanes8 odd = (centre + load_short8(line + j + 1) + 7) >> 4;
        const short_lanes8 first = SHUFFLE_SHORT8(even, odd, 0, 8, 1, 9, 2, 10, 3, 11);
        const short_lanes8 second = SHUFFLE_SHORT8(even, odd, 4, 12, 5, 13, 6, 14, 7, 15);
        memcpy(up + 2 * j, &first, sizeof first);
        memcpy(up + 2 * j + 8, &second, sizeof second);
    }
}

#if SIMD_LANES
/* Four levels k (whole floats, -32768 .. 32767) / 255, as divps rounds it. Where the machine
 * has FMA (and `fused`): k hi + k lo in one fused product-sum (hi = 1 / 255 rounded to float, lo
 * the rest, rounded), which rounds as k / 255 does for every such k (checked exactly; the tests
 * decode all 256 grey levels). store_rgb8 takes it for two of its six vectors: the first Zen's
 * divider, one divps each 4.6 cycles, bounded the conversion out, and the FMA pipes are busy too
 * (all six: no gain); pixelate16 for all of its small planes' values. */
static inline __m128 levels_over_255(__m128 k, int fused) {
#if defined(__FMA__)
    if (fused) return _mm_fmadd_ps(k, _mm_set1_ps(0x1.010102p-8f), _mm_mul_ps(k, _mm_set1_ps(-0x1.fdfdfep-33f)));
#endif
    (void)fused;
    return _mm_div_ps(k, _mm_set1_ps(255.0f));
}

/* Eight pixels' levels / 255 (rgb_levels8's bytes: red's and green's in rg, blue's in bb's low
 * half) into [0 .. 8) of the three rows: each four levels' bytes moved to the low bytes of int32
 * lanes by one pshufb (SSSE3). Streamed (movntps: the rows 16-byte aligned) if `stream`. */
static inline __attribute__((always_inline)) void store_rgb8(float *red_out, float *green_out, float *blue_out,
                                                             __m128i rg, __m128i bb, const int stream) {
    const __m128i spread[4] = {_mm_setr_epi8(0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1, 3, -1, -1, -1),
                               _mm_setr_epi8(4, -1, -1, -1, 5, -1, -1, -1, 6, -1, -1, -1, 7, -1, -1, -1),
                               _mm_setr_epi8(8, -1, -1, -1, 9, -1, -1, -1, 10, -1, -1, -1, 11, -1, -1, -1),
                               _mm_setr_epi8(12, -1, -1, -1, 13, -1, -1, -1, 14, -1, -1, -1, 15, -1, -1, -1)};
    float *outs[6] = {red_out, red_out + 4, green_out, green_out + 4, blue_out, blue_out + 4};
    for (int k = 0; k < 6; ++k) {
        const __m128 values = levels_over_255(_mm_cvtepi32_ps(_mm_shuffle_epi8(k < 4 ? rg : bb, spread[k % 4])), k < 2);
        if (stream)
            _mm_stream_ps(outs[k], values);
        else
            _mm_storeu_ps(outs[k], values);
    }
}
#endif

/* One pixel of YCbCr -> RGB (jdcolor.c), clamped to 0 .. 255 and / 255, into column c of the rows. */
static inline void rgb_pixel(int32_t y, int32_t cb, int32_t cr, int64_t c, float *restrict red_out,
                             float *restrict green_out, float *restrict blue_out) {
    const int32_t blue = cb - 128, red = cr - 128;
    int32_t vr = y + ((91881 * red + (1 << 15)) >> 16);
    int32_t vg = y + ((-22554 * blue - 46802 * red + (1 << 15)) >> 16);
    int32_t vb = y + ((116130 * blue + (1 << 15)) >> 16);
    vr = vr < 0 ? 0 : (vr > 255 ? 255 : vr);
    vg = vg < 0 ? 0 : (vg > 255 ? 255 : vg);
    vb = vb < 0 ? 0 : (vb > 255 ? 255 : vb);
    red_out[c] = (float)vr / 255.0f;
    green_out[c] = (float)vg / 255.0f;
    blue_out[c] = (float)vb / 255.0f;
}

#if SIMD_LANES
/* rgb_pixel's levels for eight pixels in 16-bit lanes, clamped to 0 .. 255 by packuswb: red's and
 * green's bytes in rg, blue's in both halves of bb. Red's and blue's terms (K x + 2^15) >> 16,
 * K = 91881 and 116130, are x + ((k x + 2^14) >> 15), SSSE3's pmulhrsw, with k = (K - 2^16) / 2
 * (26345 / 2 rounded up: 13173; 25297), checked for every x of -128 .. 127; green's sum is
 * pmaddwd's (as in jdcolext-sse2), -46802 y as 18734 y - 2^16 y. The chroma come centred (less
 * 128): upsample16 takes the 128 off with its rounding constants. */
static inline void rgb_levels8(__m128i y, __m128i blue, __m128i red, __m128i *rg, __m128i *bb) {
    const __m128i red_k = _mm_set1_epi16(13173), blue_k = _mm_set1_epi16(25297);
    const __m128i green_k = pair16(-22554, 18734), round = _mm_set1_epi32(1 << 15);
    const __m128i red_term = _mm_add_epi16(red, _mm_mulhrs_epi16(red, red_k));
    const __m128i blue_term = _mm_add_epi16(blue, _mm_mulhrs_epi16(blue, blue_k));
    const __m128i lo = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi16(blue, red), green_k), round), 16);
    const __m128i hi = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(_mm_unpackhi_epi16(blue, red), green_k), round), 16);
    const __m128i green_term = _mm_sub_epi16(_mm_packs_epi32(lo, hi), red);
    *rg = _mm_packus_epi16(_mm_add_epi16(y, red_term), _mm_add_epi16(y, green_term));
    const __m128i b = _mm_add_epi16(y, blue_term);
    *bb = _mm_packus_epi16(b, b);
}
#endif

/* One row of YCbCr -> RGB (rgb_pixel) from int16 luma and upsampled chroma: the generic path's,
 * and the SIMD path's for images at most 4 wide (rgb_row_fancy takes the rest). */
static void rgb_row(const int16_t *restrict luminance, const int16_t *restrict blue_up, const int16_t *restrict red_up,
                    int64_t w, float *restrict red_out, float *restrict green_out, float *restrict blue_out) {
    for (int64_t c = 0; c < w; ++c) rgb_pixel(luminance[c], blue_up[c], red_up[c], c, red_out, green_out, blue_out);
}

#if SIMD_LANES
/* Columns c .. c + 15 of h2v2_fancy_upsample (upsample_row's second step, fancy_at) for both
 * chroma from their column sums ([-1, cw] valid, see column_sums): eight sums and their
 * neighbours give up[blue, red][columns c .. c + 7, c + 8 .. c + 15], centred (less 128, for
 * rgb_levels8: 16 x 128 off each sum before the shift by 4, in its rounding constant). */
static inline void upsample16(const int16_t *blue_line, const int16_t *red_line, int64_t c, __m128i up[2][2]) {
    const __m128i eight = _mm_set1_epi16(8 - 16 * 128), seven = _mm_set1_epi16(7 - 16 * 128);
    const int16_t *lines[2] = {blue_line + c / 2, red_line + c / 2};
    for (int k = 0; k < 2; ++k) {
        const __m128i sums = _mm_loadu_si128((const __m128i *)lines[k]);
        const __m128i centre = _mm_add_epi16(sums, _mm_add_epi16(sums, sums));
        const __m128i left = _mm_loadu_si128((const __m128i *)(lines[k] - 1));
        const __m128i right = _mm_loadu_si128((const __m128i *)(lines[k] + 1));
        const __m128i even = _mm_srai_epi16(_mm_add_epi16(_mm_add_epi16(centre, left), eight), 4);
        const __m128i odd = _mm_srai_epi16(_mm_add_epi16(_mm_add_epi16(centre, right), seven), 4);
        up[k][0] = _mm_unpacklo_epi16(even, odd);
        up[k][1] = _mm_unpackhi_epi16(even, odd);
    }
}

/* rgb_row with the chroma upsampled on the way (upsample16), from the column sums of each chroma
 * row: no upsampled row is stored and read back. Software-pipelined, as the conversion in is (see
 * ycc_down16): 1.02x in the step, and it let two divisions of six become fused products (1.04x).
 * Its stores streamed if `stream` (store_rgb8; jpeg_levels_out calls a copy for each value). */
static inline __attribute__((always_inline)) void rgb_row_fancy(const int16_t *restrict luminance,
                                                                const int16_t *restrict blue_line,
                                                                const int16_t *restrict red_line, int64_t w,
                                                                float *restrict red_out, float *restrict green_out,
                                                                float *restrict blue_out, const int stream) {
    int64_t c = 0;
    if (w >= 16) { /* each 16 columns' chroma upsampled, and each 8 columns' levels made, a step before use */
        __m128i up[2][2], next[2][2], rg[2], bb[2]; /* up: these 16 columns' chroma, next: the next 16's */
        upsample16(blue_line, red_line, 0, up);
        rgb_levels8(_mm_loadu_si128((const __m128i *)luminance), up[0][0], up[1][0], &rg[0], &bb[0]);
        for (; c + 16 <= w; c += 16) {
            const int more = c + 32 <= w; /* another 16 after these */
            upsample16(blue_line, red_line, more ? c + 16 : c, next); /* the last time: these again, unused */
            rgb_levels8(_mm_loadu_si128((const __m128i *)(luminance + c + 8)), up[0][1], up[1][1], &rg[1], &bb[1]);
            store_rgb8(red_out + c, green_out + c, blue_out + c, rg[0], bb[0], stream);
            if (more)
                rgb_levels8(_mm_loadu_si128((const __m128i *)(luminance + c + 16)), next[0][0], next[1][0], &rg[0], &bb[0]);
            store_rgb8(red_out + c + 8, green_out + c + 8, blue_out + c + 8, rg[1], bb[1], stream);
            memcpy(up, next, sizeof up);
        }
    }
    for (; c < w; ++c)
        rgb_pixel(luminance[c], fancy_at(blue_line, c), fancy_at(red_line, c), c, red_out, green_out, blue_out);
}
#endif

#if SIMD_LANES
/* Whether every window of a box pass (its outputs' taps [lo, hi)) is at most 64 wide: then sums of
 * levels in [-510, 510] (values in [-2, 2]) fit int16, for pixelate16. */
static int windows_fit16(const int32_t *lo, const int32_t *hi, int64_t outputs) {
    for (int64_t o = 0; o < outputs; ++o)
        if (hi[o] - lo[o] > 64) return 0;
    return 1;
}

/* A box pass's weight for weigh16. Where it can, one unsigned high product: the level is
 * min(((max(sum, 0) + add) * mul) >> 16, 255), add and mul searched near 2^15 / mul and weight / 64
 * and kept only if equal to box_pass's for every sum the output's taps can reach (levels in
 * [-510, 510]). Of pixelate's weights, round(2^22 / width), every width up to 24 has one and 10 of
 * the 40 widths 25-64 do. Otherwise the weight = high 2^16 + low, low as int16, as pmaddwd's
 * constants, each paired with 0. NULL weight: none. */
typedef struct {
    __m128i low, high, add, mul;
    int none, exact;
} weight16;

/* Whether min(((max(s, 0) + add) * mul) >> 16, 255) is box_pass's level (sum * weight + 2^21) >> 22,
 * clamped to 0 .. 255, for every sum s in [-reach, reach] (max(s, 0) + add within 16 bits). Both
 * are steps up in s (box_pass's while its int32 product does not wrap there; else no): they agree
 * where each level 1 .. 255 starts. */
static int short_product_exact(int32_t weight, int32_t reach, int32_t add, int32_t mul) {
    if (weight <= 0 || (int64_t)reach * weight + (1 << 21) > INT32_MAX || reach + add > 65535) return 0;
    for (int64_t level = 1; level <= 255; ++level) {
        const int64_t exact = ((level << 22) - (1 << 21) + weight - 1) / weight; /* the least s reaching it */
        const int64_t product = ((level << 16) + mul - 1) / mul - add;
        if ((exact > reach ? reach + 1 : exact) != (product > reach ? reach + 1 : product)) return 0;
    }
    return 1;
}

static weight16 *weights16(const int32_t *weight, const int32_t *lo, const int32_t *hi, int64_t outputs) {
    weight16 *table = malloc((size_t)(outputs > 0 ? outputs : 1) * sizeof(weight16));
    if (table == NULL) abort();
    for (int64_t o = 0; o < outputs; ++o) {
        const int32_t w = weight == NULL ? 0 : weight[o], low = (int16_t)(w & 0xFFFF);
        const int32_t high = (int32_t)(((uint32_t)w - (uint32_t)low) >> 16), reach = 510 * (hi[o] - lo[o]);
        table[o] = (weight16){pair16(low, 0), pair16(high, 0), _mm_setzero_si128(), _mm_setzero_si128(),
                              weight == NULL, 0};
        if (weight == NULL) continue;
        int64_t same = o - 1; /* an earlier output of this weight and width: its search's result */
        while (same >= 0 && (weight[same] != w || hi[same] - lo[same] != hi[o] - lo[o])) --same;
        if (same >= 0) {
            table[o] = table[same];
            continue;
        }
        for (int32_t m = w / 64 - 3; m <= w / 64 + 3 && !table[o].exact; ++m) {
            if (m < 1 || m > 65535) continue;
            const int32_t centre = (32768 + m / 2) / m;
            for (int32_t add = centre < 3 ? 0 : centre - 3; add <= centre + 3; ++add)
                if (short_product_exact(w, reach, add, m)) {
                    table[o].add = _mm_set1_epi16((int16_t)add);
                    table[o].mul = _mm_set1_epi16((int16_t)(uint16_t)m);
                    table[o].exact = 1;
                    break;
                }
        }
    }
    return table;
}

/* Eight int16 box sums weighted as box_pass does, (sum * weight + 2^21) >> 22 clamped to 0 .. 255:
 * by the weight's exact unsigned high product (see weight16), or in int32 lanes modulo 2^32 as its
 * int32 product (the two parts of the weight, each a pmaddwd of (sum, 0) pairs); no weight: the
 * sums as they are. */
static inline __m128i weigh16(__m128i sum, const weight16 *weight) {
    if (weight->none) return sum;
    const __m128i zero = _mm_setzero_si128();
    if (weight->exact)
        return _mm_min_epi16(_mm_mulhi_epu16(_mm_add_epi16(_mm_max_epi16(sum, zero), weight->add), weight->mul),
                             _mm_set1_epi16(255));
    const __m128i round = _mm_set1_epi32(1 << 21);
    const __m128i a = _mm_unpacklo_epi16(sum, zero), b = _mm_unpackhi_epi16(sum, zero);
    const __m128i pa = _mm_add_epi32(_mm_madd_epi16(a, weight->low),
                                     _mm_slli_epi32(_mm_madd_epi16(a, weight->high), 16));
    const __m128i pb = _mm_add_epi32(_mm_madd_epi16(b, weight->low),
                                     _mm_slli_epi32(_mm_madd_epi16(b, weight->high), 16));
    const __m128i value = _mm_packs_epi32(_mm_srai_epi32(_mm_add_epi32(pa, round), 22),
                                          _mm_srai_epi32(_mm_add_epi32(pb, round), 22));
    return _mm_min_epi16(_mm_max_epi16(value, zero), _mm_set1_epi16(255));
}

/* pixelate16 fetches the input rows [r0 + 24, r0 + 32) into the cache while it reads band r0: the
 * hardware's prefetcher alone left its 8 interleaved rows waiting (at 2 threads, 224 px: 1.15x
 * over no prefetch, 1.03x over a band ahead) */
#define PIXELATE_AHEAD 32

/* One box pass of pixelate16 over `count` vectors: out[n] = weigh16(sum of the `width` taps
 * in[n * in_step + t * tap_step], t < width) (int16 element strides), each pass's window and
 * weight fixed, so its constants stay in registers and its width's taps unrolled. */
static inline void box_run16(const int16_t *in, int64_t tap_step, int32_t width, const weight16 *weight,
                             int16_t *out, int64_t in_step, int64_t out_step, int64_t count) {
    const __m128i zero = _mm_setzero_si128(), top = _mm_set1_epi16(255);
    if (weight->exact && (width == 2 || width == 3)) { /* pixelate's common windows */
        const __m128i add = weight->add, mul = weight->mul;
        const __m128i third = _mm_set1_epi16((int16_t)(2 - width)); /* -1 for a third tap */
        for (int64_t n = 0; n < count; ++n, in += in_step, out += out_step) {
            const __m128i two = _mm_add_epi16(_mm_loadu_si128((const __m128i *)in),
                                              _mm_loadu_si128((const __m128i *)(in + tap_step)));
            const __m128i last = _mm_and_si128(_mm_loadu_si128((const __m128i *)(in + 2 * tap_step)), third);
            const __m128i sum = _mm_add_epi16(two, last);
            const __m128i level = _mm_mulhi_epu16(_mm_add_epi16(_mm_max_epi16(sum, zero), add), mul);
            _mm_storeu_si128((__m128i *)out, _mm_min_epi16(level, top));
        }
        return;
    }
    for (int64_t n = 0; n < count; ++n, in += in_step, out += out_step) {
        __m128i sum = zero;
        for (int32_t t = 0; t < width; ++t)
            sum = _mm_add_epi16(sum, _mm_loadu_si128((const __m128i *)(in + t * tap_step)));
        _mm_storeu_si128((__m128i *)out, weigh16(sum, weight));
    }
}

/* robench_pixelate in int16 lanes (windows_fit16 both passes): a plane's levels made in 8-row
 * bands and transposed in 8 x 8 tiles in registers, so that each column's eight rows share one;
 * summed over each small column's window and weighted, one small column at a time down all the
 * bands (box_run16); transposed back into rows, summed over each small row's window, weighted,
 * / 255, upscaled. Equal to the int32 path while the sums fit int16 (levels in [-510, 510],
 * windows up to 64 wide). */
static void pixelate16(const float *images, float *out, int64_t begin, int64_t end, int64_t h, int64_t w,
                       int64_t small_h, int64_t small_w, const int32_t *col_lo, const int32_t *col_hi,
                       const int32_t *col_weight, const int32_t *row_lo, const int32_t *row_hi,
                       const int32_t *row_weight, const int32_t *up_row, const int32_t *up_col) {
    const int64_t w8 = (w + 7) / 8 * 8, sw8 = (small_w + 7) / 8 * 8, bands = (h + 7) / 8;
    /* + 8 * 2: a window's third tap, masked off, may be read past the last column (or row) */
    int16_t *columns = calloc(
        (size_t)(bands * 8 * w8 + 16 + bands * 8 * sw8 + (8 * bands + 2) * sw8 + small_h * sw8), sizeof(int16_t));
    float *small = malloc((size_t)(small_h * small_w + 8 + w) * sizeof(float)); /* + 8: upscale_row reads ahead */
    weight16 *across = weights16(col_weight, col_lo, col_hi, small_w), *down = weights16(row_weight, row_lo, row_hi, small_h);
    if (columns == NULL || small == NULL) abort();
    int16_t *picked = columns + bands * 8 * w8 + 16, *narrow = picked + bands * 8 * sw8;
    int16_t *low = narrow + (8 * bands + 2) * sw8;
    float *row = small + small_h * small_w + 8; /* the upscaled row, written to each row that repeats it */
    const int stream = streams((end - begin) * h * w);
    upscale_plan plan = upscale_plan_make(up_col, w);
    for (int64_t p = begin; p < end; ++p) {
        const float *restrict x = images + p * h * w;
        for (int64_t r0 = 0; r0 < h; r0 += 8) {
            const int64_t rows = h - r0 < 8 ? h - r0 : 8; /* a short last band: its other lanes hold 0 */
            int16_t *band = columns + r0 * w8;
            for (int64_t c0 = 0; c0 < w; c0 += 8) {
                __m128i tile[8];
                if (c0 + 8 <= w) {
                    for (int64_t i = 0; i < 8; ++i)
                        tile[i] = i < rows ? raw_levels16(x + (r0 + i) * w + c0) : _mm_setzero_si128();
                } else { /* the last columns: past w, 0 */
                    int16_t part[8][8] = {{0}};
                    for (int64_t i = 0; i < rows; ++i)
                        for (int64_t c = c0; c < w; ++c) {
                            const float v = nearbyintf(x[(r0 + i) * w + c] * 255.0f);
                            part[i][c - c0] = (int16_t)(v < -32768.0f ? -32768.0f : (v > 32767.0f ? 32767.0f : v));
                        }
                    for (int i = 0; i < 8; ++i) tile[i] = _mm_loadu_si128((const __m128i *)part[i]);
                }
                if (c0 % 16 == 0 && c0 + 8 <= w) /* rows ahead (the next plane's past h), a line per 16 columns */
                    for (int64_t i = PIXELATE_AHEAD - 8; i < PIXELATE_AHEAD; ++i) {
                        const uintptr_t ahead = (uintptr_t)x + (uintptr_t)(((r0 + i) * w + c0) * 4);
                        _mm_prefetch((const char *)ahead, _MM_HINT_T0); /* a hint: never faults */
                    }
                transpose16(tile);
                for (int i = 0; i < 8; ++i) _mm_storeu_si128((__m128i *)(band + 8 * (c0 + i)), tile[i]);
            }
        }
        for (int64_t j = 0; j < small_w; ++j) /* down the bands: picked[band][j] */
            box_run16(columns + 8 * col_lo[j], 8, col_hi[j] - col_lo[j], across + j, picked + 8 * j, 8 * w8, 8 * sw8,
                      bands);
        for (int64_t r0 = 0; r0 < h; r0 += 8) { /* rows of narrow padded to sw8; those past h unread */
            for (int64_t j0 = 0; j0 < small_w; j0 += 8) {
                __m128i tile[8];
                for (int i = 0; i < 8; ++i)
                    tile[i] = _mm_loadu_si128((const __m128i *)(picked + r0 * sw8 + 8 * (j0 + i)));
                transpose16(tile);
                for (int i = 0; i < 8; ++i) _mm_storeu_si128((__m128i *)(narrow + (r0 + i) * sw8 + j0), tile[i]);
            }
        }
        for (int64_t k = 0; k < small_h; ++k) {
            box_run16(narrow + row_lo[k] * sw8, sw8, row_hi[k] - row_lo[k], down + k, low + k * sw8, 8, 8, sw8 / 8);
            const int16_t *levels = low + k * sw8;
            float *target = small + k * small_w;
            int64_t j = 0;
            for (; j + 8 <= small_w; j += 8) {
                const __m128i v = _mm_loadu_si128((const __m128i *)(levels + j));
                const __m128i sign = _mm_srai_epi16(v, 15);
                _mm_storeu_ps(target + j, levels_over_255(_mm_cvtepi32_ps(_mm_unpacklo_epi16(v, sign)), 1));
                _mm_storeu_ps(target + j + 4, levels_over_255(_mm_cvtepi32_ps(_mm_unpackhi_epi16(v, sign)), 1));
            }
            for (; j < small_w; ++j) target[j] = (float)levels[j] / 255.0f;
        }
        upscale_plane(small, small_w, up_row, up_col, &plan, h, w, row, out + p * h * w, stream,
                      p + 1 < end ? x + h * w : NULL);
    }
    stream_end();
    upscale_plan_free(&plan);
    free(columns);
    free(small);
    free(across);
    free(down);
}
#endif

/* An image's int16 planes for jpeg_roundtrip: luma (h8 x w8), chroma (hc x w2 each) and row buffers. */
typedef struct {
    int64_t h, w, h8, w8, h2, w2, hc, ch, cw;
    int16_t *luma, *chroma[2];
    int16_t *full[2][2];  /* chroma rows at full width: [blue, red][row of the pair] */
    int16_t *lines[2];    /* upsampling's column sums, [-1, ...) valid */
    int16_t *upsampled[2];
    int stream; /* the SIMD conversion out's stores go past the caches (streams(); rows 16-byte aligned) */
} jpeg_planes;

/* An image x (3 planes of h x w floats) into levels: luma rows 2i, 2i + 1 and, downsampled from
 * them, chroma row i (the last row twice if h is odd). */
static void jpeg_levels_in(const jpeg_planes *p, const float *x) {
    const int64_t plane = p->h * p->w, w = p->w;
    for (int64_t i = 0; i < p->h2; ++i) {
        const int second = 2 * i + 1 < p->h;
        const int64_t rows[2] = {2 * i, 2 * i + second}; /* an odd h's last row: twice */
        int64_t done = 0; /* columns of the second row converted and downsampled by ycc_down16 */
        for (int k = 0; k < 2; ++k) {
            const int64_t r = rows[k];
            int16_t *luminance = p->luma + r * p->w8;
            const float *xr = x + r * w, *xg = x + plane + r * w, *xb = x + 2 * plane + r * w;
#if SIMD_LANES
            if (k == 1)
                done = ycc_down16(xr, xg, xb, w, p->full[0][0], p->full[1][0], luminance, p->chroma[0] + i * p->w2,
                                  p->chroma[1] + i * p->w2);
#endif
            const int64_t from = k == 1 ? done : 0;
            ycc_row(xr + from, xg + from, xb + from, w - from, w, luminance + from, p->full[0][k] + from,
                    p->full[1][k] + from);
            for (int64_t c = w; c < p->w8; ++c) luminance[c] = luminance[w - 1]; /* edge replication */
        }
        for (int k = 0; k < 2; ++k) /* done is even: the bias's pattern continues */
            downsample_row(p->full[k][0] + done, p->full[k][1] + done, w - done, p->w2 - done / 2,
                           p->chroma[k] + i * p->w2 + done / 2);
    }
}

/* The coded levels out into an image o (3 planes of h x w floats). */
static void jpeg_levels_out(const jpeg_planes *p, float *o) {
    const int64_t plane = p->h * p->w, w = p->w, w2 = p->w2;
    for (int64_t r = 0; r < p->h; ++r) {
        const int64_t near = r / 2, far = clamp_index(r % 2 ? near + 1 : near - 1, p->ch);
        float *red = o + r * w, *green = o + plane + r * w, *blue = o + 2 * plane + r * w;
#if SIMD_LANES
        if (p->cw > 2) {
            for (int k = 0; k < 2; ++k) column_sums(p->chroma[k] + near * w2, p->chroma[k] + far * w2, p->cw, p->lines[k]);
            if (p->stream) /* each a copy with its stores fixed */
                rgb_row_fancy(p->luma + r * p->w8, p->lines[0], p->lines[1], w, red, green, blue, 1);
            else
                rgb_row_fancy(p->luma + r * p->w8, p->lines[0], p->lines[1], w, red, green, blue, 0);
            continue;
        }
#endif
        for (int k = 0; k < 2; ++k) {
            const int16_t *s = p->chroma[k];
            if (p->cw <= 2) { /* libjpeg replicates pixels in planes 1 or 2 wide */
                for (int64_t c = 0; c < w; ++c) p->upsampled[k][c] = s[near * w2 + c / 2];
            } else {
                upsample_row(s + near * w2, s + far * w2, p->cw, p->lines[k], p->upsampled[k]);
            }
        }
        rgb_row(p->luma + r * p->w8, p->upsampled[0], p->upsampled[1], w, red, green, blue);
    }
}

/* jpeg_roundtrip for images [begin, end) of (3, h, w) floats, image b with the luma and chroma
 * tables of quality which[b] (64 int32 each, natural order; which NULL: the first). An image's
 * levels live in int16 planes (3 bytes a pixel or so: in a core's cache at 224 px). */
void robench_jpeg(const float *images, float *out, int64_t begin, int64_t end, int64_t h, int64_t w,
                  const int32_t *luma, const int32_t *chroma, const int64_t *which) {
    jpeg_planes p = {.h = h, .w = w, .h8 = (h + 7) / 8 * 8, .w8 = (w + 7) / 8 * 8,  /* luma, whole blocks */
                     .h2 = (h + h % 2) / 2, .w2 = (w + 15) / 16 * 8,                 /* averaged chroma */
                     .hc = (h + 15) / 16 * 8,                                        /* chroma, whole MCUs */
                     .ch = (h + 1) / 2, .cw = (w + 1) / 2};                          /* chroma kept */
    const int64_t span = p.w8 + 32; /* a row buffer, padded */
    p.luma = calloc((size_t)(p.h8 * p.w8 + 2 * p.hc * p.w2 + 8 * span), sizeof(int16_t));
    if (p.luma == NULL) abort();
    p.chroma[0] = p.luma + p.h8 * p.w8;
    p.chroma[1] = p.chroma[0] + p.hc * p.w2;
    int16_t *rows = p.chroma[1] + p.hc * p.w2;
    for (int k = 0; k < 2; ++k) {
        p.full[k][0] = rows + (2 * k) * span;
        p.full[k][1] = rows + (2 * k + 1) * span;
        p.lines[k] = rows + (4 + k) * span + 8;
        p.upsampled[k] = rows + (6 + k) * span;
    }
#if SIMD_LANES
    p.stream = streams((end - begin) * 3 * h * w) && w % 4 == 0 && ((uintptr_t)out & 15) == 0; /* rows aligned */
#endif
    /* the chroma tables' flat_range (the SIMD path's code_plane16), by quality index (-2: not yet found):
     * chroma blocks are mostly smooth (82% of the benchmark's at 224 px, severity 3, fall within
     * it), luma ones seldom (7%), so only chroma takes the test; with each the SIMD path's
     * quantisers, luma's and chroma's (made as the flat range is found) */
    int64_t qualities = 1;
    for (int64_t b = begin; which != NULL && b < end; ++b) qualities = which[b] >= qualities ? which[b] + 1 : qualities;
    int32_t *flat = malloc((size_t)qualities * sizeof(int32_t));
    if (flat == NULL) abort();
    for (int64_t i = 0; i < qualities; ++i) flat[i] = -2;
#if SIMD_LANES
    quantiser16 *quantisers = malloc((size_t)(2 * qualities) * sizeof(quantiser16)); /* 16-byte aligned (x86-64) */
    if (quantisers == NULL) abort();
#define QUANTISER(q, k) (&quantisers[2 * (q) + (k)]) /* k: 0 luma, 1 chroma */
#else
#define QUANTISER(q, k) NULL
#endif
    for (int64_t b = begin; b < end; ++b) {
        const int64_t q = which == NULL ? 0 : which[b];
#if SIMD_LANES
        if (flat[q] == -2) {
            flat[q] = flat_range(chroma + 64 * q);
            make_quantiser16(luma + 64 * q, QUANTISER(q, 0));
            make_quantiser16(chroma + 64 * q, QUANTISER(q, 1));
        }
#endif
        const float *x = images + b * 3 * h * w;
        float *o = out + b * 3 * h * w;
        jpeg_levels_in(&p, x);
        for (int64_t r = h; r < p.h8; ++r) /* rows past the image repeat its last */
            memcpy(p.luma + r * p.w8, p.luma + (h - 1) * p.w8, (size_t)p.w8 * sizeof(int16_t));
        CODE_PLANE(p.luma, p.h8, p.w8, luma + 64 * q, QUANTISER(q, 0), -1);
        for (int k = 0; k < 2; ++k) { /* chroma: whole MCU rows */
            for (int64_t i = p.h2; i < p.hc; ++i)
                memcpy(p.chroma[k] + i * p.w2, p.chroma[k] + (p.h2 - 1) * p.w2, (size_t)p.w2 * sizeof(int16_t));
            CODE_PLANE(p.chroma[k], p.hc, p.w2, chroma + 64 * q, QUANTISER(q, 1), flat[q]);
        }
        jpeg_levels_out(&p, o);
    }
#if SIMD_LANES
    stream_end();
    free(quantisers);
#endif
#undef QUANTISER
    free(flat);
    free(p.luma);
}

/* ---- Colour corruptions (plugins/distortions/_color.py, scikit-image's HSV formulas) ---- */

enum { BRIGHTNESS = 0, SATURATE = 1 };

/* One image's pixels for robench_hsv (`kind` a constant at each call). Its choices are selects of
 * floats, one at a time: GCC 12 vectorises the loop so (2.5x at 224 px), where fmaxf, int flags
 * combined with & and !, and the sector as an int had kept it scalar. */
static inline __attribute__((always_inline)) void hsv_pixels(const int kind, const float *restrict xr,
                                                             const float *restrict xg, const float *restrict xb,
                                                             float *restrict yr, float *restrict yg,
                                                             float *restrict yb, int64_t plane, float a, float c) {
    for (int64_t i = 0; i < plane; ++i) {
        const float r = xr[i], g = xg[i], bl = xb[i];
        const float top = r > g ? r : g, bottom = r < g ? r : g;
        const float value = top > bl ? top : bl, delta = value - (bottom < bl ? bottom : bl);
        const int grey = delta == 0.0f;
        float saturation = grey ? 0.0f : delta / (value == 0.0f ? 1.0f : value);
        /* blue's formula where blue is the largest, else green's where green is, else red's */
        const float not_blue = g == value ? bl - r : g - bl, not_blue_offset = g == value ? 2.0f : 0.0f;
        const float numerator = bl == value ? r - g : not_blue;
        const float offset = bl == value ? 4.0f : not_blue_offset;
        const float turn = (offset + numerator / (grey ? 1.0f : delta)) / 6.0f;
        float hue = grey ? 0.0f : turn - floorf(turn); /* torch.remainder(turn, 1.0) */
        const float brighter = value + a, saturated = saturation * a + c;
        const float v = kind == BRIGHTNESS ? clamp01(brighter) : value;
        saturation = kind == BRIGHTNESS ? saturation : clamp01(saturated);
        /* hsv_to_rgb */
        const float h6 = hue * 6.0f, sector = floorf(h6), f = h6 - sector;
        const float p = v * (1.0f - saturation), q = v * (1.0f - f * saturation);
        const float t = v * (1.0f - (1.0f - f) * saturation);
        const float s = sector - 6.0f * floorf(sector / 6.0f); /* torch.remainder(sector, 6) */
        /* per sector 0..5, (R, G, B) = (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q) */
        const float r4 = s == 4.0f ? t : p, r1 = s == 1.0f ? q : r4, r5 = s == 5.0f ? v : r1;
        const float ro = s == 0.0f ? v : r5;
        const float g3 = s == 3.0f ? q : p, g0 = s == 0.0f ? t : g3, g2 = s == 2.0f ? v : g0;
        const float go = s == 1.0f ? v : g2;
        const float b5 = s == 5.0f ? q : p, b2 = s == 2.0f ? t : b5, b4 = s == 4.0f ? v : b2;
        const float bo = s == 3.0f ? v : b4;
        const float any = r + g + bl; /* NaN if a channel is: the pixel NaN, as torch's max makes it */
        yr[i] = any != any ? any : clamp01(ro);
        yg[i] = any != any ? any : clamp01(go);
        yb[i] = any != any ? any : clamp01(bo);
    }
}

/* Brightness (value + shift) or Saturate (saturation * factor + offset), each clamped to [0, 1],
 * in HSV for images [begin, end) of (3, plane) floats: rgb_to_hsv, the change, hsv_to_rgb, clamp.
 * first[b] is the shift or factor, second[b] the offset (float32 values, as double). */
void robench_hsv(int kind, const float *images, float *out, const double *first, const double *second,
                 int64_t begin, int64_t end, int64_t plane) {
    for (int64_t b = begin; b < end; ++b) {
        const float *x = images + b * 3 * plane;
        float *y = out + b * 3 * plane;
        if (kind == BRIGHTNESS)
            hsv_pixels(BRIGHTNESS, x, x + plane, x + 2 * plane, y, y + plane, y + 2 * plane, plane, (float)first[b],
                       (float)second[b]);
        else
            hsv_pixels(SATURATE, x, x + plane, x + 2 * plane, y, y + plane, y + 2 * plane, plane, (float)first[b],
                       (float)second[b]);
    }
}

/* Contrast.distort for images [begin, end) of `channels` planes: (x - mean) * factor + mean,
 * clamped, with each plane's mean (computed by torch) and each image's factor. */
void robench_contrast(const float *images, float *out, const float *mean, const double *factor,
                      int64_t begin, int64_t end, int64_t channels, int64_t plane) {
    for (int64_t b = begin; b < end; ++b) {
        const float scale = (float)factor[b];
        for (int64_t k = 0; k < channels; ++k) {
            const float m = mean[b * channels + k];
            const float *restrict x = images + (b * channels + k) * plane;
            float *restrict y = out + (b * channels + k) * plane;
            for (int64_t i = 0; i < plane; ++i) {
                const float value = (x[i] - m) * scale + m;
                y[i] = clamp01(value);
            }
        }
    }
}

/* ---- Plasma fractal (plugins/distortions/_fractal.py, ImageNet-C's diamond-square) ---- */

/* Scale after scale, coarse to fine, the diamond-square updates of _fractal._scales on one
 * mapsize x mapsize float64 map g (g[0] set to 0 here, every other point written before it is
 * read; `draws` holds one row's draws, mapsize / 2 values): every square's centre is the mean of its four
 * corners plus its draw, then every edge point the mean of its two centres and two corners plus
 * its draw, with wrap-around and each sum added in the torch code's order. The draws are hashed
 * here: scale k's three sets (the squares, then each edge set, n x n each) are streams 3k, 3k + 1,
 * 3k + 2 of `keys` (low and high key of each), a uniform u giving (u * 2w - w) * w for the scale's
 * wibble w (100 at the coarsest, divided by `decay` at each finer scale), as plasma_fractals
 * computes them. */
static void plasma_map(double *restrict g, int64_t mapsize, const uint32_t *keys, double decay,
                       double *restrict draws) {
    double wibble = 100.0;
    g[0] = 0.0; /* every other point is written before it is read */
    for (int64_t step = mapsize, n = 1, k = 0; step >= 2; step /= 2, n *= 2, ++k) {
        const int64_t half = step / 2;
        const double twice = 2.0 * wibble;
        const uint32_t *key = keys + 6 * k;
        /* one row's draws of set `set` (a loop the compiler vectorises), into draws[0, n) */
#define ROW_DRAWS(set, i)                                                                               \
    for (int64_t j = 0; j < n; ++j)                                                                     \
        draws[j] = ((double)((float)(hash((uint32_t)((i) * n + j), key[2 * (set)], key[2 * (set) + 1]) >> 8) \
                             * (1.0f / 16777216.0f)) * twice - wibble) * wibble;
#define AT(a, b) g[(a) * mapsize + (b)]
        for (int64_t i = 0; i < n; ++i) {
            const int64_t y = i * step, down = i + 1 < n ? y + step : 0;
            ROW_DRAWS(0, i)
            for (int64_t j = 0; j < n; ++j) {
                const int64_t x = j * step, right = j + 1 < n ? x + step : 0;
                AT(y + half, x + half) = ((AT(y, x) + AT(down, x)) + (AT(y, right) + AT(down, right))) / 4.0
                                         + draws[j];
            }
        }
        for (int64_t i = 0; i < n; ++i) {
            const int64_t y = i * step, up = i > 0 ? y - step : (n - 1) * step, down = i + 1 < n ? y + step : 0;
            ROW_DRAWS(1, i)
            for (int64_t j = 0; j < n; ++j) {
                const int64_t x = j * step, right = j + 1 < n ? x + step : 0;
                AT(y, x + half) = (((AT(y + half, x + half) + AT(up + half, x + half)) + AT(y, x)) + AT(y, right))
                                  / 4.0 + draws[j];
            }
            ROW_DRAWS(2, i)
            for (int64_t j = 0; j < n; ++j) {
                const int64_t x = j * step, left = j > 0 ? x - step : (n - 1) * step;
                AT(y + half, x) = (((AT(y + half, x + half) + AT(y + half, left + half)) + AT(y, x)) + AT(down, x))
                                  / 4.0 + draws[j];
            }
        }
#undef AT
#undef ROW_DRAWS
        wibble /= decay;
    }
}

/* The largest and smallest of n float64 values (in lanes that the compiler vectorises; the
 * result does not depend on the order). */
static void extremes(const double *restrict v, int64_t n, double *low, double *high) {
    double lo[8], hi[8];
    for (int j = 0; j < 8; ++j) lo[j] = hi[j] = v[0];
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) {
            lo[j] = v[i + j] < lo[j] ? v[i + j] : lo[j];
            hi[j] = v[i + j] > hi[j] ? v[i + j] : hi[j];
        }
    for (; i < n; ++i) {
        lo[0] = v[i] < lo[0] ? v[i] : lo[0];
        hi[0] = v[i] > hi[0] ? v[i] : hi[0];
    }
    *low = lo[0], *high = hi[0];
    for (int j = 1; j < 8; ++j) {
        *low = lo[j] < *low ? lo[j] : *low;
        *high = hi[j] > *high ? hi[j] : *high;
    }
}

/* plasma_fractals on the CPU for rows [begin, end) of (B * maps): row r is sample r / maps's map
 * r % maps, hashing its draws in place from streams first + (r % maps) * 3 * levels + ... (levels
 * = log2(mapsize)) under the sample's seed, with its own wibble decay decays[r]; the map is shifted
 * to a minimum of 0, divided by its maximum, and its top-left h x w corner written as float32 to
 * out (rows of h * w values). */
void robench_plasma_maps(const int64_t *seeds, int64_t first, int64_t maps, const double *decays,
                         int64_t begin, int64_t end, int64_t mapsize, int64_t h, int64_t w, float *out) {
    int64_t levels = 0;
    while (((int64_t)1 << levels) < mapsize) ++levels;
    double *g = malloc((size_t)(mapsize * mapsize + mapsize) * sizeof(double));
    uint32_t *keys = malloc((size_t)(6 * levels + 2) * sizeof(uint32_t));
    if (g == NULL || keys == NULL) abort();
    for (int64_t r = begin; r < end; ++r) {
        for (int64_t s = 0; s < 3 * levels; ++s)
            stream_key(seeds[r / maps], first + (r % maps) * 3 * levels + s, &keys[2 * s], &keys[2 * s + 1]);
        plasma_map(g, mapsize, keys, decays[r], g + mapsize * mapsize);
        double low, high;
        extremes(g, mapsize * mapsize, &low, &high);
        const double span = high - low;
        float *restrict y = out + r * h * w;
        for (int64_t a = 0; a < h; ++a)
            for (int64_t b = 0; b < w; ++b) y[a * w + b] = (float)((g[a * mapsize + b] - low) / span);
    }
    free(keys);
    free(g);
}

/* Fog._fog's blend for images [begin, end) of `channels` planes of `plane` values: x + s * p with
 * the image's plasma map p (one plane per image) and strength s, times the image's peak (its
 * largest value) divided by (peak + s), clamped. */
void robench_fog(const float *images, const float *plasma, const float *strength, float *out, int64_t begin,
                 int64_t end, int64_t channels, int64_t plane) {
    for (int64_t b = begin; b < end; ++b) {
        const float *restrict x = images + b * channels * plane;
        const float *restrict p = plasma + b * plane;
        float *restrict y = out + b * channels * plane;
        float peak = x[0], lanes[16];
        int64_t i = 0;
        for (int j = 0; j < 16; ++j) lanes[j] = x[0];
        for (; i + 16 <= channels * plane; i += 16)
            for (int j = 0; j < 16; ++j) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
        for (; i < channels * plane; ++i) peak = x[i] > peak ? x[i] : peak;
        for (int j = 0; j < 16; ++j) peak = lanes[j] > peak ? lanes[j] : peak;
        const float s = strength[b], divisor = peak + s;
        for (int64_t k = 0; k < channels; ++k)
            for (int64_t i = 0; i < plane; ++i) {
                const float value = ((x[k * plane + i] + s * p[i]) * peak) / divisor;
                y[k * plane + i] = clamp01(value);
            }
    }
}

/* ---- Elastic transform's sampling grid (plugins/distortions/digital.py) ---- */

/* ElasticTransform's grid for images [begin, end) of h x w pixels: each image's smoothed field (two
 * planes, the column then the row displacement) times alpha[b], added to the pixel's column x and
 * row y, as grid_sample's (x, y) pairs without corners aligned, (2 (x + dx) + 1) / w - 1 and
 * (2 (y + dy) + 1) / h - 1: each step rounded to float32 as _sample's torch steps are. */
void robench_elastic_grid(const float *field, const float *alpha, float *grid, int64_t begin, int64_t end,
                          int64_t h, int64_t w) {
    const int64_t n = h * w;
    const float width = (float)w, height = (float)h;
    for (int64_t b = begin; b < end; ++b) {
        const float scale = alpha[b];
        const float *restrict across = field + 2 * b * n, *restrict down = across + n;
        float *restrict out = grid + 2 * b * n;
        for (int64_t y = 0; y < h; ++y) {
            const float row = (float)y;
            for (int64_t x = 0; x < w; ++x) {
                const float xs = (float)x + across[y * w + x] * scale, ys = row + down[y * w + x] * scale;
                out[2 * (y * w + x)] = (2.0f * xs + 1.0f) / width - 1.0f;
                out[2 * (y * w + x) + 1] = (2.0f * ys + 1.0f) / height - 1.0f;
            }
        }
    }
}

/* ---- Motion blur (plugins/distortions/blur.py, the reference's _motion_blur) ---- */

#define MOTION_TAPS 8 /* taps a pass over a row's sums at most */

/* One pass of n taps (1 .. MOTION_TAPS; n, first and last constants at each call) over a row of w
 * values: each sum (a's, or 0.0 on the first pass) plus each tap's weight times its row at x, in
 * tap order; kept in a, or on the last pass rounded to float32 into o. The rows come offset by
 * their column shifts. */
static inline __attribute__((always_inline)) void motion_pass(double *restrict a, float *restrict o,
                                                              const double *const *rows, const double *weight,
                                                              const int n, const int first, const int last,
                                                              int64_t w) {
#define MOTION_TAP(k) \
    const double *restrict r##k = rows[n > k ? k : 0], w##k = weight[n > k ? k : 0];
    MOTION_TAP(0) MOTION_TAP(1) MOTION_TAP(2) MOTION_TAP(3) MOTION_TAP(4) MOTION_TAP(5) MOTION_TAP(6) MOTION_TAP(7)
#undef MOTION_TAP
    for (int64_t x = 0; x < w; ++x) {
        double v = first ? 0.0 : a[x];
        v = v + w0 * r0[x];
        if (n > 1) v = v + w1 * r1[x];
        if (n > 2) v = v + w2 * r2[x];
        if (n > 3) v = v + w3 * r3[x];
        if (n > 4) v = v + w4 * r4[x];
        if (n > 5) v = v + w5 * r5[x];
        if (n > 6) v = v + w6 * r6[x];
        if (n > 7) v = v + w7 * r7[x];
        if (last)
            o[x] = (float)v;
        else
            a[x] = v;
    }
}

/* motion_pass for a row's last n taps (1 .. MOTION_TAPS), the first pass too if `first`. */
static void motion_last(double *restrict a, float *restrict o, const double *const *rows, const double *weight,
                        int n, int first, int64_t w) {
#define MOTION_LAST(n) \
    case n: motion_pass(a, o, rows, weight, n, 0, 1, w); break; \
    case n + MOTION_TAPS: motion_pass(a, o, rows, weight, n, 1, 1, w); break;
    switch (n + MOTION_TAPS * first) {
        MOTION_LAST(1) MOTION_LAST(2) MOTION_LAST(3) MOTION_LAST(4) MOTION_LAST(5) MOTION_LAST(6) MOTION_LAST(7)
        MOTION_LAST(8)
    default: abort();
    }
#undef MOTION_LAST
}

/* The reference's _motion_blur for planes [begin, end) of `channels`-plane h x w images: each
 * output pixel the float64 sum, in tap order, of weight k times the image at (y - dy[k], x - dx[k])
 * with coordinates clamped to the image (edges replicated), over image b's `taps` (width per
 * image) weights and offsets, skipping zero weights (past a kernel's end or its first exit);
 * clamped to [0, 1] if `clamp` (each row as it is written). Each plane is made float64 once (1.2x
 * on one thread at 224 px, 1.3x on two), its rows widened on each side by the image's largest
 * column shift with their edge values, so that every tap reads inside its row (no clamped
 * columns: 1.5x at 224 px). MOTION_TAPS taps a pass over the row's float64 sums, each added in
 * turn (fewer loads and stores of the sums than a tap a pass; the same values): the first pass
 * starts from 0.0, the last writes the output. */
void robench_motion_blur(const float *images, float *out, const double *weights, const int64_t *dy,
                         const int64_t *dx, int64_t begin, int64_t end, int64_t channels, int64_t h, int64_t w,
                         int64_t taps, int clamp) {
    const int64_t widest = w + 2 * (taps < w ? taps : w); /* used shifts are under both */
    double *acc = malloc((size_t)w * sizeof(double)), *weight = malloc((size_t)taps * sizeof(double));
    int64_t *shift_x = malloc((size_t)taps * sizeof(int64_t)), *shift_y = malloc((size_t)taps * sizeof(int64_t));
    const double **rows = malloc((size_t)taps * sizeof(double *));
    double *wide = malloc((size_t)(h * widest) * sizeof(double));
    if (wide == NULL || acc == NULL || weight == NULL || shift_x == NULL || shift_y == NULL || rows == NULL) abort();
    for (int64_t p = begin; p < end; ++p) {
        const int64_t b = p / channels;
        int64_t used = 0, margin = 0; /* the image's taps with a weight, in order; their largest |column shift| */
        for (int64_t k = 0; k < taps; ++k) {
            if (weights[b * taps + k] == 0.0) continue;
            weight[used] = weights[b * taps + k];
            shift_x[used] = dx[b * taps + k];
            shift_y[used] = dy[b * taps + k];
            const int64_t reach = shift_x[used] < 0 ? -shift_x[used] : shift_x[used];
            margin = reach > margin ? reach : margin;
            ++used;
        }
        float *plane_out = out + p * h * w;
        if (used == 0) { /* no tap: sums of nothing */
            memset(plane_out, 0, (size_t)(h * w) * sizeof(float));
            continue;
        }
        const int64_t span = w + 2 * margin;
        const float *source = images + p * h * w;
        for (int64_t y = 0; y < h; ++y) { /* float64 (exact), the edge values repeated margin columns out */
            double *row = wide + y * span + margin;
            for (int64_t x = 0; x < w; ++x) row[x] = (double)source[y * w + x];
            for (int64_t x = 1; x <= margin; ++x) {
                row[-x] = row[0];
                row[w - 1 + x] = row[w - 1];
            }
        }
        for (int64_t y = 0; y < h; ++y) {
            for (int64_t u = 0; u < used; ++u) /* tap u's row, offset by its column shift */
                rows[u] = wide + clamp_index(y - shift_y[u], h) * span + margin - shift_x[u];
            float *o = plane_out + y * w;
            int64_t u = 0;
            for (; used - u > MOTION_TAPS; u += MOTION_TAPS) {
                if (u == 0)
                    motion_pass(acc, o, rows, weight, MOTION_TAPS, 1, 0, w);
                else
                    motion_pass(acc, o, rows + u, weight + u, MOTION_TAPS, 0, 0, w);
            }
            motion_last(acc, o, rows + u, weight + u, (int)(used - u), u == 0, w);
            if (clamp)
                for (int64_t x = 0; x < w; ++x) o[x] = clamp01(o[x]); /* the row still in cache */
        }
    }
    free(rows);
    free(wide);
    free(shift_y);
    free(shift_x);
    free(weight);
    free(acc);
}

/* ---- Glass blur's pixel copies (plugins/distortions/_glass.py, the reference's scan) ---- */

/* A scanned pixel's offset along one axis from its draw's hash, as local_copies decodes its
 * uniforms: min(trunc(u * 2 shift), 2 shift - 1) - shift, u the hash's top 24 bits / 2^24. */
static inline int32_t glass_offset(uint32_t bits, int32_t shift) {
    const float u = (float)(bits >> 8) * (1.0f / 16777216.0f), product = u * (float)(2 * shift);
    const int32_t step = (int32_t)product;
    return (step > 2 * shift - 1 ? 2 * shift - 1 : step) - shift;
}

/* One scan's copies in an image of `channels` planes (a constant at each call), each pixel's source
 * at its offset in delta. */
static inline __attribute__((always_inline)) void glass_scan(float *image, const int32_t *delta,
                                                             const int64_t channels, int64_t h, int64_t w,
                                                             int64_t shift) {
    const int64_t n = h * w;
    for (int64_t row = h - shift; row > shift; --row)
        for (int64_t col = w - shift; col > shift; --col) {
            const int64_t p = row * w + col, source = p + delta[p];
            for (int64_t c = 0; c < channels; ++c) image[c * n + p] = image[c * n + source];
        }
}

/* _glass.local_copies for images [begin, end) of `channels` h x w float32 planes, in place in x:
 * image b's first iterations[b] scans, scan i with the draws of stream first + i. A scan is the
 * reference's: pixels (row, column) of rows h - shift down to shift + 1, each row's columns
 * w - shift down to shift + 1, each copying (every channel) the pixel (row + dy, column + dx) as it
 * is then; its draws are counters 2 k (dx) and 2 k + 1 (dy), k its index in robench's draw order
 * (scan[p] of its flat position p). First each pixel's source offset (hashes in vectorised
 * loops), then the copies, one after the other. */
void robench_glass_copies(float *x, const int64_t *seeds, int64_t first, const int32_t *scan,
                          const int64_t *iterations, int64_t begin, int64_t end, int64_t channels, int64_t h,
                          int64_t w, int64_t shift) {
    const int64_t n = h * w, lo = shift + 1; /* rows and columns lo .. h - shift (w - shift) */
    int32_t *delta = malloc((size_t)n * sizeof(int32_t));
    if (delta == NULL) abort();
    for (int64_t b = begin; b < end; ++b) {
        float *image = x + b * channels * n;
        for (int64_t i = 0; i < iterations[b]; ++i) {
            uint32_t low, high;
            stream_key(seeds[b], first + i, &low, &high);
            for (int64_t row = lo; row <= h - shift; ++row) {
                const int32_t *restrict index = scan + row * w;
                int32_t *restrict offset = delta + row * w;
                for (int64_t col = lo; col <= w - shift; ++col) {
                    const uint32_t k = 2 * (uint32_t)index[col];
                    offset[col] = glass_offset(hash(k + 1, low, high), (int32_t)shift) * (int32_t)w +
                                  glass_offset(hash(k, low, high), (int32_t)shift);
                }
            }
            if (channels == 3)
                glass_scan(image, delta, 3, h, w, shift);
            else
                glass_scan(image, delta, channels, h, w, shift);
        }
    }
    free(delta);
}

/* ---- Gaussian blur (plugins/distortions/_filters.py) ---- */

/* _filters.gaussian_blur_each for planes [begin, end), `planes` per image, of h x w float32 values
 * (robench_gaussian_blur; float64: robench_gaussian_blur_f64, taps in float64 too): a vertical,
 * then a horizontal pass of a symmetric kernel. Image b takes choice s = which[b] (0
 * when which is NULL): taps + (2 s + axis) * (reach + 1) holds that axis's centre tap, then offset
 * 1, 2, ..., radius[2 s + axis] (axis 0 vertical, 1 horizontal). Borders follow row_source /
 * col_source: the source row (column) of each padded position -reach .. h + reach - 1
 * (w + reach - 1). Each pass adds the centre term, then the pairs t[j] * (before + after) for
 * j = 1 .. radius, in the values' type. `finish` 1 clamps the output to [0, 1], 2 makes it uint8
 * levels / 255 (glass_blur's: floor(x * 255) clamped to [0, 255], then / 255), each row as it is
 * written, instead of another pass over the batch (0: as it is). */
#define BLOCK 4 /* vectors of columns summed together, each its own chain of additions */

/* float64 vectors as wide as wide_floats: WIDE / 2 lanes. */
typedef double wide_doubles __attribute__((vector_size(4 * WIDE)));

static inline wide_doubles load_wide_doubles(const double *p) {
    wide_doubles v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* NAME(y, centre, t, r, n, ...): y[x] = t[0] * centre[x] + sum over j = 1 .. r of
 * t[j] * (BEFORE(j)[x] + AFTER(j)[x]), added in that order, for x in [0, n) of values of type T:
 * LANES * BLOCK columns at a time (vectors V, loaded by LOAD), kept in registers across the taps.
 * The rows before and after are the extra parameters' (LISTED: the pointers before[j] and
 * after[j]; STRIDED: centre -/+ j * stride, for a padded row or rows away from the borders, whose
 * addresses are computed instead of loaded: those loads, three a tap beside its eight vector
 * loads, had kept the load ports the busiest). */
#define SYMMETRIC_SUM(NAME, T, V, LANES, LOAD, BEFORE, AFTER, ...)                                             \
    static inline __attribute__((always_inline)) void NAME(T *restrict y, const T *restrict centre,            \
                                                           const T *restrict t, int64_t r, int64_t n,           \
                                                           __VA_ARGS__) {                                       \
        int64_t x = 0;                                                                                          \
        for (; x + LANES * BLOCK <= n; x += LANES * BLOCK) {                                                    \
            V a[BLOCK];                                                                                         \
            for (int i = 0; i < BLOCK; ++i) a[i] = t[0] * LOAD(centre + x + LANES * i);                         \
            for (int64_t j = 1; j <= r; ++j) {                                                                  \
                const T *u = BEFORE(j) + x, *v = AFTER(j) + x;                                                  \
                for (int i = 0; i < BLOCK; ++i) a[i] += t[j] * (LOAD(u + LANES * i) + LOAD(v + LANES * i));     \
            }                                                                                                   \
            memcpy(y + x, a, sizeof a);                                                                         \
        }                                                                                                       \
        for (; x + LANES <= n; x += LANES) { /* what is left of whole vectors, one at a time */               \
            V a = t[0] * LOAD(centre + x);                                                                      \
            for (int64_t j = 1; j <= r; ++j) a += t[j] * (LOAD(BEFORE(j) + x) + LOAD(AFTER(j) + x));           \
            memcpy(y + x, &a, sizeof a);                                                                        \
        }                                                                                                       \
        for (; x < n; ++x) {                                                                                    \
            T a = t[0] * centre[x];                                                                             \
            for (int64_t j = 1; j <= r; ++j) a += t[j] * (BEFORE(j)[x] + AFTER(j)[x]);                          \
            y[x] = a;                                                                                           \
        }                                                                                                       \
    }

#define LISTED_BEFORE(j) before[j]
#define LISTED_AFTER(j) after[j]
#define STRIDED_BEFORE(j) (centre - (j) * stride)
#define STRIDED_AFTER(j) (centre + (j) * stride)
SYMMETRIC_SUM(symmetric_sum, float, wide_floats, WIDE, load_wide, LISTED_BEFORE, LISTED_AFTER,
              const float *const *before, const float *const *after)
SYMMETRIC_SUM(strided_sum, float, wide_floats, WIDE, load_wide, STRIDED_BEFORE, STRIDED_AFTER, int64_t stride)
/* spatter's float64 fields */
SYMMETRIC_SUM(symmetric_sum_f64, double, wide_doubles, WIDE / 2, load_wide_doubles, LISTED_BEFORE, LISTED_AFTER,
              const double *const *before, const double *const *after)
SYMMETRIC_SUM(strided_sum_f64, double, wide_doubles, WIDE / 2, load_wide_doubles, STRIDED_BEFORE, STRIDED_AFTER,
              int64_t stride)

/* The blur's body for value type T and the row sums SUM and STRIDED (float32: symmetric_sum and
 * strided_sum; float64: their _f64); the taps are of type T too. */
#define GAUSSIAN_BLUR(NAME, T, SUM, STRIDED)                                                                   \
    void NAME(const T *images, T *out, const T *taps, const int64_t *radius, const int64_t *which,              \
              const int64_t *row_source, const int64_t *col_source, int64_t reach, int64_t begin, int64_t end,  \
              int64_t planes, int64_t h, int64_t w, int64_t finish) {                                           \
        T *tmp = malloc((size_t)(h * w + w + 2 * reach) * sizeof(T));                                           \
        const T **rows = malloc((size_t)(2 * (reach + 1)) * sizeof(T *));                                       \
        if (tmp == NULL || rows == NULL) abort();                                                               \
        T *restrict padded = tmp + h * w;                                                                       \
        const T **before = rows, **after = rows + reach + 1;                                                    \
        for (int64_t p = begin; p < end; ++p) {                                                                 \
            const int64_t s = which != NULL ? which[p / planes] : 0;                                            \
            const T *plane = images + p * h * w, *t = taps + 2 * s * (reach + 1);                               \
            int64_t r = radius[2 * s];                                                                          \
            for (int64_t y = 0; y < h; ++y) { /* vertical: rows y - j and y + j, by their sources */           \
                if (y >= r && y + r < h) { /* every row read is inside: its own source */                      \
                    STRIDED(tmp + y * w, plane + y * w, t, r, w, w);                                            \
                    continue;                                                                                   \
                }                                                                                               \
                for (int64_t j = 1; j <= r; ++j) {                                                              \
                    before[j] = plane + row_source[y + reach - j] * w;                                          \
                    after[j] = plane + row_source[y + reach + j] * w;                                           \
                }                                                                                               \
                SUM(tmp + y * w, plane + row_source[y + reach] * w, t, r, w, before, after);                    \
            }                                                                                                   \
            r = radius[2 * s + 1];                                                                              \
            t += reach + 1;                                                                                     \
            for (int64_t y = 0; y < h; ++y) { /* the row as it is, its borders from their sources */          \
                const T *row = tmp + y * w;                                                                     \
                memcpy(padded + reach, row, (size_t)w * sizeof(T));                                             \
                for (int64_t q = 0; q < reach; ++q) {                                                           \
                    padded[q] = row[col_source[q]];                                                             \
                    padded[w + reach + q] = row[col_source[w + reach + q]];                                     \
                }                                                                                               \
                T *o = out + p * h * w + y * w;                                                                 \
                STRIDED(o, padded + reach, t, r, w, 1); /* horizontal, on the row padded by its border rule */ \
                if (finish == 1)                                                                                \
                    for (int64_t x = 0; x < w; ++x) o[x] = o[x] < (T)0 ? (T)0 : (o[x] > (T)1 ? (T)1 : o[x]);     \
                else if (finish == 2)                                                                           \
                    for (int64_t x = 0; x < w; ++x) {                                                           \
                        const T level = (T)floor((double)(o[x] * (T)255)); /* the product rounded to T */      \
                        o[x] = (level < (T)0 ? (T)0 : (level > (T)255 ? (T)255 : level)) / (T)255;              \
                    }                                                                                           \
            }                                                                                                   \
        }                                                                                                       \
        free(rows);                                                                                             \
        free(tmp);                                                                                              \
    }

GAUSSIAN_BLUR(robench_gaussian_blur, float, symmetric_sum, strided_sum)
GAUSSIAN_BLUR(robench_gaussian_blur_f64, double, symmetric_sum_f64, strided_sum_f64)

/* ---- Defocus blur (plugins/distortions/blur.py) ---- */

#define DISK_BLOCK 4 /* vectors of columns summed together */

/* DefocusBlur for planes [begin, end) of h x w float32 values: the reference's kernel, a flat disk
 * smoothed by a small Gaussian, applied as that Gaussian (separable, 2 rg + 1 taps `gauss`), then
 * the disk as sums of rows (disk row dy = j - reach spans half[j] columns either side of the centre;
 * each smoothed row's centred sums of every half-width 0 .. reach are built by adding two values
 * per width and kept for the 2 reach + 1 rows in use), times `scale` (1 / the disk's pixel count),
 * plus the sum of `taps` sparse corrections (weight, dy, dx) where the reference's kernel differs from
 * that product (where it cuts the Gaussian off at its window's edge); in float32, clamped to [0, 1].
 * Borders follow row_source / col_source: the source row (column) of each position
 * -pad .. h + pad - 1 (w + pad - 1); pad covers reach + rg and every correction. */
void robench_defocus(const float *images, float *out, const int64_t *row_source, const int64_t *col_source,
                     int64_t pad, const float *gauss, int64_t rg, const int64_t *half, int64_t reach, float scale,
                     const float *weights, const int64_t *dy, const int64_t *dx, int64_t taps, int64_t begin,
                     int64_t end, int64_t h, int64_t w) {
    const int64_t wp = w + 2 * pad, wq = w + 2 * reach, hb = h + 2 * reach + 2 * rg, span = 2 * reach + 1;
    const int64_t ring_row = (reach + 1) * w; /* one smoothed row's sums, width by width */
    float *padded = malloc((size_t)((h + 2 * pad) * wp + hb * wq + wq + span * ring_row) * sizeof(float));
    const float **rows = malloc((size_t)span * sizeof(float *));
    if (padded == NULL || rows == NULL) abort();
    float *restrict across = padded + (h + 2 * pad) * wp, *restrict smooth = across + hb * wq;
    float *restrict ring = smooth + wq;
    for (int64_t p = begin; p < end; ++p) {
        const float *plane = images + p * h * w;
        for (int64_t y = 0; y < h + 2 * pad; ++y) { /* the plane padded by its border rule */
            const float *restrict row = plane + row_source[y] * w;
            float *restrict dst = padded + y * wp;
            for (int64_t x = 0; x < pad; ++x) dst[x] = row[col_source[x]];
            memcpy(dst + pad, row, (size_t)w * sizeof(float));
            for (int64_t x = pad + w; x < wp; ++x) dst[x] = row[col_source[x]];
        }
        /* the Gaussian along rows, on the rows and columns the disk and the vertical pass read */
        for (int64_t y = 0; y < hb; ++y) {
            const float *restrict src = padded + (pad - reach - rg + y) * wp + pad - reach - rg;
            float *restrict dst = across + y * wq;
            for (int64_t x = 0; x < wq; ++x) dst[x] = gauss[0] * src[x];
            for (int64_t k = 1; k <= 2 * rg; ++k)
                for (int64_t x = 0; x < wq; ++x) dst[x] += gauss[k] * src[x + k];
        }
        for (int64_t q = 0; q < h + 2 * reach; ++q) {
            /* smoothed row q: the Gaussian along columns, then its centred sums of each half-width */
            const float *restrict src = across + q * wq;
            for (int64_t x = 0; x < wq; ++x) smooth[x] = gauss[0] * src[x];
            for (int64_t k = 1; k <= 2 * rg; ++k)
                for (int64_t x = 0; x < wq; ++x) smooth[x] += gauss[k] * src[x + k * wq];
            float *restrict sums = ring + (q % span) * ring_row;
            const float *restrict centred = smooth + reach;
            int64_t x = 0;
            for (; x + WIDE <= w; x += WIDE) { /* each wider sum the narrower plus its two new ends */
                wide_floats v = load_wide(centred + x);
                memcpy(sums + x, &v, sizeof v);
                for (int64_t d = 1; d <= reach; ++d) {
                    v += load_wide(centred + x - d) + load_wide(centred + x + d);
                    memcpy(sums + d * w + x, &v, sizeof v);
                }
            }
            for (; x < w; ++x) {
                float v = centred[x];
                sums[x] = v;
                for (int64_t d = 1; d <= reach; ++d) sums[d * w + x] = v += centred[x - d] + centred[x + d];
            }
            if (q < span - 1) continue;
            /* output row y, whose disk covers smoothed rows y .. q: the sums kept in registers */
            const int64_t y = q - (span - 1);
            for (int64_t j = 0, slot = y % span; j < span; ++j, slot = slot + 1 == span ? 0 : slot + 1)
                rows[j] = ring + slot * ring_row + half[j] * w;
            float *restrict o = out + p * h * w + y * w;
            const float *restrict centre = padded + (pad + y) * wp + pad;
            x = 0;
            for (; x + WIDE * DISK_BLOCK <= w; x += WIDE * DISK_BLOCK) {
                wide_floats a[DISK_BLOCK] = {0}, c[DISK_BLOCK] = {0};
                for (int64_t j = 0; j < span; ++j)
                    for (int i = 0; i < DISK_BLOCK; ++i) a[i] += load_wide(rows[j] + x + WIDE * i);
                for (int64_t t = 0; t < taps; ++t) {
                    const float *at = centre + dy[t] * wp + dx[t] + x;
                    for (int i = 0; i < DISK_BLOCK; ++i) c[i] += weights[t] * load_wide(at + WIDE * i);
                }
                for (int i = 0; i < DISK_BLOCK; ++i) a[i] = a[i] * scale + c[i];
                memcpy(o + x, a, sizeof a);
            }
            for (; x + WIDE <= w; x += WIDE) { /* whole vectors left, one at a time */
                wide_floats a = {0}, c = {0};
                for (int64_t j = 0; j < span; ++j) a += load_wide(rows[j] + x);
                for (int64_t t = 0; t < taps; ++t) c += weights[t] * load_wide(centre + dy[t] * wp + dx[t] + x);
                a = a * scale + c;
                memcpy(o + x, &a, sizeof a);
            }
            for (; x < w; ++x) {
                float a = 0.0f, c = 0.0f;
                for (int64_t j = 0; j < span; ++j) a += rows[j][x];
                for (int64_t t = 0; t < taps; ++t) c += weights[t] * centre[dy[t] * wp + dx[t] + x];
                o[x] = a * scale + c;
            }
            for (x = 0; x < w; ++x) o[x] = clamp01(o[x]);
        }
    }
    free(rows);
    free(padded);
}

/* ---- Frost (plugins/distortions/weather.py, robench's procedural texture) ---- */

/* Frost._frost for images [begin, end) of 3 planes of `plane` values, from each image's two plasma
 * maps (field, ridges: planes of `plane` values), the field's mean and spread, and per image its
 * brightness, contrast, ridge weight, image weight and frost weight: as frost_texture and _frost
 * compute them in float32, operation by operation. The texture's luminance is the same for the
 * three channels: made once, FROST_BLOCK values at a time, then tinted and blended per channel. */
#define FROST_BLOCK 1024
void robench_frost(const float *images, float *out, const float *maps, const float *mean, const float *spread,
                   const float *brightness, const float *contrast, const float *ridge_weight,
                   const float *image_weight, const float *frost_weight, const float *tint, int64_t begin,
                   int64_t end, int64_t plane) {
    float luminance[FROST_BLOCK];
    for (int64_t b = begin; b < end; ++b) {
        const float *restrict field = maps + 2 * b * plane, *restrict ridges = field + plane;
        const float m = mean[b], s = spread[b], bright = brightness[b], con = contrast[b], rw = ridge_weight[b];
        const float iw = image_weight[b], fw = frost_weight[b];
        for (int64_t i0 = 0; i0 < plane; i0 += FROST_BLOCK) {
            const int64_t n = plane - i0 < FROST_BLOCK ? plane - i0 : FROST_BLOCK;
            for (int64_t i = 0; i < n; ++i) {
                const float line = 1.0f - fabsf(2.0f * ridges[i0 + i] - 1.0f);
                float sharp = line * line;
                sharp = sharp * sharp;
                sharp = sharp * sharp;
                luminance[i] = (bright + con * ((field[i0 + i] - m) / s)) + rw * sharp;
            }
            for (int64_t k = 0; k < 3; ++k) {
                const float *restrict x = images + (3 * b + k) * plane + i0;
                float *restrict y = out + (3 * b + k) * plane + i0;
                const float colour = tint[k];
                for (int64_t i = 0; i < n; ++i) y[i] = clamp01(iw * x[i] + fw * clamp01(luminance[i] * colour));
            }
        }
    }
}

/* ---- Snow (plugins/distortions/weather.py) ---- */

#define SNOW_BLOCK 1024 /* values of the turned layer copied at a time */

/* n pixels of robench_snow, the turned layer's values in order in `turned` (a loop GCC vectorises;
 * reading the layer backwards in it, it did not). */
static void snow_pixels(const float *restrict xr, const float *restrict xg, const float *restrict xb,
                        const float *restrict flakes, const float *restrict turned, float *restrict yr,
                        float *restrict yg, float *restrict yb, int64_t n, float keep, float lift) {
    const float red = 0.299f, green = 0.587f, blue = 0.114f;
    for (int64_t j = 0; j < n; ++j) {
        const float grey = (xr[j] * red + xg[j] * green) + xb[j] * blue;
        const float lifted = grey * 1.5f + 0.5f, add = flakes[j], turn = turned[j];
        yr[j] = clamp01((keep * xr[j] + lift * (xr[j] > lifted ? xr[j] : lifted) + add) + turn);
        yg[j] = clamp01((keep * xg[j] + lift * (xg[j] > lifted ? xg[j] : lifted) + add) + turn);
        yb[j] = clamp01((keep * xb[j] + lift * (xb[j] > lifted ? xb[j] : lifted) + add) + turn);
    }
}

/* Snow's last steps for images [begin, end) of 3 planes of h x w values: the image lifted to
 * max(x, grey * 1.5 + 0.5) (grey = (0.299 R + 0.587 G) + 0.114 B), blended as
 * image_weight * x + lift_weight * lifted, plus the snow layer (one plane per image) and the layer
 * turned by 180 degrees, clamped; each step in Snow.apply_mixed's float32 order. */
void robench_snow(const float *images, const float *layer, const float *image_weight, const float *lift_weight,
                  float *out, int64_t begin, int64_t end, int64_t h, int64_t w) {
    const int64_t plane = h * w;
    float turned[SNOW_BLOCK];
    for (int64_t b = begin; b < end; ++b) {
        const float *x = images + 3 * b * plane, *snow = layer + b * plane;
        float *y = out + 3 * b * plane;
        for (int64_t i = 0; i < plane; i += SNOW_BLOCK) {
            const int64_t n = plane - i < SNOW_BLOCK ? plane - i : SNOW_BLOCK;
            for (int64_t j = 0; j < n; ++j) turned[j] = snow[plane - 1 - i - j];
            snow_pixels(x + i, x + plane + i, x + 2 * plane + i, snow + i, turned, y + i, y + plane + i,
                        y + 2 * plane + i, n, image_weight[b], lift_weight[b]);
        }
    }
}

/* ---- Spatter's water (plugins/distortions/_spatter.py, OpenCV's chain in imagecorruptions) ---- */

static inline int64_t reflect101(int64_t i, int64_t size) {
    if (size == 1) return 0;
    const int64_t period = 2 * (size - 1);
    i %= period;
    if (i < 0) i += period;
    return i >= size ? period - i : i;
}

/* Sum of the 3 x 3 window around each value of row y of an h x w plane into out (w values), borders
 * reflect-101 (_box_sum3; ry / rx: the source row / column of positions -1 .. h / w): the three
 * rows first (into `rows`, w values), then columns, in float64 (exact for these values). A row at
 * a time: the plane of sums never leaves the cache. */
static void box_sum3_row(const float *restrict x, double *restrict out, double *restrict rows, const int64_t *ry,
                         const int64_t *rx, int64_t y, int64_t w) {
    const float *a = x + ry[y] * w, *b = x + y * w, *c = x + ry[y + 2] * w;
    for (int64_t i = 0; i < w; ++i) rows[i] = ((double)a[i] + (double)b[i]) + (double)c[i];
    out[0] = (rows[rx[0]] + rows[0]) + rows[rx[2]];
    for (int64_t i = 1; i + 1 < w; ++i) out[i] = (rows[i - 1] + rows[i]) + rows[i + 1];
    if (w > 1) out[w - 1] = (rows[w - 2] + rows[w - 1]) + rows[rx[w + 1]];
}

/* Add the counts of the levels 0 .. 20 among n whole-number floats to hist, in four interleaved
 * tallies: runs of equal levels (most of the smoothed distance is 20) would otherwise chain each
 * increment to the one before through memory. */
static void count_levels(const float *restrict row, int64_t n, int64_t *restrict hist) {
    int32_t tally[4][24] = {{0}};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; ++k) tally[k][(int32_t)row[i + k]] += 1;
    for (; i < n; ++i) tally[0][(int32_t)row[i]] += 1;
    for (int v = 0; v < 21; ++v) hist[v] += (tally[0][v] + tally[1][v]) + (tally[2][v] + tally[3][v]);
}

/* Append to list (from list[count]) the indices base + i of the values equal to target among row[0 ..
 * w), in order, eight at a time, skipping eights without one; returns the new count. */
static int64_t list_state(const int32_t *restrict row, int64_t w, int32_t target, int64_t base, int32_t *restrict list,
                          int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= w; i += 8) {
        int_lanes8 v;
        memcpy(&v, row + i, sizeof v);
        const int_lanes8 hit = v == target; /* -1 where equal */
        uint64_t any[4];
        memcpy(any, &hit, sizeof any);
        if ((any[0] | any[1] | any[2] | any[3]) == 0) continue;
        for (int k = 0; k < 8; ++k) {
            list[count] = (int32_t)(base + i + k);
            count -= hit[k];
        }
    }
    for (; i < w; ++i) {
        list[count] = (int32_t)(base + i);
        count += row[i] == target;
    }
    return count;
}

/* The emboss filter at column i of a row (left / right neighbour columns l / r), clamped to 0..255:
 * small integers, exact in any order. */
static inline float emboss_at(const float *up, const float *mid, const float *down, int64_t l, int64_t i, int64_t r) {
    const float total = -2.0f * up[l] - up[i] - mid[l] + mid[i] + mid[r] + down[i] + 2.0f * down[r];
    return total < 0.0f ? 0.0f : (total > 255.0f ? 255.0f : total);
}

/* One row of Canny's 3x3 Sobel gradients and their L1 magnitude, from three rows of levels
 * padded by one column on either side. */
static void sobel_row(const int32_t *restrict up, const int32_t *restrict mid, const int32_t *restrict down,
                      int32_t *restrict sx, int32_t *restrict sy, int32_t *restrict magnitude, int64_t w) {
    for (int64_t i = 0; i < w; ++i) {
        const int32_t dx = (up[i + 2] - up[i]) + 2 * (mid[i + 2] - mid[i]) + (down[i + 2] - down[i]);
        const int32_t dy = (down[i] - up[i]) + 2 * (down[i + 1] - up[i + 1]) + (down[i + 2] - up[i + 2]);
        sx[i] = dx;
        sy[i] = dy;
        magnitude[i] = abs(dx) + abs(dy);
    }
}

static inline float nearer(float v, float u) { return u < v ? u : v; }

/* The step along the row of a chamfer raster pass: r[k * step] = min(r[k * step], r[(k - 1) *
 * step] + 1) for k = 1 .. n - 1, in that order, in float32. Four stretches of the row run side by
 * side, each from its own first value (four independent chains instead of one); then each stretch
 * takes the carry from the one before it, up to the first value the carry does not lower: within
 * a stretch each value is at most its predecessor + 1, so the carry (growing by 1, rounded the
 * same way) lowers none after that. */
static void row_chain(float *r, int64_t n, int64_t step) {
    const int64_t q = n / 4;
    if (q < 8) {
        for (int64_t k = 1; k < n; ++k) r[k * step] = nearer(r[k * step], r[(k - 1) * step] + 1.0f);
        return;
    }
    float *s0 = r, *s1 = r + q * step, *s2 = r + 2 * q * step, *s3 = r + 3 * q * step;
    float p0 = s0[0], p1 = s1[0], p2 = s2[0], p3 = s3[0];
    for (int64_t k = 1; k < q; ++k) {
        const int64_t o = k * step;
        p0 = s0[o] = nearer(s0[o], p0 + 1.0f);
        p1 = s1[o] = nearer(s1[o], p1 + 1.0f);
        p2 = s2[o] = nearer(s2[o], p2 + 1.0f);
        p3 = s3[o] = nearer(s3[o], p3 + 1.0f);
    }
    for (int64_t k = 4 * q; k < n; ++k) p3 = r[k * step] = nearer(r[k * step], p3 + 1.0f);
    for (int64_t start = q; start < 4 * q; start += q) {
        float carry = r[(start - 1) * step];
        for (int64_t k = start; k < n; ++k) {
            carry += 1.0f;
            if (!(carry < r[k * step])) break;
            r[k * step] = carry;
        }
    }
}

/* The steps of a chamfer raster pass into row r0 from the two rows before it in the pass's order
 * (r1 next to r0, r2 beyond), for all w pixels at once. The 5x5 mask's steps from those rows are
 * the same column offsets in either direction, so one loop serves both passes. */
static void steps_from_rows(float *restrict r0, const float *r1, const float *r2, int64_t w) {
    const float a = 1.0f, b = 1.4f, c = 2.1969f;
    for (int64_t i = 0; i < w; ++i) {
        float v = nearer(r0[i], r2[i - 1] + c);
        v = nearer(v, r2[i + 1] + c);
        v = nearer(v, r1[i - 2] + c);
        v = nearer(v, r1[i - 1] + b);
        v = nearer(v, r1[i] + a);
        v = nearer(v, r1[i + 1] + b);
        r0[i] = nearer(v, r1[i + 2] + c);
    }
}

/* cv2.distanceTransform(non-edges, DIST_L2, 5) truncated at 20, from `state` (2: edge), as OpenCV
 * computes it and _spatter._chamfer_table reproduces for one edge: a forward then a backward
 * raster pass of float32 sums of the step lengths 1, 1.4 and 2.1969 over `frame` [(h + 4) x
 * (w + 4)], whose 2-px border never updates. Each row's steps from the rows before it are taken
 * for all its pixels at once (steps_from_rows), then the step along the row (row_chain). */
static void chamfer_distance(const int32_t *restrict state, int64_t stride, float *restrict frame,
                             float *restrict dist, int64_t h, int64_t w) {
    const int64_t pw = w + 4;
    for (int64_t i = 0; i < (h + 4) * pw; ++i) frame[i] = INFINITY;
    for (int64_t y = 0; y < h; ++y)
        for (int64_t i = 0; i < w; ++i) frame[(y + 2) * pw + 2 + i] = state[y * stride + i] == 2 ? 0.0f : INFINITY;
    for (int64_t y = 0; y < h; ++y) { /* forward: from rows y - 1, y - 2 and the pixel on the left */
        float *r0 = frame + (y + 2) * pw + 2;
        steps_from_rows(r0, r0 - pw, r0 - 2 * pw, w);
        row_chain(r0, w, 1);
    }
    for (int64_t y = h - 1; y >= 0; --y) { /* backward: from rows y + 1, y + 2 and the pixel on the right */
        float *r0 = frame + (y + 2) * pw + 2;
        steps_from_rows(r0, r0 + pw, r0 + 2 * pw, w);
        row_chain(r0 + w - 1, w, -1);
        for (int64_t i = 0; i < w; ++i) dist[y * w + i] = nearer(20.0f, r0[i]);
    }
}

/* out = (double)x * scale[b] + loc[b] for images [begin, end) of `plane` float32 values: spatter's
 * float64 field from its float32 draws, as torch's promoted product and sum (two roundings). */
void robench_affine_f64(const float *x, double *out, const double *scale, const double *loc, int64_t begin,
                        int64_t end, int64_t plane) {
    for (int64_t b = begin; b < end; ++b) {
        const float *restrict source = x + b * plane;
        double *restrict target = out + b * plane;
        const double factor = scale[b], offset = loc[b];
        for (int64_t i = 0; i < plane; ++i) target[i] = (double)source[i] * factor + offset;
    }
}

/* The water's distance step alone, for edge masks [begin, end) of h x w bytes (nonzero: edge):
 * what chamfer_distance gives the water kernel (robench.cpu_kernels.chamfer_distance; tests compare it
 * with OpenCV). */
void robench_chamfer_distance(const uint8_t *edges, float *out, int64_t begin, int64_t end, int64_t h, int64_t w) {
    const int64_t n = h * w;
    int32_t *state = malloc((size_t)n * sizeof(int32_t));
    float *frame = malloc((size_t)((h + 4) * (w + 4)) * sizeof(float));
    if (state == NULL || frame == NULL) abort();
    for (int64_t b = begin; b < end; ++b) {
        for (int64_t i = 0; i < n; ++i) state[i] = edges[b * n + i] ? 2 : 0;
        chamfer_distance(state, w, frame, out + b * n, h, w);
    }
    free(state);
    free(frame);
}

/* _spatter._water for images [begin, end) of 3 planes of h x w float32 values, from each image's
 * float64 field (one plane, 0 below threshold[b]): the uint8 levels (field * 255 rounded down,
 * clamped to 0..255), then OpenCV's chain from them to the droplet map: Canny (3x3 Sobel with
 * replicated borders, L1 magnitude, OpenCV's non-maximum suppression, thresholds 50 / 150,
 * hysteresis through 8-connected weak pixels), the 5x5 chamfer distance to the edges truncated at
 * 20 (OpenCV's two raster passes, chamfer_distance: the values _truncated_distance takes from its
 * tabulated lengths), cv2.blur and the uint8 cast, equalizeHist on 0..20, the emboss filter
 * clamped to 0..255, and cv2.blur's rounded uint8 mean; then the blend: m = level *
 * droplet, divided by its peak (at least 1; m = 0 where the peak is 0), times intensity[b], and
 * out = clamp(x + m * colour[k], 0, 1) on each plane k, in _water's float32 order. */
void robench_spatter_water(const double *layers, const float *images, float *out, const double *threshold,
                           const float *intensity, const float *colour, int64_t begin, int64_t end, int64_t h,
                           int64_t w) {
    const int64_t n = h * w, pw = w + 2;
    int32_t *grid = malloc((size_t)(3 * (h + 2) * pw + 4 * n) * sizeof(int32_t));
    double *sums = malloc((size_t)(2 * w) * sizeof(double)); /* a row's window sums, and its three rows' */
    float *dist = malloc((size_t)(2 * n + (h + 4) * (w + 4)) * sizeof(float));
    int64_t *ry = malloc((size_t)(h + 2 + w + 2) * sizeof(int64_t));
    float *levels = malloc((size_t)n * sizeof(float));
    if (grid == NULL || sums == NULL || dist == NULL || ry == NULL || levels == NULL) abort();
    int32_t *level = grid, *mag = level + (h + 2) * pw, *gx = mag + (h + 2) * pw, *gy = gx + n;
    int32_t *framed = gy + n, *stack = framed + (h + 2) * pw, *state = framed + pw + 1; /* state[y * pw + i]; stack: 2n values */
    int64_t *rx = ry + h + 2;
    float *work = dist + n, *frame = work + n;
    for (int64_t i = 0; i < h + 2; ++i) ry[i] = reflect101(i - 1, h);
    for (int64_t i = 0; i < w + 2; ++i) rx[i] = reflect101(i - 1, w);
    for (int64_t i = 0; i < (h + 2) * pw; ++i) mag[i] = framed[i] = 0; /* zero frames: outside counts 0, no edge */
    for (int64_t b = begin; b < end; ++b) {
        const double *field = layers + b * n, cut = threshold[b];
        for (int64_t i = 0; i < n; ++i) { /* 0 below the threshold, then astype(uint8), saturating */
            const double value = field[i] < cut ? 0.0 : floor(field[i] * 255.0);
            levels[i] = (float)(value < 0.0 ? 0.0 : (value > 255.0 ? 255.0 : value));
        }
        for (int64_t y = 0; y < h + 2; ++y) { /* levels with replicated borders */
            const float *restrict source = levels + clamp_index(y - 1, h) * w;
            int32_t *restrict padded = level + y * pw;
            for (int64_t i = 0; i < w; ++i) padded[i + 1] = (int32_t)source[i];
            padded[0] = padded[1];
            padded[w + 1] = padded[w];
        }
        for (int64_t y = 0; y < h; ++y)
            sobel_row(level + y * pw, level + (y + 1) * pw, level + (y + 2) * pw, gx + y * w, gy + y * w,
                      mag + (y + 1) * pw + 1, w);
        /* state: 0 none, 1 weak (kept by the suppression, above 50), 2 edge; every neighbour is
         * read (the zero frame holds them) and the direction picks two, so the loop has no branch */
        int64_t kept_count = 0, strong = 0;
        for (int64_t y = 0; y < h; ++y) {
            const int32_t *restrict z = mag + (y + 1) * pw + 1, *restrict sx = gx + y * w, *restrict sy = gy + y * w;
            int32_t *restrict kept = state + y * pw;
            for (int64_t i = 0; i < w; ++i) {
                const int32_t m = z[i], gxi = sx[i], gyi = sy[i];
                const int32_t ax = gxi < 0 ? -gxi : gxi, ay = (gyi < 0 ? -gyi : gyi) << 15, tg22 = ax * 13573;
                const int32_t left = z[i - 1], right = z[i + 1], above = z[i - pw], below = z[i + pw];
                const int32_t above_left = z[i - pw - 1], above_right = z[i - pw + 1];
                const int32_t below_left = z[i + pw - 1], below_right = z[i + pw + 1];
                const int32_t horizontal = ay < tg22, vertical = ay > tg22 + (ax << 16);
                const int32_t same = (gxi < 0) == (gyi < 0);
                const int32_t diagonal_before = same ? above_left : above_right;
                const int32_t diagonal_after = same ? below_right : below_left;
                const int32_t before = horizontal ? left : (vertical ? above : diagonal_before);
                const int32_t after = horizontal ? right : (vertical ? below : diagonal_after + 1);
                /* the axis directions keep the upper / left pixel of a tie, the diagonals neither */
                const int32_t keep = (m > before) & (m >= after) & (m > 50);
                kept[i] = keep * (1 + (m > 150));
                kept_count += keep;
                strong += keep & (m > 150);
            }
        }
        /* hysteresis: weak pixels 8-connected to an edge become edges (the frame holds neither), grown
         * from a list of whichever are fewer (either can be the most of the pixels): the weak pixels
         * next to an edge, or the edges */
        const int64_t weak = kept_count - strong;
        const int32_t listed = weak <= strong ? 1 : 2;
        int64_t seeds = 0;
        for (int64_t y = 0; weak > 0 && y < h; ++y) seeds = list_state(state + y * pw, w, listed, y * pw, stack, seeds);
        const int64_t around[8] = {-pw - 1, -pw, -pw + 1, -1, 1, pw - 1, pw, pw + 1};
        int32_t *grown = stack + seeds; /* at most the weak pixels' count */
        for (int64_t j = 0; j < seeds; ++j) {
            const int64_t k = stack[j];
            int64_t top = 0;
            if (listed == 2) {
                grown[top++] = (int32_t)k;
            } else {
                int touches = 0;
                for (int d = 0; d < 8; ++d) touches |= state[k + around[d]] == 2;
                if (state[k] != 1 || !touches) continue;
                state[k] = 2;
                grown[top++] = (int32_t)k;
            }
            while (top > 0) {
                const int64_t c = grown[--top];
                for (int d = 0; d < 8; ++d) {
                    const int64_t v = c + around[d];
                    if (state[v] != 1) continue;
                    state[v] = 2;
                    grown[top++] = (int32_t)v;
                }
            }
        }
        chamfer_distance(state, pw, frame, dist, h, w);
        int64_t hist[21] = {0};
        for (int64_t y = 0; y < h; ++y) { /* cv2.blur on float32, then the uint8 cast */
            box_sum3_row(dist, sums, sums + w, ry, rx, y, w);
            float *restrict row = work + y * w;
            for (int64_t i = 0; i < w; ++i) row[i] = floorf((float)(sums[i] * (1.0 / 9.0)));
            count_levels(row, w, hist);
        }
        int64_t first = 0; /* equalizeHist */
        while (first < 20 && hist[first] == 0) ++first;
        const int64_t base = hist[first];
        const float count = (float)(n - base > 1 ? n - base : 1), scale = 255.0f / count;
        float lut[21];
        int64_t cumulative = 0;
        for (int64_t v = 0; v <= 20; ++v) {
            cumulative += hist[v];
            const float value = nearbyintf((float)(cumulative - base) * scale);
            lut[v] = base == n ? (float)first : (value < 0.0f ? 0.0f : (value > 255.0f ? 255.0f : value));
        }
        for (int64_t i = 0; i < n; ++i) work[i] = lut[(int32_t)work[i]];
        for (int64_t y = 0; y < h; ++y) { /* emboss */
            const float *restrict up = work + ry[y] * w, *restrict mid = work + y * w, *restrict down = work + ry[y + 2] * w;
            float *restrict row = dist + y * w;
            row[0] = emboss_at(up, mid, down, rx[0], 0, rx[2]); /* the border columns reflect */
            if (w > 1) row[w - 1] = emboss_at(up, mid, down, w - 2, w - 1, rx[w + 1]);
            for (int64_t i = 1; i + 1 < w; ++i) row[i] = emboss_at(up, mid, down, i - 1, i, i + 1);
        }
        for (int64_t y = 0; y < h; ++y) { /* level * droplet */
            box_sum3_row(dist, sums, sums + w, ry, rx, y, w);
            for (int64_t i = 0; i < w; ++i) work[y * w + i] = levels[y * w + i] * floorf((float)(sums[i] + 4.0) / 9.0f);
        }
        int32_t top_value = 0; /* whole numbers to 255 * 255: their peak as integers */
        for (int64_t i = 0; i < n; ++i) top_value = (int32_t)work[i] > top_value ? (int32_t)work[i] : top_value;
        const float peak = (float)top_value;
        const float divisor = peak < 1.0f ? 1.0f : peak, strength = intensity[b];
        for (int64_t i = 0; i < n; ++i) work[i] = (peak > 0.0f ? work[i] / divisor : 0.0f) * strength;
        for (int64_t k = 0; k < 3; ++k) {
            const float *restrict x = images + (3 * b + k) * n;
            float *restrict y = out + (3 * b + k) * n;
            for (int64_t i = 0; i < n; ++i) y[i] = clamp01(x[i] + work[i] * colour[k]);
        }
    }
    free(grid);
    free(sums);
    free(dist);
    free(ry);
    free(levels);
}
