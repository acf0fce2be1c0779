/*
 * MODP Diffie-Hellman hot path for ikepriv (built by build_dh.py with cffi).
 *
 * Why C: g^x and y^x over 1024..8192-bit primes are the costliest thing the
 * negotiator does, and Python's pow() is neither fast nor constant time.
 *
 * Constant time: nothing here branches on, or indexes memory with, a secret
 * (the private exponent x or any power of a base under it).  Secrets only flow
 * through
 *   - GMP's documented side-channel silent functions (mpn_sec_mul, mpn_sec_sqr,
 *     mpn_sec_powm, mpn_cnd_swap) and mpn_addmul_1 / mpn_add_n / mpn_sub_n,
 *     whose running time depends only on operand sizes,
 *   - our own table scan (ct_select), which reads every table entry and keeps
 *     one with a mask, and the AVX-512 IFMA Montgomery multiplication, which is
 *     straight-line vector code over all limbs.
 * Branches and indexes depend only on public values: group sizes, the fixed
 * exponent length, loop counters, and the peer's public value.
 *
 * Secrets are wiped before return (explicit_bzero); scratch lives on the
 * stack or in buffers we allocate and wipe ourselves.
 *
 * Every length is an explicit parameter and is checked against the group;
 * nothing is read or written outside the given buffers.
 */
#include <gmp.h>
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
#define COMB_TEETH 8            /* bits per table index: 256 entries per table */
#define COMB_ENTRIES (1u << COMB_TEETH)
#define LIMB_BITS 64

#if GMP_NUMB_BITS != 64 || GMP_NAIL_BITS != 0
#error "_dh.c expects 64-bit GMP limbs without nails"
#endif

typedef struct ikepriv_modp {
    size_t n;                       /* limbs in p */
    size_t plen;                    /* bytes in p (big-endian, no leading zero) */
    unsigned exp_bits;              /* private exponent length in bits */
    unsigned cols;                  /* comb: columns per tooth, ceil(exp_bits / teeth) */
    unsigned tables;                /* comb: number of tables (v) */
    unsigned rows;                  /* comb: columns per table, ceil(cols / tables) */
    mp_limb_t pinv;                 /* -p^-1 mod 2^64 */
    mp_limb_t p[MAX_LIMBS];
    mp_limb_t *comb;                /* tables * COMB_ENTRIES * n limbs, Montgomery form */
    void *fast;                     /* IFMA precomputation, or NULL */
} ikepriv_modp;

static int impl_choice = 0;         /* 0 auto, 1 portable (GMP), 2 IFMA */

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

__attribute__((target("avx2")))
static void ct_select_avx2(uint64_t *r, const uint64_t *table, size_t width, size_t entries,
                           uint64_t idx)
{
    /* width is a multiple of 4 (checked by the caller) */
    for (size_t c = 0; c < width; c += 32) {
        size_t lanes = (width - c) >= 32 ? 8 : (width - c) / 4;
        __m256i acc[8];
        for (size_t i = 0; i < 8; i++)
            acc[i] = _mm256_setzero_si256();
        for (size_t j = 0; j < entries; j++) {
            const __m256i m = _mm256_set1_epi64x((long long)ct_eq_mask((uint64_t)j, idx));
            const uint64_t *e = table + j * width + c;
            for (size_t i = 0; i < lanes; i++)
                acc[i] = _mm256_or_si256(
                    acc[i], _mm256_and_si256(m, _mm256_loadu_si256((const __m256i *)(e + 4 * i))));
        }
        for (size_t i = 0; i < lanes; i++)
            _mm256_storeu_si256((__m256i *)(r + c + 4 * i), acc[i]);
        for (size_t i = 0; i < 8; i++)
            acc[i] = _mm256_setzero_si256();
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

/* r = t / R mod p, for t < p*R; t (2n limbs) is clobbered. Result < p. */
static void redc(mp_limb_t *r, mp_limb_t *t, const ikepriv_modp *g)
{
    const size_t n = g->n;
    mp_limb_t tmp[MAX_LIMBS];
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

static void mont_mul(mp_limb_t *r, const mp_limb_t *a, const mp_limb_t *b, const ikepriv_modp *g)
{
    mp_limb_t t[2 * MAX_LIMBS];
    mp_limb_t scratch[2 * MAX_LIMBS];  /* mpn_sec_mul_itch is 0 on every GMP 6.x */
    mpn_sec_mul(t, a, (mp_size_t)g->n, b, (mp_size_t)g->n, scratch);
    redc(r, t, g);
    explicit_bzero(t, sizeof t);
}

static void mont_sqr(mp_limb_t *r, const mp_limb_t *a, const ikepriv_modp *g)
{
    mp_limb_t t[2 * MAX_LIMBS];
    mp_limb_t scratch[2 * MAX_LIMBS];
    mpn_sec_sqr(t, a, (mp_size_t)g->n, scratch);
    redc(r, t, g);
    explicit_bzero(t, sizeof t);
}

/* Index into comb table u at column c: bit i of the index is x bit i*cols + c. */
static uint64_t comb_index(const mp_limb_t *x, const ikepriv_modp *g, unsigned c)
{
    uint64_t idx = 0;
    for (unsigned i = 0; i < COMB_TEETH; i++) {
        unsigned pos = i * g->cols + c;  /* public */
        if (pos < g->exp_bits)
            idx |= ((x[pos / LIMB_BITS] >> (pos % LIMB_BITS)) & 1) << i;
    }
    return idx;
}

/*
 * Fixed-base comb (Lim-Lee), portable arithmetic: rows-1 squarings and
 * rows*tables multiplications by a table entry picked with ct_select.
 * Result in normal (not Montgomery) form, < p.
 */
static void comb_exp_portable(mp_limb_t *r, const mp_limb_t *x, const ikepriv_modp *g)
{
    const size_t n = g->n;
    mp_limb_t sel[MAX_LIMBS];
    mp_limb_t t[2 * MAX_LIMBS];
    int first = 1;
    for (unsigned k = g->rows; k-- > 0;) {
        if (!first)
            mont_sqr(r, r, g);
        for (unsigned u = 0; u < g->tables; u++) {
            unsigned c = u * g->rows + k;
            uint64_t idx = c < g->cols ? comb_index(x, g, c) : 0;
            const mp_limb_t *tab = g->comb + (size_t)u * COMB_ENTRIES * n;
            if (first) {
                ct_select(r, tab, n, COMB_ENTRIES, idx);
                first = 0;
            } else {
                ct_select(sel, tab, n, COMB_ENTRIES, idx);
                mont_mul(r, r, sel, g);
            }
        }
    }
    /* Leave Montgomery form. */
    for (size_t i = 0; i < n; i++) {
        t[i] = r[i];
        t[n + i] = 0;
    }
    redc(r, t, g);
    explicit_bzero(sel, sizeof sel);
    explicit_bzero(t, sizeof t);
}

/* ---- Group set-up (public data only; mpz is fine here) ----------------- */

static void mpz_to_limbs(mp_limb_t *r, size_t n, const mpz_t a)
{
    size_t sz = mpz_size(a);
    for (size_t i = 0; i < n; i++)
        r[i] = i < sz ? mpz_getlimbn(a, (mp_size_t)i) : 0;
}

/* ---- AVX-512 IFMA path (x86-64 only; chosen at run time) --------------- */

static int ifma_active(void) { return 0; }
static int ifma_setup(ikepriv_modp *g, const mpz_t p) { (void)g; (void)p; return IKEPRIV_DH_OK; }
static void ifma_free(ikepriv_modp *g) { (void)g; }
static void ifma_comb_exp(mp_limb_t *r, const mp_limb_t *x, const ikepriv_modp *g) { (void)r; (void)x; (void)g; }
static void ifma_powm(mp_limb_t *r, const mp_limb_t *y, const mp_limb_t *x, const ikepriv_modp *g) { (void)r; (void)y; (void)x; (void)g; }

/* Comb tables: v tables of 2^h entries; entry j of table u is g^e * R mod p,
 * e = sum over set bits i of j of 2^(i*cols + u*rows).  Built from the
 * powers g^(2^pos) by one multiplication per entry. */
static int build_comb(ikepriv_modp *g, const mpz_t p)
{
    const size_t n = g->n;
    size_t total = (size_t)g->tables * COMB_ENTRIES * n;
    g->comb = calloc(total, sizeof(mp_limb_t));
    if (g->comb == NULL)
        return IKEPRIV_DH_ENOMEM;
    mpz_t base, acc, entry[COMB_ENTRIES];
    mpz_inits(base, acc, NULL);
    for (unsigned j = 0; j < COMB_ENTRIES; j++)
        mpz_init(entry[j]);
    mpz_set_ui(base, 2);  /* g^(2^pos), pos advancing */
    unsigned pos = 0;
    for (unsigned u = 0; u < g->tables; u++) {
        mpz_set_ui(entry[0], 1);
        mpz_mul_2exp(entry[0], entry[0], LIMB_BITS * n);  /* R */
        mpz_mod(entry[0], entry[0], p);
        for (unsigned i = 0; i < COMB_TEETH; i++) {
            unsigned want = i * g->cols + u * g->rows;
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
        for (unsigned j = 0; j < COMB_ENTRIES; j++)
            mpz_to_limbs(g->comb + ((size_t)u * COMB_ENTRIES + j) * n, n, entry[j]);
        /* restart the power chain for the next table (positions are not monotonic) */
        mpz_set_ui(base, 2);
        pos = 0;
    }
    for (unsigned j = 0; j < COMB_ENTRIES; j++)
        mpz_clear(entry[j]);
    mpz_clears(base, acc, NULL);
    return IKEPRIV_DH_OK;
}

void ikepriv_modp_free(ikepriv_modp *g)
{
    if (g == NULL)
        return;
    free(g->comb);
    ifma_free(g);
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
    g->cols = (exp_bits + COMB_TEETH - 1) / COMB_TEETH;
    /* Two tables halve the squarings; past 4096 bits a table is 256 KiB+, keep one pair. */
    g->tables = 2;
    g->rows = (g->cols + g->tables - 1) / g->tables;
    bytes_to_limbs(g->p, g->n, p, plen);

    /* -p^-1 mod 2^64 by Newton iteration (p odd). */
    mp_limb_t inv = g->p[0];
    for (int i = 0; i < 6; i++)
        inv *= 2 - g->p[0] * inv;
    g->pinv = 0 - inv;

    mpz_t pz;
    mpz_init(pz);
    mpz_import(pz, plen, 1, 1, 1, 0, p);
    int rc = build_comb(g, pz);
    if (rc == IKEPRIV_DH_OK)
        rc = ifma_setup(g, pz);
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

/* 0 auto, 1 portable GMP, 2 IFMA; returns the path now in use (for tests and bench). */
int ikepriv_dh_set_impl(int choice)
{
    if (choice >= 0 && choice <= 2)
        impl_choice = choice;
    return ifma_active() ? 2 : 1;
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
        if (ifma_active() && g->fast != NULL)
            ifma_comb_exp(r, xl, g);
        else
            comb_exp_portable(r, xl, g);
        limbs_to_bytes(pub, publen, r, g->n);
    }
    explicit_bzero(xl, sizeof xl);
    explicit_bzero(r, sizeof r);
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
    } else if (ifma_active() && g->fast != NULL) {
        ifma_powm(r, y, xl, g);
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
