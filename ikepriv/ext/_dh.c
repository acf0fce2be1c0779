/*
 * MODP Diffie-Hellman hot path for ikepriv (built by build_dh.py with cffi).
 *
 * Why C: g^x and y^x over 1024..8192-bit primes are the costliest thing the
 * negotiator does, and Python's pow() is neither fast nor constant time.
 *
 * Three paths, chosen at run time (CPUID) and forceable with
 * ikepriv_dh_set_impl() for tests and the bench:
 *
 *   path     key generation (g = 2, fixed base)      shared secret (y^x)
 *   ifma     comb, 8 teeth x 2 tables, AVX-512 IFMA  5-bit fixed window, IFMA
 *   openssl  comb, 6 teeth x 8 tables, MULX/ADX      libcrypto BN_mod_exp_mont_consttime
 *   gmp      comb, 6 teeth x 8 tables, GMP mpn       GMP mpn_sec_powm
 *
 * "auto" is ifma where the CPU has AVX-512 IFMA and p >= 1536 bits, else
 * openssl.  gmp is the slowest and stays as an independent implementation the
 * tests cross-check the others against (all three must agree with pow()).
 * The openssl comb falls back to GMP products on CPUs without BMI2/ADX.
 *
 * Constant time: nothing here branches on, or indexes memory with, a secret
 * (the private exponent x or any power of a base under it).  Secrets only flow
 * through
 *   - GMP's documented side-channel silent functions (mpn_sec_mul, mpn_sec_sqr,
 *     mpn_sec_powm, mpn_cnd_swap) and mpn_addmul_1 / mpn_add_n / mpn_sub_n,
 *     whose running time depends only on operand sizes,
 *   - addmul_1_adx: MULX/ADCX/ADOX over every limb, loop count n (public),
 *   - our own table scans (ct_select*), which read every entry of a table and
 *     keep one with a mask computed without branches, and the AVX-512 IFMA
 *     Montgomery multiplication, straight-line vector code over all limbs,
 *   - libcrypto's BN_mod_exp_mont_consttime with BN_FLG_CONSTTIME on the
 *     exponent (fixed window, full-table gathers: the code OpenSSL's own DH
 *     runs); see openssl_powm() for how the exponent's length is kept fixed.
 * Branches and indexes depend only on public values: group sizes, the fixed
 * exponent length, comb and window positions, and the peer's public value.
 *
 * Secrets are wiped before return (explicit_bzero, BN_clear_free); scratch
 * lives on the stack or in buffers we allocate and wipe ourselves.
 *
 * Every length is an explicit parameter and is checked against the group;
 * nothing is read or written outside the given buffers.
 *
 * Key generation, g = 2 fixed: a Lim-Lee comb (tables of precomputed powers
 * in Montgomery form, built once per group), so a 256-bit exponent costs
 * 5 squarings, 42 multiplications and 43 scans of a 64-entry table on the
 * portable paths (15, 31 and 32 scans of 256 entries with IFMA) instead of
 * ~256 squarings.
 */
#include <gmp.h>
#include <openssl/bn.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IKEPRIV_DH_OK 0
#define IKEPRIV_DH_EINVAL (-1)  /* a length or argument does not fit the group */
#define IKEPRIV_DH_EPEER (-2)   /* peer public value out of range */
#define IKEPRIV_DH_ENOMEM (-3)
#define IKEPRIV_DH_EWEAK (-4)   /* private exponent < 2: caller draws again */

#define MAX_LIMBS 128           /* 8192-bit modulus */
#define MIN_LIMBS 4             /* 256-bit modulus: refuse toys */
#define MAX_EXP_BITS 1024
#define MAX_TEETH 8             /* bits per comb table index: at most 256 entries */
#define LIMB_BITS 64

#if GMP_NUMB_BITS != 64 || GMP_NAIL_BITS != 0
#error "_dh.c expects 64-bit GMP limbs without nails"
#endif

/*
 * Shape of a Lim-Lee comb for an exponent of exp_bits bits: the bits are laid
 * out as `teeth` rows of `cols` columns; column c gives a teeth-bit index into
 * one of `tables` tables (columns u*rows .. u*rows+rows-1 use table u, whose
 * entries are pre-raised to 2^(u*rows)).  Cost: rows-1 squarings, cols-1
 * multiplications and cols full scans of a 2^teeth-entry table.
 */
typedef struct comb_geo {
    unsigned teeth;                 /* bits per table index */
    unsigned entries;               /* 2^teeth */
    unsigned cols;                  /* ceil(exp_bits / teeth) */
    unsigned tables;                /* v */
    unsigned rows;                  /* ceil(cols / tables): columns per table */
} comb_geo;

typedef struct ikepriv_modp {
    size_t n;                       /* limbs in p */
    size_t plen;                    /* bytes in p (big-endian, no leading zero) */
    unsigned exp_bits;              /* private exponent length in bits */
    comb_geo geo;                   /* portable comb */
    int adx;                        /* MULX/ADX limb products usable (CPU has them, n % 4 == 0) */
    mp_limb_t pinv;                 /* -p^-1 mod 2^64 */
    mp_limb_t p[MAX_LIMBS];
    mp_limb_t *comb;                /* tables * entries * n limbs, Montgomery form */
    void *fast;                     /* IFMA precomputation, or NULL */
    BIGNUM *bn_p;                   /* p for libcrypto (public) */
    BN_MONT_CTX *mont;              /* libcrypto's Montgomery constants for p, read-only */
} ikepriv_modp;

/* Arithmetic paths; the numbers are the API of ikepriv_dh_set_impl(). */
#define IMPL_AUTO 0
#define IMPL_GMP 1              /* portable comb keygen, GMP mpn_sec_powm shared secret */
#define IMPL_IFMA 2             /* AVX-512 IFMA comb keygen and fixed-window shared secret */
#define IMPL_OPENSSL 3          /* portable comb keygen, libcrypto BN_mod_exp_mont_consttime */

static int impl_choice = IMPL_AUTO;

void ikepriv_wipe(void *buf, size_t len)
{
    if (buf != NULL && len > 0)
        explicit_bzero(buf, len);
}

/* Hide a value from the optimiser so masks stay masks, not branches. */
static inline uint64_t value_barrier(uint64_t v)
{
    __asm__("" : "+r"(v));
    return v;
}

/* All ones when a == b, else zero, without a branch. */
static inline uint64_t ct_eq_mask(uint64_t a, uint64_t b)
{
    uint64_t d = a ^ b;
    return value_barrier(((d | (0 - d)) >> 63) - 1);
}

/*
 * r = table[idx] (each entry `width` limbs); every entry is read and kept or
 * dropped with a mask.  Same job as mpn_sec_tabselect; that one and a plain
 * C loop both run near one cycle per limb, the AVX2 loop below keeps up to 32
 * limbs in registers and is about four times faster on 256-entry tables.
 */
static void ct_select_scalar(uint64_t *r, const uint64_t *table, size_t width, size_t entries,
                             uint64_t idx)
{
    for (size_t k = 0; k < width; k++)
        r[k] = 0;
    for (size_t j = 0; j < entries; j++) {
        const uint64_t m = ct_eq_mask((uint64_t)j, idx);
        const uint64_t *e = table + j * width;
        for (size_t k = 0; k < width; k++)
            r[k] |= e[k] & m;
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#define HAVE_X86_SIMD 1

/*
 * One pass over the table for limbs c .. c+4L-1 of every entry, L ymm
 * accumulators.  The mask comes from a vector compare of a running entry
 * counter with idx (no scalar flag, nothing the compiler could turn into a
 * branch); L is a constant after inlining, so the inner loop unrolls.
 */
__attribute__((target("avx2"), always_inline))
static inline void ct_select_avx2_pass(uint64_t *r, const uint64_t *table, size_t width,
                                       size_t entries, uint64_t idx, size_t c, const int L)
{
    __m256i acc[8];
    for (int i = 0; i < L; i++)
        acc[i] = _mm256_setzero_si256();
    const __m256i want = _mm256_set1_epi64x((long long)idx);
    const __m256i one = _mm256_set1_epi64x(1);
    __m256i j = _mm256_setzero_si256();
    const uint64_t *e = table + c;
    for (size_t k = 0; k < entries; k++, e += width) {
        const __m256i m = _mm256_cmpeq_epi64(j, want);
        j = _mm256_add_epi64(j, one);
        for (int i = 0; i < L; i++)
            acc[i] = _mm256_or_si256(
                acc[i], _mm256_and_si256(m, _mm256_loadu_si256((const __m256i *)(e + 4 * i))));
    }
    for (int i = 0; i < L; i++) {
        _mm256_storeu_si256((__m256i *)(r + c + 4 * i), acc[i]);
        acc[i] = _mm256_setzero_si256();
    }
}

__attribute__((target("avx2")))
static void ct_select_avx2(uint64_t *r, const uint64_t *table, size_t width, size_t entries,
                           uint64_t idx)
{
    /* width is a multiple of 4 (checked by the caller); lanes is public */
    for (size_t c = 0; c < width; c += 32) {
        switch ((width - c) >= 32 ? 8 : (width - c) / 4) {
        case 8: ct_select_avx2_pass(r, table, width, entries, idx, c, 8); break;
        case 7: ct_select_avx2_pass(r, table, width, entries, idx, c, 7); break;
        case 6: ct_select_avx2_pass(r, table, width, entries, idx, c, 6); break;
        case 5: ct_select_avx2_pass(r, table, width, entries, idx, c, 5); break;
        case 4: ct_select_avx2_pass(r, table, width, entries, idx, c, 4); break;
        case 3: ct_select_avx2_pass(r, table, width, entries, idx, c, 3); break;
        case 2: ct_select_avx2_pass(r, table, width, entries, idx, c, 2); break;
        default: ct_select_avx2_pass(r, table, width, entries, idx, c, 1); break;
        }
    }
}

static int cpu_has_avx2(void)
{
    static int cached = -1;
    if (cached < 0)
        cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    return cached;
}
#endif

static void ct_select(uint64_t *r, const uint64_t *table, size_t width, size_t entries,
                      uint64_t idx)
{
#ifdef HAVE_X86_SIMD
    if (width % 4 == 0 && cpu_has_avx2()) {
        ct_select_avx2(r, table, width, entries, idx);
        return;
    }
#endif
    ct_select_scalar(r, table, width, entries, idx);
}

/* Big-endian bytes (exactly len) to n little-endian limbs; len <= 8n. */
static void bytes_to_limbs(mp_limb_t *r, size_t n, const uint8_t *b, size_t len)
{
    for (size_t i = 0; i < n; i++)
        r[i] = 0;
    for (size_t i = 0; i < len; i++) {
        size_t bit = 8 * (len - 1 - i);
        r[bit / LIMB_BITS] |= (mp_limb_t)b[i] << (bit % LIMB_BITS);
    }
}

/* n limbs to exactly len big-endian bytes (value must fit). */
static void limbs_to_bytes(uint8_t *b, size_t len, const mp_limb_t *a, size_t n)
{
    for (size_t i = 0; i < len; i++) {
        size_t bit = 8 * (len - 1 - i);
        size_t w = bit / LIMB_BITS;
        b[i] = w < n ? (uint8_t)(a[w] >> (bit % LIMB_BITS)) : 0;
    }
}

/* ---- Portable Montgomery arithmetic on GMP limbs ----------------------- */

/*
 * rp[0..n) += up[0..n) * v, returning the carry limb, like mpn_addmul_1.
 * Debian's GMP is built for baseline x86-64 (MUL and ADC only); with BMI2 and
 * ADX, MULX plus two independent carry chains (ADCX for the high halves,
 * ADOX for the running sum) make the Montgomery products below about a third
 * faster.  Straight-line code over every limb: timing depends on n only
 * (public), never on the values.  n is a multiple of 4 (checked at set-up).
 */
#if defined(__x86_64__)
#define HAVE_ADX_ASM 1
__attribute__((target("bmi2,adx")))
static mp_limb_t addmul_1_adx(mp_limb_t *rp, const mp_limb_t *up, size_t n, mp_limb_t v)
{
    mp_limb_t hi, lo0, hi0, lo1;
    const mp_limb_t zero = 0;
    size_t cnt = n / 4;
    __asm__ volatile(
        "xor %k[hi], %k[hi]\n\t"          /* hi = 0; clears CF and OF */
        "1:\n\t"
        "mulx 0(%[up]), %[lo0], %[hi0]\n\t"
        "adcx %[hi], %[lo0]\n\t"
        "adox 0(%[rp]), %[lo0]\n\t"
        "mov %[lo0], 0(%[rp])\n\t"
        "mulx 8(%[up]), %[lo1], %[hi]\n\t"
        "adcx %[hi0], %[lo1]\n\t"
        "adox 8(%[rp]), %[lo1]\n\t"
        "mov %[lo1], 8(%[rp])\n\t"
        "mulx 16(%[up]), %[lo0], %[hi0]\n\t"
        "adcx %[hi], %[lo0]\n\t"
        "adox 16(%[rp]), %[lo0]\n\t"
        "mov %[lo0], 16(%[rp])\n\t"
        "mulx 24(%[up]), %[lo1], %[hi]\n\t"
        "adcx %[hi0], %[lo1]\n\t"
        "adox 24(%[rp]), %[lo1]\n\t"
        "mov %[lo1], 24(%[rp])\n\t"
        "lea 32(%[up]), %[up]\n\t"        /* LEA and JRCXZ leave CF and OF alone */
        "lea 32(%[rp]), %[rp]\n\t"
        "lea -1(%[cnt]), %[cnt]\n\t"
        "jrcxz 2f\n\t"
        "jmp 1b\n\t"
        "2:\n\t"
        "adcx %[zero], %[hi]\n\t"         /* hi <= 2^64 - 2: both carries fit */
        "adox %[zero], %[hi]\n\t"
        : [hi] "=&r"(hi), [lo0] "=&r"(lo0), [hi0] "=&r"(hi0), [lo1] "=&r"(lo1),
          [up] "+r"(up), [rp] "+r"(rp), [cnt] "+c"(cnt)
        : "d"(v), [zero] "r"(zero)
        : "cc", "memory");
    return hi;
}

static int cpu_has_adx(void)
{
    static int cached = -1;
    if (cached < 0) {
        unsigned a, b, c, d;
        cached = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 8)) /* BMI2 */ &&
                 (b & (1u << 19)) /* ADX */;
    }
    return cached;
}
#endif


/*
 * r = t / R mod p, for t < p*R; t (2n limbs) is clobbered. Result < p.
 * adx: use addmul_1_adx (the "openssl" path's keygen) instead of GMP's.
 */
static void redc(mp_limb_t *r, mp_limb_t *t, const ikepriv_modp *g, int adx)
{
    const size_t n = g->n;
    mp_limb_t tmp[MAX_LIMBS];
#ifdef HAVE_ADX_ASM
    if (adx) {
        for (size_t i = 0; i < n; i++)
            t[i] = addmul_1_adx(t + i, g->p, n, t[i] * g->pinv);  /* t[i] became 0: stash carry */
    } else
#endif
    for (size_t i = 0; i < n; i++) {
        mp_limb_t u = t[i] * g->pinv;
        t[i] = mpn_addmul_1(t + i, g->p, (mp_size_t)n, u);  /* t[i] became 0: stash carry */
    }
    mp_limb_t cy = mpn_add_n(r, t + n, t, (mp_size_t)n);
    mp_limb_t bw = mpn_sub_n(tmp, r, g->p, (mp_size_t)n);
    /* r + cy*R < 2p: take r - p when it did not borrow, or when r overflowed. */
    mpn_cnd_swap(cy | (bw ^ 1), r, tmp, (mp_size_t)n);
    explicit_bzero(tmp, sizeof tmp);
}

static void mont_mul(mp_limb_t *r, const mp_limb_t *a, const mp_limb_t *b, const ikepriv_modp *g,
                     int adx)
{
    mp_limb_t t[2 * MAX_LIMBS];
#ifdef HAVE_ADX_ASM
    if (adx) {
        const size_t n = g->n;
        for (size_t i = 0; i < 2 * n; i++)
            t[i] = 0;
        for (size_t i = 0; i < n; i++)
            t[n + i] = addmul_1_adx(t + i, b, n, a[i]);
        redc(r, t, g, adx);
        explicit_bzero(t, sizeof t);
        return;
    }
#endif
    mp_limb_t scratch[2 * MAX_LIMBS];  /* mpn_sec_mul_itch is 0 on every GMP 6.x */
    mpn_sec_mul(t, a, (mp_size_t)g->n, b, (mp_size_t)g->n, scratch);
    redc(r, t, g, adx);
    explicit_bzero(t, sizeof t);
}

static void mont_sqr(mp_limb_t *r, const mp_limb_t *a, const ikepriv_modp *g, int adx)
{
    mp_limb_t t[2 * MAX_LIMBS];
    mp_limb_t scratch[2 * MAX_LIMBS];
    mpn_sec_sqr(t, a, (mp_size_t)g->n, scratch);
    redc(r, t, g, adx);
    explicit_bzero(t, sizeof t);
}

static comb_geo make_geo(unsigned exp_bits, unsigned teeth, unsigned tables)
{
    comb_geo c;
    c.teeth = teeth;
    c.entries = 1u << teeth;
    c.cols = (exp_bits + teeth - 1) / teeth;
    c.tables = tables;
    c.rows = (c.cols + tables - 1) / tables;
    return c;
}

/* Index into a comb table at column c: bit i of the index is x bit i*cols + c. */
static uint64_t comb_index(const mp_limb_t *x, unsigned exp_bits, const comb_geo *geo,
                           unsigned c)
{
    uint64_t idx = 0;
    for (unsigned i = 0; i < geo->teeth; i++) {
        unsigned pos = i * geo->cols + c;  /* public */
        if (pos < exp_bits)
            idx |= ((x[pos / LIMB_BITS] >> (pos % LIMB_BITS)) & 1) << i;
    }
    return idx;
}

/*
 * Fixed-base comb (Lim-Lee), portable arithmetic: rows-1 squarings and
 * rows*tables multiplications by a table entry picked with ct_select.
 * Result in normal (not Montgomery) form, < p.
 */
static void comb_exp_portable(mp_limb_t *r, const mp_limb_t *x, const ikepriv_modp *g, int adx)
{
    const size_t n = g->n;
    mp_limb_t sel[MAX_LIMBS];
    mp_limb_t t[2 * MAX_LIMBS];
    int first = 1;
    const comb_geo *geo = &g->geo;
    for (unsigned k = geo->rows; k-- > 0;) {
        if (!first)
            mont_sqr(r, r, g, adx);
        for (unsigned u = 0; u < geo->tables; u++) {
            unsigned c = u * geo->rows + k;
            if (c >= geo->cols)
                continue;  /* public: the last table's unused columns */
            uint64_t idx = comb_index(x, g->exp_bits, geo, c);
            const mp_limb_t *tab = g->comb + (size_t)u * geo->entries * n;
            if (first) {
                ct_select(r, tab, n, geo->entries, idx);
                first = 0;
            } else {
                ct_select(sel, tab, n, geo->entries, idx);
                mont_mul(r, r, sel, g, adx);
            }
        }
    }
    /* Leave Montgomery form. */
    for (size_t i = 0; i < n; i++) {
        t[i] = r[i];
        t[n + i] = 0;
    }
    redc(r, t, g, adx);
    explicit_bzero(sel, sizeof sel);
    explicit_bzero(t, sizeof t);
}

/*
 * Portable comb geometry: 6 teeth, 8 tables for every size.  Table scans read
 * every byte of a table, and without AVX-512 they cost about as much per byte
 * as the products do, so the IFMA choice (8 teeth, 2 tables) scanned 2 MiB
 * per 2048-bit key.  Keygen CPU time (us) with the AVX2 scan and GMP's
 * products (before addmul_1_adx), 256/256/320/384-bit exponents:
 *
 *              1024   2048   3072   4096
 *   8 x 2      32.6   70.5    176    342     (the old shape)
 *   6 x 4      20.3   58.1    157    329
 *   6 x 8      19.1   54.5    145    295     (chosen)
 *   6 x 12     18.6   52.6    145    298
 *   7 x 8      23.2   56.3    145    289
 *   5 x 8      18.8   59.5    161    346
 *
 * 6 x 8 keeps the memory of the old shape (512 entries per group, 1.7 MB for
 * all eight MODP groups); more tables only trim squarings, which are few.
 */
#define PORTABLE_TEETH 6
#define PORTABLE_TABLES 8

/* ---- Group set-up (public data only; mpz is fine here) ----------------- */

static void mpz_to_limbs(mp_limb_t *r, size_t n, const mpz_t a)
{
    size_t sz = mpz_size(a);
    for (size_t i = 0; i < n; i++)
        r[i] = i < sz ? mpz_getlimbn(a, (mp_size_t)i) : 0;
}

/* ---- AVX-512 IFMA path (x86-64; chosen at run time) -------------------
 *
 * Almost-Montgomery multiplication in radix 2^52 (the Gueron-Krasnov layout
 * used by OpenSSL's RSA code): numbers are n52 limbs of 52 bits in 64-bit
 * lanes, R = 2^(52*n52) > 4p, and AMM(a, b) = a*b/R mod p lies in [0, 2p)
 * whenever a, b < 2p, so no conditional subtraction is needed between steps.
 * vpmadd52luq/vpmadd52huq take the same time for every input, the loops run
 * a fixed number of times, and the only scalar steps (the Montgomery factor
 * and the carry normalisation) are straight-line arithmetic.
 */
#define MAX_N52 160             /* 8192-bit p needs 158 limbs of 52 bits, rounded to 8 */
#define MASK52 ((UINT64_C(1) << 52) - 1)

typedef struct ifma_ctx {
    size_t n52;                 /* limbs (multiple of 8) */
    uint64_t k0;                /* -p^-1 mod 2^52 */
    uint64_t *p52;              /* the modulus */
    uint64_t *r2;               /* R^2 mod p */
    comb_geo geo;               /* 8 teeth, 2 tables */
    uint64_t *comb;             /* comb tables, R = 2^(52*n52) */
    void (*amm)(uint64_t *, const uint64_t *, const uint64_t *, const uint64_t *, uint64_t);
} ifma_ctx;

#ifdef HAVE_X86_SIMD
#define IFMA_TARGET __attribute__((target("avx512f,avx512ifma")))

/* Carry-propagate lanes into 52-bit limbs; the value is < 2^(52*n). */
static inline void normalise52(uint64_t *r, const uint64_t *t, size_t n)
{
    uint64_t carry = 0;
    for (size_t j = 0; j < n; j++) {
        uint64_t v = t[j] + carry;
        r[j] = v & MASK52;
        carry = v >> 52;
    }
}

IFMA_TARGET __attribute__((always_inline))
static inline void amm_body(uint64_t *res, const uint64_t *a, const uint64_t *b,
                            const uint64_t *p, uint64_t k0, const int K)
{
    __m512i A[MAX_N52 / 8], P[MAX_N52 / 8], acc[MAX_N52 / 8];
    const __m512i zero = _mm512_setzero_si512();
#pragma GCC unroll 20
    for (int k = 0; k < K; k++) {
        A[k] = _mm512_loadu_si512((const void *)(a + 8 * k));
        P[k] = _mm512_loadu_si512((const void *)(p + 8 * k));
        acc[k] = zero;
    }
    const uint64_t p0 = p[0];
    for (int i = 0; i < 8 * K; i++) {
        /* The high halves belong one lane up; collect them in H, off the
         * critical path, and add them after the shift. */
        __m512i H[MAX_N52 / 8];
        const __m512i bi = _mm512_set1_epi64((long long)b[i]);
#pragma GCC unroll 20
        for (int k = 0; k < K; k++)
            acc[k] = _mm512_madd52lo_epu64(acc[k], A[k], bi);
#pragma GCC unroll 20
        for (int k = 0; k < K; k++)
            H[k] = _mm512_madd52hi_epu64(zero, A[k], bi);
        const uint64_t t0 = (uint64_t)_mm_cvtsi128_si64(_mm512_castsi512_si128(acc[0]));
        const uint64_t m = (t0 * k0) & MASK52;
        const uint64_t carry = (t0 + ((p0 * m) & MASK52)) >> 52;  /* low 52 bits become 0 */
        const __m512i mv = _mm512_set1_epi64((long long)m);
#pragma GCC unroll 20
        for (int k = 0; k < K; k++) {
            acc[k] = _mm512_madd52lo_epu64(acc[k], P[k], mv);
            H[k] = _mm512_madd52hi_epu64(H[k], P[k], mv);
        }
        /* divide by 2^52: drop lane 0, move everything down one lane */
#pragma GCC unroll 20
        for (int k = 0; k < K - 1; k++)
            acc[k] = _mm512_alignr_epi64(acc[k + 1], acc[k], 1);
        acc[K - 1] = _mm512_alignr_epi64(zero, acc[K - 1], 1);
        acc[0] = _mm512_mask_add_epi64(acc[0], 1, acc[0], _mm512_set1_epi64((long long)carry));
#pragma GCC unroll 20
        for (int k = 0; k < K; k++)
            acc[k] = _mm512_add_epi64(acc[k], H[k]);
    }
    uint64_t t[MAX_N52];
#pragma GCC unroll 20
    for (int k = 0; k < K; k++)
        _mm512_storeu_si512((void *)(t + 8 * k), acc[k]);
    normalise52(res, t, (size_t)(8 * K));
    explicit_bzero(t, sizeof t);
#pragma GCC unroll 20
    for (int k = 0; k < K; k++) {
        A[k] = zero;
        acc[k] = zero;
    }
}

#define AMM_K(KK)                                                                          \
    IFMA_TARGET static void amm_##KK(uint64_t *r, const uint64_t *a, const uint64_t *b,   \
                                     const uint64_t *p, uint64_t k0)                       \
    {                                                                                      \
        amm_body(r, a, b, p, k0, KK);                                                      \
    }
AMM_K(2) AMM_K(3) AMM_K(4) AMM_K(5) AMM_K(6) AMM_K(7) AMM_K(8) AMM_K(9) AMM_K(10)
AMM_K(11) AMM_K(12) AMM_K(13) AMM_K(14) AMM_K(15) AMM_K(16) AMM_K(17) AMM_K(18)
AMM_K(19) AMM_K(20)

static void (*const amm_by_k[MAX_N52 / 8 + 1])(uint64_t *, const uint64_t *, const uint64_t *,
                                                const uint64_t *, uint64_t) = {
    NULL, NULL, amm_2, amm_3, amm_4, amm_5, amm_6, amm_7, amm_8, amm_9, amm_10,
    amm_11, amm_12, amm_13, amm_14, amm_15, amm_16, amm_17, amm_18, amm_19, amm_20,
};

/* r = table[idx], entries of `width` limbs (a multiple of 8); reads every entry. */
IFMA_TARGET
static void ct_select512(uint64_t *r, const uint64_t *table, size_t width, size_t entries,
                         uint64_t idx)
{
    for (size_t c = 0; c < width; c += 64) {
        size_t lanes = (width - c) >= 64 ? 8 : (width - c) / 8;
        __m512i acc[8];
        for (size_t i = 0; i < 8; i++)
            acc[i] = _mm512_setzero_si512();
        for (size_t j = 0; j < entries; j++) {
            const __m512i m = _mm512_set1_epi64((long long)ct_eq_mask((uint64_t)j, idx));
            const uint64_t *e = table + j * width + c;
            for (size_t i = 0; i < lanes; i++)
                acc[i] = _mm512_or_si512(
                    acc[i], _mm512_and_si512(m, _mm512_loadu_si512((const void *)(e + 8 * i))));
        }
        for (size_t i = 0; i < lanes; i++)
            _mm512_storeu_si512((void *)(r + c + 8 * i), acc[i]);
        for (size_t i = 0; i < 8; i++)
            acc[i] = _mm512_setzero_si512();
    }
}

static int cpu_has_ifma(void)
{
    static int cached = -1;
    if (cached < 0)
        cached = (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512ifma")) ? 1 : 0;
    return cached;
}
#else
static int cpu_has_ifma(void) { return 0; }
#endif

/*
 * The path a group uses under the current choice.  IFMA needs the CPU and a
 * group it was set up for (>= 1536 bits); where it cannot run, "ifma" and
 * "auto" both mean libcrypto, which beats GMP's mpn_sec_powm at every size.
 */
static int resolve_impl(int choice, int group_has_ifma)
{
    if (choice == IMPL_GMP || choice == IMPL_OPENSSL)
        return choice;
    return group_has_ifma && cpu_has_ifma() ? IMPL_IFMA : IMPL_OPENSSL;
}

static int group_impl(const ikepriv_modp *g)
{
    return resolve_impl(impl_choice, g->fast != NULL);
}

/* 64-bit limbs (n of them) to n52 limbs of 52 bits. */
static void limbs_to_52(uint64_t *r, size_t n52, const mp_limb_t *a, size_t n)
{
    for (size_t j = 0; j < n52; j++) {
        size_t bit = 52 * j, w = bit / 64, off = bit % 64;
        uint64_t v = w < n ? a[w] >> off : 0;
        if (off > 12 && w + 1 < n)
            v |= a[w + 1] << (64 - off);
        r[j] = v & MASK52;
    }
}

/* n52 normalised limbs of 52 bits to n 64-bit limbs (the value must fit). */
static void limbs_from_52(mp_limb_t *r, size_t n, const uint64_t *a, size_t n52)
{
    for (size_t i = 0; i < n; i++)
        r[i] = 0;
    for (size_t j = 0; j < n52; j++) {
        size_t bit = 52 * j, w = bit / 64, off = bit % 64;
        if (w < n)
            r[w] |= a[j] << off;
        if (off > 12 && w + 1 < n)
            r[w + 1] |= a[j] >> (64 - off);
    }
}

static void ifma_free(ikepriv_modp *g)
{
    ifma_ctx *f = g->fast;
    if (f == NULL)
        return;
    free(f->p52);
    free(f->r2);
    free(f->comb);
    free(f);
    g->fast = NULL;
}

static uint64_t *alloc_limbs(size_t count)
{
    size_t bytes = (count * sizeof(uint64_t) + 63) & ~(size_t)63;
    uint64_t *p = aligned_alloc(64, bytes);
    if (p != NULL)
        memset(p, 0, bytes);
    return p;
}

static void mpz_to_52(uint64_t *r, size_t n52, const mpz_t a)
{
    mp_limb_t tmp[MAX_N52];  /* 160 limbs of 64 bits cover 160*52 bits */
    mpz_to_limbs(tmp, MAX_N52, a);
    limbs_to_52(r, n52, tmp, MAX_N52);
}

/* Public set-up; leaves g->fast NULL when the CPU cannot run it. */
static int ifma_setup(ikepriv_modp *g, const mpz_t p)
{
    if (!cpu_has_ifma())
        return IKEPRIV_DH_OK;
    size_t bits = mpz_sizeinbase(p, 2);
    size_t n52 = ((bits + 2 + 51) / 52 + 7) / 8 * 8;
    /* Below 1536 bits the rounding to whole 512-bit vectors wastes too much
     * (1024 bits would use 1248): GMP measured faster there. */
    if (n52 > MAX_N52 || bits < 1536)
        return IKEPRIV_DH_OK;  /* portable path only */
    ifma_ctx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return IKEPRIV_DH_ENOMEM;
    g->fast = f;
    f->n52 = n52;
    f->p52 = alloc_limbs(n52);
    f->r2 = alloc_limbs(n52);
    f->geo = make_geo(g->exp_bits, 8, 2);
    f->comb = alloc_limbs((size_t)f->geo.tables * f->geo.entries * n52);
    if (f->p52 == NULL || f->r2 == NULL || f->comb == NULL)
        return IKEPRIV_DH_ENOMEM;
#ifdef HAVE_X86_SIMD
    f->amm = amm_by_k[n52 / 8];
#endif
    mpz_to_52(f->p52, n52, p);
    uint64_t inv = f->p52[0];
    for (int i = 0; i < 6; i++)
        inv *= 2 - f->p52[0] * inv;
    f->k0 = (0 - inv) & MASK52;
    mpz_t v;
    mpz_init_set_ui(v, 1);
    mpz_mul_2exp(v, v, 2 * 52 * n52);
    mpz_mod(v, v, p);
    mpz_to_52(f->r2, n52, v);
    mpz_clear(v);
    return IKEPRIV_DH_OK;
}

/* Comb entry j of table u, given as g^e mod p (public), in IFMA Montgomery form. */
static void ifma_store_comb(ikepriv_modp *g, unsigned u, unsigned j, const mpz_t ge,
                            const mpz_t p)
{
    ifma_ctx *f = g->fast;
    if (f == NULL)
        return;
    mpz_t v;
    mpz_init(v);
    mpz_mul_2exp(v, ge, 52 * f->n52);
    mpz_mod(v, v, p);
    mpz_to_52(f->comb + ((size_t)u * f->geo.entries + j) * f->n52, f->n52, v);
    mpz_clear(v);
}

#ifdef HAVE_X86_SIMD
/* Montgomery form (< 2p) to the canonical value (< p) in 64-bit limbs. */
static void ifma_leave(mp_limb_t *r, const uint64_t *am, const ifma_ctx *f, size_t n)
{
    uint64_t one[MAX_N52] = {1};
    uint64_t t[MAX_N52];
    f->amm(t, am, one, f->p52, f->k0);  /* < p + 1, and never p (am is a unit) */
    limbs_from_52(r, n, t, f->n52);
    explicit_bzero(t, sizeof t);
}

static void ifma_comb_exp(mp_limb_t *r, const mp_limb_t *x, const ikepriv_modp *g)
{
    const ifma_ctx *f = g->fast;
    const size_t w = f->n52;
    uint64_t acc[MAX_N52], sel[MAX_N52];
    int first = 1;
    const comb_geo *geo = &f->geo;
    for (unsigned k = geo->rows; k-- > 0;) {
        if (!first)
            f->amm(acc, acc, acc, f->p52, f->k0);
        for (unsigned u = 0; u < geo->tables; u++) {
            unsigned c = u * geo->rows + k;
            uint64_t idx = c < geo->cols ? comb_index(x, g->exp_bits, geo, c) : 0;
            const uint64_t *tab = f->comb + (size_t)u * geo->entries * w;
            if (first) {
                ct_select512(acc, tab, w, geo->entries, idx);
                first = 0;
            } else {
                ct_select512(sel, tab, w, geo->entries, idx);
                f->amm(acc, acc, sel, f->p52, f->k0);
            }
        }
    }
    ifma_leave(r, acc, f, g->n);
    explicit_bzero(acc, sizeof acc);
    explicit_bzero(sel, sizeof sel);
}

#define POW_WINDOW 5

/* r = y^x mod p for 1 < y < p-1 (public) and a secret x of g->exp_bits bits. */
static int ifma_powm(mp_limb_t *r, const mp_limb_t *y, const mp_limb_t *x, const ikepriv_modp *g)
{
    const ifma_ctx *f = g->fast;
    const size_t w = f->n52;
    const size_t entries = (size_t)1 << POW_WINDOW;
    uint64_t *table = alloc_limbs(entries * w);
    if (table == NULL)
        return IKEPRIV_DH_ENOMEM;
    uint64_t acc[MAX_N52], sel[MAX_N52], y52[MAX_N52] = {0}, one[MAX_N52] = {1};
    limbs_to_52(y52, w, y, g->n);
    f->amm(table + w, y52, f->r2, f->p52, f->k0);  /* y * R */
    f->amm(table, one, f->r2, f->p52, f->k0);      /* R */
    for (size_t j = 2; j < entries; j++)
        f->amm(table + j * w, table + (j - 1) * w, table + w, f->p52, f->k0);

    const unsigned bits = g->exp_bits;
    const unsigned windows = (bits + POW_WINDOW - 1) / POW_WINDOW;
    for (unsigned win = windows; win-- > 0;) {
        uint64_t idx = 0;
        for (unsigned b = 0; b < POW_WINDOW; b++) {
            unsigned pos = win * POW_WINDOW + b;  /* public */
            if (pos < bits)
                idx |= ((x[pos / LIMB_BITS] >> (pos % LIMB_BITS)) & 1) << b;
        }
        if (win == windows - 1) {
            ct_select512(acc, table, w, entries, idx);
            continue;
        }
        for (unsigned s = 0; s < POW_WINDOW; s++)
            f->amm(acc, acc, acc, f->p52, f->k0);
        ct_select512(sel, table, w, entries, idx);
        f->amm(acc, acc, sel, f->p52, f->k0);
    }
    ifma_leave(r, acc, f, g->n);
    explicit_bzero(acc, sizeof acc);
    explicit_bzero(sel, sizeof sel);
    explicit_bzero(table, entries * w * sizeof(uint64_t));
    free(table);
    return IKEPRIV_DH_OK;
}
#else
static void ifma_comb_exp(mp_limb_t *r, const mp_limb_t *x, const ikepriv_modp *g) { }
static int ifma_powm(mp_limb_t *r, const mp_limb_t *y, const mp_limb_t *x, const ikepriv_modp *g)
{
    return IKEPRIV_DH_EINVAL;
}
#endif

/*
 * Comb tables for one geometry: entry j of table u is g^e mod p (normal form,
 * handed to `store`), e = sum over set bits i of j of 2^(i*cols + u*rows).
 * Built from the powers g^(2^pos) by one multiplication per entry.  Public
 * data only, so mpz is fine.
 */
typedef void (*comb_store)(ikepriv_modp *g, unsigned u, unsigned j, const mpz_t ge,
                           const mpz_t p);

static void build_comb_tables(ikepriv_modp *g, const comb_geo *geo, const mpz_t p,
                              comb_store store)
{
    mpz_t base, acc, entry[1u << MAX_TEETH];
    mpz_inits(base, acc, NULL);
    for (unsigned j = 0; j < geo->entries; j++)
        mpz_init(entry[j]);
    for (unsigned u = 0; u < geo->tables; u++) {
        /* restart the power chain for each table (positions are not monotonic) */
        mpz_set_ui(base, 2);  /* g^(2^pos), pos advancing */
        unsigned pos = 0;
        mpz_set_ui(entry[0], 1);
        for (unsigned i = 0; i < geo->teeth; i++) {
            unsigned want = i * geo->cols + u * geo->rows;
            for (; pos < want; pos++) {
                mpz_mul(base, base, base);
                mpz_mod(base, base, p);
            }
            /* entries with top set bit i: entry[j] = entry[j - 2^i] * g^(2^want) */
            for (unsigned j = 1u << i; j < (2u << i); j++) {
                mpz_mul(acc, entry[j - (1u << i)], base);
                mpz_mod(entry[j], acc, p);
            }
        }
        for (unsigned j = 0; j < geo->entries; j++)
            store(g, u, j, entry[j], p);
    }
    for (unsigned j = 0; j < geo->entries; j++)
        mpz_clear(entry[j]);
    mpz_clears(base, acc, NULL);
}

/* Portable comb entry: g^e * 2^(64n) mod p in n limbs. */
static void portable_store_comb(ikepriv_modp *g, unsigned u, unsigned j, const mpz_t ge,
                                const mpz_t p)
{
    mpz_t v;
    mpz_init(v);
    mpz_mul_2exp(v, ge, LIMB_BITS * g->n);
    mpz_mod(v, v, p);
    mpz_to_limbs(g->comb + ((size_t)u * g->geo.entries + j) * g->n, g->n, v);
    mpz_clear(v);
}

static int build_comb(ikepriv_modp *g, const mpz_t p)
{
    g->comb = calloc((size_t)g->geo.tables * g->geo.entries * g->n, sizeof(mp_limb_t));
    if (g->comb == NULL)
        return IKEPRIV_DH_ENOMEM;
    build_comb_tables(g, &g->geo, p, portable_store_comb);
    if (g->fast != NULL)
        build_comb_tables(g, &((ifma_ctx *)g->fast)->geo, p, ifma_store_comb);
    return IKEPRIV_DH_OK;
}

/* libcrypto's copy of p and its Montgomery constants (public, read-only after this). */
static int openssl_setup(ikepriv_modp *g, const uint8_t *p, size_t plen)
{
    BN_CTX *ctx = BN_CTX_new();
    g->bn_p = BN_bin2bn(p, (int)plen, NULL);
    g->mont = BN_MONT_CTX_new();
    int ok = ctx != NULL && g->bn_p != NULL && g->mont != NULL &&
             BN_MONT_CTX_set(g->mont, g->bn_p, ctx) == 1;
    BN_CTX_free(ctx);
    return ok ? IKEPRIV_DH_OK : IKEPRIV_DH_ENOMEM;
}

void ikepriv_modp_free(ikepriv_modp *g)
{
    if (g == NULL)
        return;
    free(g->comb);
    ifma_free(g);
    BN_MONT_CTX_free(g->mont);
    BN_free(g->bn_p);
    free(g);
}

/*
 * Prepare a group: p as big-endian bytes (odd, no leading zero byte,
 * 256..8192 bits), generator 2, private exponents of exp_bits bits.
 */
int ikepriv_modp_new(const uint8_t *p, size_t plen, unsigned exp_bits, ikepriv_modp **out)
{
    if (out == NULL || p == NULL)
        return IKEPRIV_DH_EINVAL;
    *out = NULL;
    if (plen < 8 * MIN_LIMBS || plen > 8 * MAX_LIMBS || p[0] == 0 || (p[plen - 1] & 1) == 0)
        return IKEPRIV_DH_EINVAL;
    if (exp_bits < 64 || exp_bits > MAX_EXP_BITS || exp_bits >= 8 * plen)
        return IKEPRIV_DH_EINVAL;
    ikepriv_modp *g = calloc(1, sizeof *g);
    if (g == NULL)
        return IKEPRIV_DH_ENOMEM;
    g->plen = plen;
    g->n = (plen + 7) / 8;
    g->exp_bits = exp_bits;
    g->geo = make_geo(exp_bits, PORTABLE_TEETH, PORTABLE_TABLES);
    bytes_to_limbs(g->p, g->n, p, plen);

    /* -p^-1 mod 2^64 by Newton iteration (p odd). */
    mp_limb_t inv = g->p[0];
    for (int i = 0; i < 6; i++)
        inv *= 2 - g->p[0] * inv;
    g->pinv = 0 - inv;
#ifdef HAVE_ADX_ASM
    g->adx = cpu_has_adx() && g->n % 4 == 0;
#endif

    mpz_t pz;
    mpz_init(pz);
    mpz_import(pz, plen, 1, 1, 1, 0, p);
    int rc = ifma_setup(g, pz);
    if (rc == IKEPRIV_DH_OK)
        rc = build_comb(g, pz);
    if (rc == IKEPRIV_DH_OK)
        rc = openssl_setup(g, p, plen);
    mpz_clear(pz);
    if (rc != IKEPRIV_DH_OK) {
        ikepriv_modp_free(g);
        return rc;
    }
    *out = g;
    return IKEPRIV_DH_OK;
}

size_t ikepriv_modp_exp_len(const ikepriv_modp *g)
{
    return (g->exp_bits + 7) / 8;
}

/*
 * Force a path for every group (IMPL_* above; for tests and the bench) or go
 * back to IMPL_AUTO.  Returns the path a group of 1536 bits or more now uses,
 * so a caller can tell that IFMA was asked for on a CPU without it.
 */
int ikepriv_dh_set_impl(int choice)
{
    if (choice >= IMPL_AUTO && choice <= IMPL_OPENSSL)
        impl_choice = choice;
    return resolve_impl(impl_choice, 1);
}

/* 1 when this CPU can run the path (IFMA needs AVX-512F and AVX-512 IFMA). */
int ikepriv_dh_impl_available(int choice)
{
    if (choice == IMPL_IFMA)
        return cpu_has_ifma();
    return choice >= IMPL_AUTO && choice <= IMPL_OPENSSL;
}

/* The path this group uses now (smaller groups never use IFMA). */
int ikepriv_modp_impl(const ikepriv_modp *g)
{
    return g == NULL ? IKEPRIV_DH_EINVAL : group_impl(g);
}

/* Exponent bytes to limbs, masked to exp_bits; returns nonzero when x >= 2. */
static uint64_t load_exponent(mp_limb_t *xl, size_t xn, const uint8_t *x, size_t xlen,
                              unsigned exp_bits)
{
    bytes_to_limbs(xl, xn, x, xlen);
    if (exp_bits % LIMB_BITS)
        xl[exp_bits / LIMB_BITS] &= ((mp_limb_t)1 << (exp_bits % LIMB_BITS)) - 1;
    mp_limb_t acc = xl[0] >> 1;
    for (size_t i = 1; i < xn; i++)
        acc |= xl[i];
    return value_barrier(acc);
}

/*
 * Key generation: x (exactly exp_len bytes, big-endian) is masked in place to
 * exp_bits bits; pub (exactly plen bytes) = 2^x mod p.  Returns
 * IKEPRIV_DH_EWEAK when x < 2 (the caller draws new random bytes).
 */
int ikepriv_modp_keygen(const ikepriv_modp *g, uint8_t *x, size_t xlen, uint8_t *pub,
                        size_t publen)
{
    if (g == NULL || x == NULL || pub == NULL)
        return IKEPRIV_DH_EINVAL;
    if (xlen != ikepriv_modp_exp_len(g) || publen != g->plen)
        return IKEPRIV_DH_EINVAL;
    if (g->exp_bits % 8)
        x[0] &= (uint8_t)((1u << (g->exp_bits % 8)) - 1);
    mp_limb_t xl[MAX_EXP_BITS / LIMB_BITS];
    mp_limb_t r[MAX_LIMBS];
    size_t xn = (g->exp_bits + LIMB_BITS - 1) / LIMB_BITS;
    int rc = IKEPRIV_DH_OK;
    if (load_exponent(xl, xn, x, xlen, g->exp_bits) == 0) {
        rc = IKEPRIV_DH_EWEAK;
    } else {
        if (group_impl(g) == IMPL_IFMA)
            ifma_comb_exp(r, xl, g);
        else
            comb_exp_portable(r, xl, g, group_impl(g) == IMPL_OPENSSL && g->adx);
        limbs_to_bytes(pub, publen, r, g->n);
    }
    explicit_bzero(xl, sizeof xl);
    explicit_bzero(r, sizeof r);
    return rc;
}

/*
 * out = peer^x mod p through libcrypto's BN_mod_exp_mont_consttime (the code
 * OpenSSL's own DH runs), with the group's precomputed BN_MONT_CTX.
 *
 * The exponent must reach libcrypto with a length that does not depend on its
 * value: BN_lebin2bn skips leading zero bytes, and the exponentiation runs
 * top * 64 steps.  So x goes in with one extra byte 0x01 above its xn limbs
 * (the skip loop stops at once, every byte is converted), and BN_clear_bit
 * then drops that bit.  BN_clear_bit trims zero top limbs, which with
 * exp_bits a multiple of 64 (every group we define) happens only when the top
 * 64 exponent bits are all zero: probability 2^-64.  BN_FLG_CONSTTIME on x
 * selects OpenSSL's fixed-window, full-table-scan code; on the result it
 * makes BN_bn2binpad's length computation branch-free.  All BIGNUMs holding
 * secrets are BN_clear_free'd; the BN_CTX clears its own pool when freed.
 */
static int openssl_powm(uint8_t *out, size_t outlen, const uint8_t *peer, size_t peerlen,
                        const mp_limb_t *xl, size_t xn, const ikepriv_modp *g)
{
    uint8_t xb[MAX_EXP_BITS / 8 + 1];
    for (size_t i = 0; i < 8 * xn; i++)
        xb[i] = (uint8_t)(xl[i / 8] >> (8 * (i % 8)));
    xb[8 * xn] = 1;
    int rc = IKEPRIV_DH_ENOMEM;
    BN_CTX *ctx = BN_CTX_new();
    BIGNUM *bx = BN_lebin2bn(xb, (int)(8 * xn + 1), NULL);
    BIGNUM *by = BN_bin2bn(peer, (int)peerlen, NULL);
    BIGNUM *br = BN_new();
    explicit_bzero(xb, sizeof xb);
    if (ctx != NULL && bx != NULL && by != NULL && br != NULL &&
        BN_clear_bit(bx, (int)(LIMB_BITS * xn))) {
        BN_set_flags(bx, BN_FLG_CONSTTIME);
        BN_set_flags(br, BN_FLG_CONSTTIME);
        if (BN_mod_exp_mont_consttime(br, by, bx, g->bn_p, ctx, g->mont) == 1 &&
            BN_bn2binpad(br, out, (int)outlen) == (int)outlen)
            rc = IKEPRIV_DH_OK;
        else
            rc = IKEPRIV_DH_EINVAL;
    }
    BN_clear_free(bx);
    BN_clear_free(br);
    BN_free(by);
    BN_CTX_free(ctx);
    if (rc != IKEPRIV_DH_OK)
        explicit_bzero(out, outlen);
    return rc;
}

/*
 * Shared secret: out (exactly plen bytes) = peer^x mod p, leading zeros kept.
 * peer must be exactly plen bytes with 1 < peer < p-1.
 */
int ikepriv_modp_shared(const ikepriv_modp *g, const uint8_t *x, size_t xlen,
                        const uint8_t *peer, size_t peerlen, uint8_t *out, size_t outlen)
{
    if (g == NULL || x == NULL || peer == NULL || out == NULL)
        return IKEPRIV_DH_EINVAL;
    if (xlen != ikepriv_modp_exp_len(g) || peerlen != g->plen || outlen != g->plen)
        return IKEPRIV_DH_EINVAL;
    const size_t n = g->n;
    mp_limb_t y[MAX_LIMBS], pm1[MAX_LIMBS];
    bytes_to_limbs(y, n, peer, peerlen);
    /* Public value: ordinary comparisons are fine. */
    mpn_copyi(pm1, g->p, (mp_size_t)n);
    mpn_sub_1(pm1, pm1, (mp_size_t)n, 1);
    int small = 1;
    if (y[0] > 1)
        small = 0;
    for (size_t i = 1; i < n && small; i++)
        if (y[i] != 0)
            small = 0;
    if (small || mpn_cmp(y, pm1, (mp_size_t)n) >= 0)
        return IKEPRIV_DH_EPEER;

    mp_limb_t xl[MAX_EXP_BITS / LIMB_BITS];
    mp_limb_t r[MAX_LIMBS];
    size_t xn = (g->exp_bits + LIMB_BITS - 1) / LIMB_BITS;
    int rc = IKEPRIV_DH_OK;
    if (load_exponent(xl, xn, x, xlen, g->exp_bits) == 0) {
        rc = IKEPRIV_DH_EINVAL;  /* never produced by keygen */
    } else if (group_impl(g) == IMPL_IFMA) {
        rc = ifma_powm(r, y, xl, g);
    } else if (group_impl(g) == IMPL_OPENSSL) {
        rc = openssl_powm(out, outlen, peer, peerlen, xl, xn, g);
        explicit_bzero(xl, sizeof xl);
        return rc;
    } else {
        mp_size_t itch = mpn_sec_powm_itch((mp_size_t)n, g->exp_bits, (mp_size_t)n);
        mp_limb_t *tp = malloc((size_t)itch * sizeof(mp_limb_t));
        if (tp == NULL) {
            rc = IKEPRIV_DH_ENOMEM;
        } else {
            mpn_sec_powm(r, y, (mp_size_t)n, xl, g->exp_bits, g->p, (mp_size_t)n, tp);
            explicit_bzero(tp, (size_t)itch * sizeof(mp_limb_t));
            free(tp);
        }
    }
    if (rc == IKEPRIV_DH_OK)
        limbs_to_bytes(out, outlen, r, n);
    explicit_bzero(xl, sizeof xl);
    explicit_bzero(r, sizeof r);
    return rc;
}

int ikepriv_dh_version(void)
{
    return 1;
}
