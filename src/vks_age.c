/*
 * vks_age: the age file format with OpenSSL 3 primitives (contract: vks_age.h; design:
 * docs/internals/age.md). Written from the public specification (C2SP age, age-encryption.org/v1).
 */
#include "vks_age.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "vks_base64.h"
#include "vks_hmac.h"

#define X25519_INFO "age-encryption.org/v1/X25519"
#define SCRYPT_LABEL "age-encryption.org/v1/scrypt"
#define COLS 64
#define WRAPPED_LEN (VKS_AGE_FILE_KEY_LEN + VKS_AGE_TAG)
#define PASSPHRASE_MAX 1024

/* ---------------------------------------------------------------- small helpers */

static vks_status rnd(void *p, size_t n, struct vks_err *err)
{
    unsigned char *b = p;
    for (size_t got = 0; got < n;) {
        ssize_t r = getrandom(b + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return vks_err_set(err, VKS_E_INTERNAL, "age: getrandom: %s", strerror(errno));
        got += (size_t)r;
    }
    return VKS_OK;
}

/* Unpadded canonical base64 -> bytes. false for '=', a bad character, non-zero trailing bits, a
 * length of 1 mod 4, or more than cap bytes. */
static bool b64raw_decode(const char *in, size_t n, unsigned char *out, size_t cap, size_t *outlen)
{
    if (n % 4 == 1 || n > 8192 || memchr(in, '=', n) != NULL)
        return false;
    char tmp[8196];
    memcpy(tmp, in, n);
    size_t m = n;
    while (m % 4)
        tmp[m++] = '=';
    return vks_b64_decode(tmp, m, out, cap, outlen, NULL) == VKS_B64_OK;
}

/* bytes -> unpadded base64 (out: VKS_B64_ENCODED_LEN(n) + 1). Returns the length. */
static size_t b64raw_encode(const unsigned char *in, size_t n, char *out)
{
    size_t m = vks_b64_encode(in, n, out);
    while (m > 0 && out[m - 1] == '=')
        out[--m] = '\0';
    return m;
}

static bool aead(bool enc, const unsigned char key[32], const unsigned char nonce[12], const unsigned char *in,
                 size_t n, unsigned char *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l = 0, l2 = 0;
    bool ok = c != NULL && EVP_CipherInit_ex(c, EVP_chacha20_poly1305(), NULL, key, nonce, enc ? 1 : 0) == 1;
    if (ok && enc) {
        ok = EVP_CipherUpdate(c, out, &l, in, (int)n) == 1 && EVP_CipherFinal_ex(c, out + l, &l2) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, VKS_AGE_TAG, out + n) == 1;
    } else if (ok) {
        ok = n >= VKS_AGE_TAG &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, VKS_AGE_TAG, (void *)(in + n - VKS_AGE_TAG)) == 1 &&
             EVP_CipherUpdate(c, out, &l, in, (int)(n - VKS_AGE_TAG)) == 1 && EVP_CipherFinal_ex(c, out + l, &l2) == 1;
        if (!ok && n > VKS_AGE_TAG)
            vks_wipe(out, n - VKS_AGE_TAG);
    }
    EVP_CIPHER_CTX_free(c);
    return ok;
}

/* ---------------------------------------------------------------- Bech32 (BIP 173, no length limit) */

static const char B32[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t polymod_step(uint32_t c, unsigned v)
{
    static const uint32_t G[5] = { 0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3 };
    uint32_t top = c >> 25;
    c = ((c & 0x1ffffff) << 5) ^ v;
    for (int i = 0; i < 5; i++)
        if ((top >> i) & 1)
            c ^= G[i];
    return c;
}

static uint32_t hrp_polymod(const char *hrp)
{
    uint32_t c = 1;
    for (const char *p = hrp; *p; p++)
        c = polymod_step(c, (unsigned)(*p | 0x20) >> 5);
    c = polymod_step(c, 0);
    for (const char *p = hrp; *p; p++)
        c = polymod_step(c, (unsigned)(*p | 0x20) & 31);
    return c;
}

/* Encodes 32 bytes under hrp (lower case) into out; upper-cases all when upper. */
static void bech32_encode(const char *hrp, const unsigned char *data, size_t n, bool upper, char *out)
{
    unsigned char v[64];
    size_t nv = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | data[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            v[nv++] = (acc >> bits) & 31;
        }
    }
    if (bits)
        v[nv++] = (acc << (5 - bits)) & 31;
    uint32_t c = hrp_polymod(hrp);
    size_t o = 0;
    for (const char *p = hrp; *p; p++)
        out[o++] = *p;
    out[o++] = '1';
    for (size_t i = 0; i < nv; i++) {
        c = polymod_step(c, v[i]);
        out[o++] = B32[v[i]];
    }
    for (int i = 0; i < 6; i++)
        c = polymod_step(c, 0);
    c ^= 1;
    for (int i = 0; i < 6; i++)
        out[o++] = B32[(c >> (5 * (5 - i))) & 31];
    out[o] = '\0';
    if (upper)
        for (size_t i = 0; i < o; i++)
            if (out[i] >= 'a' && out[i] <= 'z')
                out[i] = (char)(out[i] - 32);
    vks_wipe(v, sizeof v);
}

/* Decodes s[0..n) expecting hrp and exactly 32 bytes of data. */
static bool bech32_decode32(const char *s, size_t n, const char *hrp, unsigned char out[32])
{
    size_t hl = strlen(hrp);
    bool lower = false, upper = false;
    if (n != hl + 1 + 52 + 6)
        return false;
    for (size_t i = 0; i < n; i++) {
        lower |= s[i] >= 'a' && s[i] <= 'z';
        upper |= s[i] >= 'A' && s[i] <= 'Z';
        if (s[i] < 0x21 || s[i] > 0x7e)
            return false;
    }
    if ((lower && upper) || s[hl] != '1')
        return false;
    for (size_t i = 0; i < hl; i++)
        if ((s[i] | 0x20) != hrp[i] && s[i] != hrp[i])
            return false;
    uint32_t c = hrp_polymod(hrp);
    unsigned acc = 0, bits = 0;
    size_t o = 0;
    bool ok = true;
    for (size_t i = hl + 1; i < n; i++) {
        const char *p = strchr(B32, s[i] | 0x20);
        if (p == NULL) {
            ok = false;
            break;
        }
        unsigned v = (unsigned)(p - B32);
        c = polymod_step(c, v);
        if (i >= n - 6)
            continue;
        acc = ((acc << 5) | v) & 0xfff;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (o < 32)
                out[o] = (unsigned char)(acc >> bits);
            o++;
        }
    }
    ok = ok && c == 1 && o == 32 && bits < 5 && (acc & ((1u << bits) - 1)) == 0;
    acc = 0;
    if (!ok)
        vks_wipe(out, 32);
    return ok;
}

/* ---------------------------------------------------------------- keys */

vks_status vks_age_recipient_parse(const char *s, size_t n, const char *field, struct vks_age_recipient *out,
                                   struct vks_err *err)
{
    if (s == NULL || !bech32_decode32(s, n, "age", out->pub))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: not an age X25519 recipient (age1 followed by 58 "
                           "Bech32 characters with a valid checksum)", field);
    return VKS_OK;
}

void vks_age_recipient_encode(const struct vks_age_recipient *r, char *out)
{
    bech32_encode("age", r->pub, VKS_AGE_KEY_LEN, false, out);
}

/* Calls fn on each non-blank, non-comment line (trimmed of spaces and CR); stops on failure. */
typedef vks_status (*line_fn)(void *arg, const char *line, size_t n, size_t lineno, struct vks_err *err);
static vks_status each_line(const char *text, size_t len, line_fn fn, void *arg, struct vks_err *err)
{
    size_t lineno = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len, b = i;
        i = e + 1;
        lineno++;
        while (b < e && (text[b] == ' ' || text[b] == '\t'))
            b++;
        while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r'))
            e--;
        if (b == e || text[b] == '#')
            continue;
        vks_status st = fn(arg, text + b, e - b, lineno, err);
        if (st != VKS_OK)
            return st;
    }
    return VKS_OK;
}

struct rcpt_acc {
    const char *field;
    struct vks_age_recipient *out;
    size_t max, *n;
};

static vks_status rcpt_line(void *arg, const char *line, size_t n, size_t lineno, struct vks_err *err)
{
    struct rcpt_acc *a = arg;
    if (*a->n >= a->max)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: more than %zu recipients", a->field, a->max);
    if (!bech32_decode32(line, n, "age", a->out[*a->n].pub))
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s line %zu: not an age X25519 recipient (age1...); SSH and "
                           "plugin recipients are not supported", a->field, lineno);
    (*a->n)++;
    return VKS_OK;
}

vks_status vks_age_recipients_parse(const char *text, size_t len, const char *field,
                                    struct vks_age_recipient *out, size_t max, size_t *n, struct vks_err *err)
{
    struct rcpt_acc a = { field, out, max, n };
    size_t before = *n;
    vks_status st = each_line(text, len, rcpt_line, &a, err);
    if (st == VKS_OK && *n == before)
        st = vks_err_set(err, VKS_E_INVALID_INPUT, "%s: no recipient in it", field);
    return st;
}

struct id_acc {
    const char *field;
    struct vks_age_identities *ids;
};

static vks_status id_line(void *arg, const char *line, size_t n, size_t lineno, struct vks_err *err)
{
    struct id_acc *a = arg;
    if (a->ids->n >= VKS_AGE_IDENTITIES_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s: more than %d identities", a->field, VKS_AGE_IDENTITIES_MAX);
    vks_secret *k = &a->ids->keys[a->ids->n];
    vks_status st = vks_secret_alloc(VKS_AGE_KEY_LEN, k, err);
    if (st != VKS_OK)
        return st;
    if (!bech32_decode32(line, n, "age-secret-key-", k->data)) {
        vks_secret_free(k);
        return vks_err_set(err, VKS_E_INVALID_INPUT, "%s line %zu: not an age X25519 identity "
                           "(AGE-SECRET-KEY-1...); SSH and plugin identities are not supported", a->field, lineno);
    }
    k->len = VKS_AGE_KEY_LEN;
    a->ids->n++;
    return VKS_OK;
}

vks_status vks_age_identities_parse(const unsigned char *text, size_t len, const char *field,
                                    struct vks_age_identities *out, struct vks_err *err)
{
    memset(out, 0, sizeof *out);
    struct id_acc a = { field, out };
    vks_status st = each_line((const char *)text, len, id_line, &a, err);
    if (st == VKS_OK && out->n == 0)
        st = vks_err_set(err, VKS_E_INVALID_INPUT, "%s: no identity (AGE-SECRET-KEY-1...) in it", field);
    if (st != VKS_OK)
        vks_age_identities_free(out);
    return st;
}

void vks_age_identities_free(struct vks_age_identities *ids)
{
    if (ids == NULL)
        return;
    for (size_t i = 0; i < VKS_AGE_IDENTITIES_MAX; i++)
        vks_secret_free(&ids->keys[i]);
    ids->n = 0;
}

static vks_status pub_of(const unsigned char priv[32], unsigned char pub[32], struct vks_err *err)
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
    size_t l = 32;
    bool ok = k != NULL && EVP_PKEY_get_raw_public_key(k, pub, &l) == 1 && l == 32;
    EVP_PKEY_free(k);
    return ok ? VKS_OK : vks_err_set(err, VKS_E_INTERNAL, "age: X25519 public key derivation failed");
}

vks_status vks_age_identity_recipient(const vks_secret *key, struct vks_age_recipient *pub, struct vks_err *err)
{
    if (key == NULL || key->len != VKS_AGE_KEY_LEN)
        return vks_err_set(err, VKS_E_INVALID_ARG, "age: an identity is 32 bytes");
    return pub_of(key->data, pub->pub, err);
}

vks_status vks_age_keygen(vks_secret *key, struct vks_age_recipient *pub, struct vks_err *err)
{
    vks_status st = vks_secret_alloc(VKS_AGE_KEY_LEN, key, err);
    if (st == VKS_OK && (st = rnd(key->data, VKS_AGE_KEY_LEN, err)) == VKS_OK) {
        key->len = VKS_AGE_KEY_LEN;
        st = pub_of(key->data, pub->pub, err);
    }
    if (st != VKS_OK)
        vks_secret_free(key);
    return st;
}

vks_status vks_age_identity_encode(const vks_secret *key, vks_secret *out, struct vks_err *err)
{
    if (key == NULL || key->len != VKS_AGE_KEY_LEN)
        return vks_err_set(err, VKS_E_INVALID_ARG, "age: an identity is 32 bytes");
    vks_status st = vks_secret_alloc(VKS_AGE_IDENTITY_LEN + 1, out, err);
    if (st == VKS_OK) {
        bech32_encode("age-secret-key-", key->data, VKS_AGE_KEY_LEN, true, (char *)out->data);
        out->len = VKS_AGE_IDENTITY_LEN;
    }
    return st;
}

/* X25519(priv, peer) -> shared; refuses the all-zero result (a low-order point). */
static bool x25519(const unsigned char priv[32], const unsigned char peer[32], unsigned char shared[32])
{
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv, 32);
    EVP_PKEY *p = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    EVP_PKEY_CTX *c = k ? EVP_PKEY_CTX_new(k, NULL) : NULL;
    size_t l = 32;
    static const unsigned char zero[32];
    bool ok = p && c && EVP_PKEY_derive_init(c) == 1 && EVP_PKEY_derive_set_peer(c, p) == 1 &&
              EVP_PKEY_derive(c, shared, &l) == 1 && l == 32 && CRYPTO_memcmp(shared, zero, 32) != 0;
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(p);
    EVP_PKEY_free(k);
    if (!ok)
        vks_wipe(shared, 32);
    return ok;
}

/* The X25519 stanza's wrap key from the shared secret, the ephemeral share and the recipient. */
static bool x25519_wrap_key(const unsigned char shared[32], const unsigned char eph[32],
                            const unsigned char rcpt[32], unsigned char key[32])
{
    unsigned char salt[64];
    memcpy(salt, eph, 32);
    memcpy(salt + 32, rcpt, 32);
    return vks_hkdf_sha256(shared, 32, salt, 64, X25519_INFO, strlen(X25519_INFO), key, 32);
}

static bool scrypt_key(const vks_secret *pass, const unsigned char salt[16], int logn, unsigned char key[32])
{
    unsigned char s[sizeof SCRYPT_LABEL - 1 + 16];
    memcpy(s, SCRYPT_LABEL, sizeof SCRYPT_LABEL - 1);
    memcpy(s + sizeof SCRYPT_LABEL - 1, salt, 16);
    uint64_t N = (uint64_t)1 << logn, maxmem = 128ull * 8 * N + (1u << 20) + 1024ull * 8 * 64;
    return EVP_PBE_scrypt((const char *)pass->data, pass->len, s, sizeof s, N, 8, 1, maxmem, key, 32) == 1;
}

/* ---------------------------------------------------------------- header parsing */

bool vks_age_arg_is(const unsigned char *buf, const struct vks_age_span *a, const char *lit)
{
    return strlen(lit) == a->len && memcmp(buf + a->off, lit, a->len) == 0;
}

/* The line at buf[*pos..): its length without '\n' in *len; false when no '\n' within the header limit. */
static bool next_line(const unsigned char *buf, size_t n, size_t pos, size_t *len)
{
    size_t lim = n < VKS_AGE_HEADER_MAX ? n : VKS_AGE_HEADER_MAX;
    if (pos >= lim)
        return false;
    const unsigned char *nl = memchr(buf + pos, '\n', lim - pos);
    if (nl == NULL)
        return false;
    *len = (size_t)(nl - (buf + pos));
    return true;
}

static vks_status truncated(const unsigned char *buf, size_t n, size_t lineno, struct vks_err *err)
{
    (void)buf;
    if (n >= VKS_AGE_HEADER_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "age header: longer than %d bytes (line %zu)",
                           VKS_AGE_HEADER_MAX, lineno);
    return vks_err_set(err, VKS_E_INVALID_INPUT, "age header: truncated at line %zu (the file ends inside the header)",
                       lineno);
}

/* "-> type arg..." at buf[pos..pos+len): each argument 1..VKS_AGE_ARG_MAX bytes of VCHAR. */
static vks_status stanza_args(const unsigned char *buf, size_t pos, size_t len, size_t lineno,
                              struct vks_age_stanza *s, struct vks_err *err)
{
    size_t i = pos + 3, end = pos + len;
    s->nargs = 0;
    while (i <= end) {
        size_t b = i;
        while (i < end && buf[i] != ' ') {
            if (buf[i] < 0x21 || buf[i] > 0x7e)
                return vks_err_set(err, VKS_E_INVALID_INPUT, "age header line %zu: stanza argument %zu has a "
                                   "byte that is not a visible ASCII character", lineno, s->nargs + 1);
            i++;
        }
        if (i == b)
            return vks_err_set(err, VKS_E_INVALID_INPUT, "age header line %zu: empty stanza argument %zu (two "
                               "spaces, or a space at the end)", lineno, s->nargs + 1);
        if (s->nargs == VKS_AGE_ARGS_MAX || i - b > VKS_AGE_ARG_MAX)
            return vks_err_set(err, VKS_E_INVALID_INPUT, "age header line %zu: more than %d stanza arguments or "
                               "one longer than %d bytes", lineno, VKS_AGE_ARGS_MAX, VKS_AGE_ARG_MAX);
        s->args[s->nargs].off = b;
        s->args[s->nargs++].len = i - b;
        i++;
    }
    return VKS_OK;
}

/* The body lines after a stanza line: full 64-column lines, then one shorter (maybe empty) line. */
static vks_status stanza_body(const unsigned char *buf, size_t n, size_t *pos, size_t *lineno,
                              struct vks_age_stanza *s, struct vks_err *err)
{
    char *b64 = malloc(VKS_B64_ENCODED_LEN(VKS_AGE_BODY_MAX) + COLS + 1);
    size_t bl = 0, len = 0;
    vks_status st = VKS_OK;
    if (b64 == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "age header: out of memory");
    for (;;) {
        (*lineno)++;
        if (!next_line(buf, n, *pos, &len)) {
            st = truncated(buf, n, *lineno, err);
            break;
        }
        if (len > COLS || bl + len > VKS_B64_ENCODED_LEN(VKS_AGE_BODY_MAX)) {
            st = vks_err_set(err, VKS_E_INVALID_INPUT, "age header line %zu: a stanza body line is longer than %d "
                             "columns or the body is over %d bytes", *lineno, COLS, VKS_AGE_BODY_MAX);
            break;
        }
        memcpy(b64 + bl, buf + *pos, len);
        bl += len;
        *pos += len + 1;
        if (len < COLS)
            break;
    }
    if (st == VKS_OK && !b64raw_decode(b64, bl, s->body, sizeof s->body, &s->body_len))
        st = vks_err_set(err, VKS_E_INVALID_INPUT, "age header line %zu: the stanza body is not canonical unpadded "
                         "base64", *lineno);
    free(b64);
    return st;
}

static vks_status first_line(const unsigned char *buf, size_t n, size_t *pos, struct vks_err *err)
{
    static const char armor[] = "-----BEGIN AGE ENCRYPTED FILE-----";
    size_t vl = sizeof VKS_AGE_VERSION_LINE - 1;
    if (n >= sizeof armor - 1 && memcmp(buf, armor, sizeof armor - 1) == 0)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "an ASCII-armored age file: not supported here (remove the "
                           "armor with 'age -d' or give the binary file)");
    if (n < vl + 1 || memcmp(buf, VKS_AGE_VERSION_LINE, vl) != 0 || buf[vl] != '\n')
        return vks_err_set(err, VKS_E_INVALID_INPUT, "not an age file: the first line is not \"%s\"",
                           VKS_AGE_VERSION_LINE);
    *pos = vl + 1;
    return VKS_OK;
}

vks_status vks_age_header_parse(const unsigned char *buf, size_t n, struct vks_age_header *h, struct vks_err *err)
{
    size_t pos = 0, lineno = 1, len = 0;
    h->nstanzas = 0;
    vks_status st = first_line(buf, n, &pos, err);
    while (st == VKS_OK) {
        lineno++;
        if (!next_line(buf, n, pos, &len))
            return truncated(buf, n, lineno, err);
        if (len >= 3 && memcmp(buf + pos, "-> ", 3) == 0) {
            if (h->nstanzas == VKS_AGE_STANZAS_MAX)
                return vks_err_set(err, VKS_E_INVALID_INPUT, "age header line %zu: more than %d stanzas", lineno,
                                   VKS_AGE_STANZAS_MAX);
            struct vks_age_stanza *s = &h->stanzas[h->nstanzas++];
            st = stanza_args(buf, pos, len, lineno, s, err);
            pos += len + 1;
            if (st == VKS_OK)
                st = stanza_body(buf, n, &pos, &lineno, s, err);
        } else if (len >= 3 && memcmp(buf + pos, "---", 3) == 0) {
            size_t ml = 0;
            if (h->nstanzas == 0)
                return vks_err_set(err, VKS_E_INVALID_INPUT, "age header line %zu: no recipient stanza before the "
                                   "MAC line", lineno);
            if (len < 4 || buf[pos + 3] != ' ' || len - 4 != 43 ||
                !b64raw_decode((const char *)buf + pos + 4, len - 4, h->mac, sizeof h->mac, &ml) || ml != 32)
                return vks_err_set(err, VKS_E_INVALID_INPUT, "age header line %zu: the MAC line is not \"--- \" "
                                   "and 43 characters of canonical base64", lineno);
            h->mac_covered = pos + 3;
            h->len = pos + len + 1;
            return VKS_OK;
        } else {
            return vks_err_set(err, VKS_E_INVALID_INPUT, "age header line %zu: expected a stanza (\"-> \") or the "
                               "MAC line (\"--- \")", lineno);
        }
    }
    return st;
}

static bool header_mac(const unsigned char fk[16], const unsigned char *hdr, size_t n, unsigned char mac[32])
{
    unsigned char k[32];
    unsigned int ml = 0;
    bool ok = vks_hkdf_sha256(fk, 16, "", 0, "header", 6, k, 32) &&
              HMAC(EVP_sha256(), k, 32, hdr, n, mac, &ml) != NULL && ml == 32;
    vks_wipe(k, sizeof k);
    return ok;
}

/* ---------------------------------------------------------------- sealing */

struct vks_age_writer {
    vks_age_sink sink;
    void *arg;
    vks_secret keys;              /* file key (16) || payload key (32)                           */
    vks_scratch chunk;            /* plaintext of the chunk being filled                          */
    unsigned char *ct;            /* ciphertext of one chunk (not secret)                         */
    uint64_t counter;
    bool failed, finished;
};

/* Appends a stanza line and its wrapped key body to the header text at h[*hl]. */
static void put_stanza(char *h, size_t *hl, const char *args, const unsigned char *body, size_t blen)
{
    char b64[VKS_B64_ENCODED_LEN(64) + 1];
    size_t n = b64raw_encode(body, blen, b64);
    *hl += (size_t)sprintf(h + *hl, "-> %s\n", args);
    for (size_t i = 0; i <= n; i += COLS) { /* full lines, then a short (maybe empty) one */
        size_t l = n - i < COLS ? n - i : COLS;
        memcpy(h + *hl, b64 + i, l);
        *hl += l;
        h[(*hl)++] = '\n';
        if (l < COLS)
            break;
    }
}

static vks_status stanza_x25519(const unsigned char fk[16], const struct vks_age_recipient *r, char *h, size_t *hl,
                                struct vks_err *err)
{
    unsigned char eph[32], share[32], shared[32], key[32], body[WRAPPED_LEN];
    static const unsigned char zn[12];
    vks_status st = rnd(eph, 32, err);
    if (st == VKS_OK && (pub_of(eph, share, err) != VKS_OK || !x25519(eph, r->pub, shared) ||
                         !x25519_wrap_key(shared, share, r->pub, key) || !aead(true, key, zn, fk, 16, body)))
        st = vks_err_set(err, VKS_E_INVALID_INPUT, "age: cannot seal to a recipient (not a usable X25519 key)");
    if (st == VKS_OK) {
        char args[80] = "X25519 ";
        b64raw_encode(share, 32, args + 7);
        put_stanza(h, hl, args, body, sizeof body);
    }
    vks_wipe(eph, 32);
    vks_wipe(shared, 32);
    vks_wipe(key, 32);
    return st;
}

static vks_status stanza_scrypt(const unsigned char fk[16], const vks_secret *pass, int logn, char *h, size_t *hl,
                                struct vks_err *err)
{
    unsigned char salt[16], key[32], body[WRAPPED_LEN];
    static const unsigned char zn[12];
    if (pass == NULL || pass->len == 0 || pass->len > PASSPHRASE_MAX)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "age: a passphrase is 1-%d bytes", PASSPHRASE_MAX);
    if (logn < 1 || logn > 30)
        return vks_err_set(err, VKS_E_INVALID_ARG, "age: scrypt work factor %d out of range 1-30", logn);
    vks_status st = rnd(salt, 16, err);
    if (st == VKS_OK && (!scrypt_key(pass, salt, logn, key) || !aead(true, key, zn, fk, 16, body)))
        st = vks_err_set(err, VKS_E_NOMEM, "age: scrypt (work factor %d) failed: not enough memory?", logn);
    if (st == VKS_OK) {
        char args[80] = "scrypt ";
        size_t l = 7 + b64raw_encode(salt, 16, args + 7);
        snprintf(args + l, sizeof args - l, " %d", logn);
        put_stanza(h, hl, args, body, sizeof body);
    }
    vks_wipe(key, 32);
    return st;
}

static vks_status writer_header(struct vks_age_writer *w, const struct vks_age_recipient *r, size_t nr,
                                const vks_secret *pass, int logn, struct vks_err *err)
{
    const unsigned char *fk = w->keys.data;
    char *h = malloc(VKS_AGE_RECIPIENTS_MAX * 200 + 200);
    if (h == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "age: out of memory");
    size_t hl = (size_t)sprintf(h, "%s\n", VKS_AGE_VERSION_LINE);
    unsigned char mac[32], nonce[16];
    vks_status st = VKS_OK;
    for (size_t i = 0; st == VKS_OK && i < nr; i++)
        st = stanza_x25519(fk, &r[i], h, &hl, err);
    if (st == VKS_OK && nr == 0)
        st = stanza_scrypt(fk, pass, logn ? logn : VKS_AGE_SCRYPT_LOGN, h, &hl, err);
    if (st == VKS_OK) {
        memcpy(h + hl, "---", 3);
        hl += 3;
        if (!header_mac(fk, (unsigned char *)h, hl, mac))
            st = vks_err_set(err, VKS_E_INTERNAL, "age: header MAC failed");
    }
    if (st == VKS_OK) {
        h[hl++] = ' ';
        hl += b64raw_encode(mac, 32, h + hl);
        h[hl++] = '\n';
        st = rnd(nonce, 16, err);
    }
    if (st == VKS_OK && !vks_hkdf_sha256(fk, 16, nonce, 16, "payload", 7, w->keys.data + 16, 32))
        st = vks_err_set(err, VKS_E_INTERNAL, "age: payload key derivation failed");
    if (st == VKS_OK && (st = w->sink(w->arg, (unsigned char *)h, hl, err)) == VKS_OK)
        st = w->sink(w->arg, nonce, 16, err);
    free(h);
    return st;
}

vks_status vks_age_writer_new(const struct vks_age_recipient *r, size_t nr, const vks_secret *passphrase, int logn,
                              vks_age_sink sink, void *arg, struct vks_age_writer **out, struct vks_err *err)
{
    *out = NULL;
    if (sink == NULL || nr > VKS_AGE_RECIPIENTS_MAX || (nr > 0 && r == NULL) || (nr == 0 && passphrase == NULL))
        return vks_err_set(err, VKS_E_INVALID_ARG, "age: seal to 1-%d recipients or to a passphrase",
                           VKS_AGE_RECIPIENTS_MAX);
    struct vks_age_writer *w = calloc(1, sizeof *w);
    if (w == NULL || (w->ct = malloc(VKS_AGE_CHUNK + VKS_AGE_TAG)) == NULL) {
        free(w);
        return vks_err_set(err, VKS_E_NOMEM, "age: out of memory");
    }
    w->sink = sink;
    w->arg = arg;
    vks_status st = vks_secret_alloc(48, &w->keys, err);
    if (st == VKS_OK)
        st = vks_scratch_open(VKS_AGE_CHUNK, &w->chunk, err);
    if (st == VKS_OK)
        st = rnd(w->keys.data, 16, err);
    if (st == VKS_OK)
        st = writer_header(w, r, nr, passphrase, logn, err);
    if (st != VKS_OK) {
        vks_age_writer_free(w);
        return st;
    }
    *out = w;
    return VKS_OK;
}

static vks_status flush_chunk(struct vks_age_writer *w, bool last, struct vks_err *err)
{
    unsigned char nonce[12] = { 0 };
    uint64_t c = w->counter++;
    for (int i = 10; i >= 3; i--, c >>= 8)
        nonce[i] = (unsigned char)(c & 0xff);
    nonce[11] = last ? 1 : 0;
    size_t n = w->chunk.len;
    if (!aead(true, w->keys.data + 16, nonce, w->chunk.data, n, w->ct))
        return vks_err_set(err, VKS_E_INTERNAL, "age: chunk encryption failed");
    vks_scratch_reset(&w->chunk);
    return w->sink(w->arg, w->ct, n + VKS_AGE_TAG, err);
}

vks_status vks_age_writer_write(struct vks_age_writer *w, const void *p, size_t n, struct vks_err *err)
{
    if (w == NULL || w->failed || w->finished)
        return vks_err_set(err, VKS_E_INVALID_ARG, "age: write after finish or failure");
    const unsigned char *b = p;
    vks_status st = VKS_OK;
    while (st == VKS_OK && n > 0) {
        if (w->chunk.len == VKS_AGE_CHUNK) { /* more follows: this full chunk is not the last */
            st = flush_chunk(w, false, err);
            continue;
        }
        size_t k = VKS_AGE_CHUNK - w->chunk.len < n ? VKS_AGE_CHUNK - w->chunk.len : n;
        memcpy(w->chunk.data + w->chunk.len, b, k);
        w->chunk.len += k;
        b += k;
        n -= k;
    }
    w->failed = st != VKS_OK;
    return st;
}

vks_status vks_age_writer_finish(struct vks_age_writer *w, struct vks_err *err)
{
    if (w == NULL || w->failed || w->finished)
        return vks_err_set(err, VKS_E_INVALID_ARG, "age: finish after finish or failure");
    vks_status st = flush_chunk(w, true, err);
    w->failed = st != VKS_OK;
    w->finished = true;
    return st;
}

void vks_age_writer_free(struct vks_age_writer *w)
{
    if (w == NULL)
        return;
    vks_secret_free(&w->keys);
    vks_scratch_close(&w->chunk);
    free(w->ct);
    free(w);
}

struct membuf {
    unsigned char *p;
    size_t n, cap;
};

static vks_status mem_sink(void *arg, const unsigned char *p, size_t n, struct vks_err *err)
{
    struct membuf *m = arg;
    if (m->n + n > m->cap) {
        size_t nc = (m->cap + n) * 2;
        unsigned char *np = realloc(m->p, nc);
        if (np == NULL)
            return vks_err_set(err, VKS_E_NOMEM, "age: out of memory");
        m->p = np;
        m->cap = nc;
    }
    memcpy(m->p + m->n, p, n);
    m->n += n;
    return VKS_OK;
}

vks_status vks_age_seal_buffer(const struct vks_age_recipient *r, size_t nr, const vks_secret *passphrase, int logn,
                               const void *p, size_t n, unsigned char **file, size_t *flen, struct vks_err *err)
{
    struct membuf m = { NULL, 0, 0 };
    struct vks_age_writer *w = NULL;
    vks_status st = vks_age_writer_new(r, nr, passphrase, logn, mem_sink, &m, &w, err);
    if (st == VKS_OK)
        st = vks_age_writer_write(w, p, n, err);
    if (st == VKS_OK)
        st = vks_age_writer_finish(w, err);
    vks_age_writer_free(w);
    if (st != VKS_OK) {
        free(m.p);
        m.p = NULL;
        m.n = 0;
    }
    *file = m.p;
    *flen = m.n;
    return st;
}

/* ---------------------------------------------------------------- opening */

static bool stanza_is(const unsigned char *buf, const struct vks_age_stanza *s, const char *type)
{
    return s->nargs > 0 && vks_age_arg_is(buf, &s->args[0], type);
}

/* One X25519 stanza against every identity: VKS_OK with the file key, VKS_E_NOT_FOUND if none fits. */
static vks_status try_x25519(const unsigned char *buf, const struct vks_age_stanza *s, size_t idx,
                             const struct vks_age_identities *ids, unsigned char fk[16], struct vks_err *err)
{
    unsigned char share[32], shared[32], key[32], me[32];
    static const unsigned char zn[12];
    size_t l = 0;
    if (s->nargs != 2 || s->args[1].len != 43 ||
        !b64raw_decode((const char *)buf + s->args[1].off, 43, share, sizeof share, &l) || l != 32 ||
        s->body_len != WRAPPED_LEN)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "age header: X25519 stanza %zu is malformed (it needs one "
                           "32-byte share and a 32-byte body)", idx + 1);
    vks_status st = VKS_E_NOT_FOUND;
    for (size_t i = 0; st == VKS_E_NOT_FOUND && ids && i < ids->n; i++) {
        if (ids->keys[i].len != 32 || pub_of(ids->keys[i].data, me, NULL) != VKS_OK)
            continue;
        if (x25519(ids->keys[i].data, share, shared) && x25519_wrap_key(shared, share, me, key) &&
            aead(false, key, zn, s->body, WRAPPED_LEN, fk))
            st = VKS_OK;
    }
    vks_wipe(shared, 32);
    vks_wipe(key, 32);
    return st;
}

static vks_status try_scrypt(const unsigned char *buf, const struct vks_age_header *h, const struct vks_age_key *k,
                             unsigned char fk[16], struct vks_err *err)
{
    const struct vks_age_stanza *s = &h->stanzas[0];
    unsigned char salt[16], key[32];
    static const unsigned char zn[12];
    size_t l = 0;
    int logn = 0, max = k->max_logn > 0 ? k->max_logn : VKS_AGE_SCRYPT_LOGN_MAX;
    if (h->nstanzas != 1)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "age header: an scrypt stanza must be the only stanza");
    bool ok = s->nargs == 3 && s->args[1].len == 22 &&
              b64raw_decode((const char *)buf + s->args[1].off, 22, salt, sizeof salt, &l) && l == 16 &&
              s->args[2].len >= 1 && s->args[2].len <= 2 && buf[s->args[2].off] != '0' && s->body_len == WRAPPED_LEN;
    for (size_t i = 0; ok && i < s->args[2].len; i++) {
        unsigned char c = buf[s->args[2].off + i];
        ok = c >= '0' && c <= '9';
        logn = logn * 10 + (c - '0');
    }
    if (!ok)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "age header: the scrypt stanza is malformed (it needs a "
                           "16-byte salt, a work factor without leading zero and a 32-byte body)");
    if (logn > max)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "age header: scrypt work factor %d is above the limit of %d "
                           "(2^%d x 1 KiB of memory)", logn, max, logn);
    if (k->passphrase == NULL)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "the file is sealed with a passphrase: give the passphrase, "
                           "not an identity");
    if (!scrypt_key(k->passphrase, salt, logn, key))
        return vks_err_set(err, VKS_E_NOMEM, "age: scrypt (work factor %d) failed: not enough memory?", logn);
    vks_status st = aead(false, key, zn, s->body, WRAPPED_LEN, fk) ? VKS_OK
                    : vks_err_set(err, VKS_E_DECRYPT_FAILED, "wrong passphrase (or the file was modified)");
    vks_wipe(key, 32);
    return st;
}

static vks_status file_key(const unsigned char *buf, const struct vks_age_header *h, const struct vks_age_key *k,
                           unsigned char fk[16], struct vks_err *err)
{
    for (size_t i = 0; i < h->nstanzas; i++)
        if (stanza_is(buf, &h->stanzas[i], "scrypt"))
            return try_scrypt(buf, h, k, fk, err);
    if (k->ids == NULL || k->ids->n == 0)
        return vks_err_set(err, VKS_E_INVALID_INPUT, "the file is sealed to age recipients, not a passphrase: give "
                           "an identity file (-i)");
    vks_status st = VKS_E_NOT_FOUND;
    for (size_t i = 0; st == VKS_E_NOT_FOUND && i < h->nstanzas; i++)
        if (stanza_is(buf, &h->stanzas[i], "X25519"))
            st = try_x25519(buf, &h->stanzas[i], i, k->ids, fk, err);
    if (st == VKS_E_NOT_FOUND)
        st = vks_err_set(err, VKS_E_DECRYPT_FAILED, "no identity matches a recipient of the file (%zu stanza%s, "
                         "%zu identit%s tried)", h->nstanzas, h->nstanzas == 1 ? "" : "s", k->ids->n,
                         k->ids->n == 1 ? "y" : "ies");
    return st;
}

/* Decrypts the STREAM payload p[0..n) (nonce first) into out; every chunk authenticated. */
static vks_status payload(const unsigned char fk[16], const unsigned char *p, size_t n, vks_scratch *out,
                          struct vks_err *err)
{
    unsigned char pk[32];
    if (n < 16 + VKS_AGE_TAG)
        return vks_err_set(err, VKS_E_DECRYPT_FAILED, "age payload: truncated (%zu bytes after the header, at least "
                           "%d needed)", n, 16 + VKS_AGE_TAG);
    if (!vks_hkdf_sha256(fk, 16, p, 16, "payload", 7, pk, 32))
        return vks_err_set(err, VKS_E_INTERNAL, "age: payload key derivation failed");
    vks_status st = VKS_OK;
    size_t off = 16;
    for (uint64_t c = 0; st == VKS_OK && off < n; c++) {
        size_t rest = n - off, cl = rest > VKS_AGE_CHUNK + VKS_AGE_TAG ? VKS_AGE_CHUNK + VKS_AGE_TAG : rest;
        bool last = rest == cl;
        unsigned char nonce[12] = { 0 };
        uint64_t cc = c;
        for (int i = 10; i >= 3; i--, cc >>= 8)
            nonce[i] = (unsigned char)(cc & 0xff);
        nonce[11] = last ? 1 : 0;
        if (cl < VKS_AGE_TAG || (last && cl == VKS_AGE_TAG && c > 0))
            st = vks_err_set(err, VKS_E_DECRYPT_FAILED, "age payload: chunk %llu is %s", (unsigned long long)c + 1,
                             cl < VKS_AGE_TAG ? "truncated" : "an empty final chunk after a full one (not allowed)");
        else if (!aead(false, pk, nonce, p + off, cl, out->data + out->len))
            st = vks_err_set(err, VKS_E_DECRYPT_FAILED, "age payload: chunk %llu does not authenticate: the file "
                             "was modified or truncated", (unsigned long long)c + 1);
        else
            out->len += cl - VKS_AGE_TAG;
        off += cl;
    }
    vks_wipe(pk, sizeof pk);
    return st;
}

vks_status vks_age_open(const unsigned char *buf, size_t n, const struct vks_age_key *key, vks_scratch *out,
                        struct vks_err *err)
{
    memset(out, 0, sizeof *out);
    if (buf == NULL || key == NULL)
        return vks_err_set(err, VKS_E_INVALID_ARG, "age: nothing to open");
    struct vks_age_header *h = malloc(sizeof *h);
    if (h == NULL)
        return vks_err_set(err, VKS_E_NOMEM, "age: out of memory");
    unsigned char fk[16], mac[32];
    vks_status st = vks_age_header_parse(buf, n, h, err);
    if (st == VKS_OK)
        st = file_key(buf, h, key, fk, err);
    if (st == VKS_OK && !header_mac(fk, buf, h->mac_covered, mac))
        st = vks_err_set(err, VKS_E_INTERNAL, "age: header MAC failed");
    if (st == VKS_OK && CRYPTO_memcmp(mac, h->mac, 32) != 0)
        st = vks_err_set(err, VKS_E_DECRYPT_FAILED, "age header: the MAC does not match: the header was modified");
    if (st == VKS_OK)
        st = vks_scratch_open(n - h->len > 0 ? n - h->len : 1, out, err);
    if (st == VKS_OK)
        st = payload(fk, buf + h->len, n - h->len, out, err);
    if (st != VKS_OK)
        vks_scratch_close(out);
    vks_wipe(fk, sizeof fk);
    free(h);
    return st;
}
