/*
 * ENC: envelopes: parse, decrypt and encrypt with AES-256-GCM (OpenSSL EVP).
 *
 *   legacy (format 1, genro-mail-proxy):  "ENC:" base64(nonce[12] || ciphertext || tag[16]), no AAD
 *   versioned (format 2):                 "ENC:v2:" key_id ":" base64(nonce[12] || ciphertext || tag[16])
 *                                          AAD = canonical (version, key id, mount, path, key)
 *
 * Byte-level description, AAD encoding and rotation: docs/internals/envelope.md.
 *
 * Plaintext is written by EVP straight into the caller's arena slot. EVP_DecryptUpdate produces
 * plaintext before EVP_DecryptFinal_ex checks the tag, so every failure path wipes the whole slot.
 */
#include "vks_envelope.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "vks_base64.h"
#include "vks_fork.h"
#include "vks_keyring_priv.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define PREFIX "ENC:"
#define PREFIX_LEN 4
#define V2_TAG "v2"
#define AAD_MAGIC "vks-envelope"     /* 12 bytes, followed by a 0x00 separator */
#define AAD_FIELD_MAX (64 * 1024)    /* longest mount / path / key bound into the AAD */
/* Decoded envelope bytes never exceed nonce + the largest secret + tag. */
#define RAW_MAX (NONCE_LEN + VKS_SECRET_MAX + TAG_LEN)

/* ---- the cipher, fetched once ---- */

static pthread_once_t cipher_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *cipher_fetched;

static void cipher_init(void)
{
    cipher_fetched = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static const EVP_CIPHER *gcm(void)
{
    pthread_once(&cipher_once, cipher_init);
    return cipher_fetched ? cipher_fetched : EVP_aes_256_gcm();
}

/* ---- the place, for messages and for the AAD ---- */

static const char *or_empty(const char *s)
{
    return s ? s : "";
}

/* Mount and path are bound without leading and trailing '/', so that 'secret' and 'secret/' (which
 * Vault treats alike) are the same place. */
static void strip_slashes(const char **s, size_t *n)
{
    while (*n > 0 && (*s)[0] == '/') {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && (*s)[*n - 1] == '/')
        (*n)--;
}

/* Printable, bounded copy of a place field for an error message. */
static void safe_copy(char *dst, size_t cap, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        dst[o++] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (s && *s && o + 3 < cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

struct place_text {
    char s[3 * 130 + 64];
};

static const char *describe(const struct vks_envelope_place *pl, struct place_text *t)
{
    char m[130], p[130], k[130];
    safe_copy(m, sizeof m, pl ? pl->mount : NULL);
    safe_copy(p, sizeof p, pl ? pl->path : NULL);
    safe_copy(k, sizeof k, pl ? pl->key : NULL);
    snprintf(t->s, sizeof t->s, "mount '%s' path '%s' key '%s'", m, p, k);
    return t->s;
}

/* ---- AES-256-GCM with our AAD, fed to EVP piece by piece ---- */

static int aad_piece(EVP_CIPHER_CTX *ctx, int enc, const void *p, size_t n)
{
    int outl = 0;
    if (n == 0)
        return 1;
    return enc ? EVP_EncryptUpdate(ctx, NULL, &outl, p, (int)n)
               : EVP_DecryptUpdate(ctx, NULL, &outl, p, (int)n);
}

static int aad_field(EVP_CIPHER_CTX *ctx, int enc, const char *s, size_t n)
{
    unsigned char len[4] = { (unsigned char)(n >> 24), (unsigned char)(n >> 16),
                             (unsigned char)(n >> 8), (unsigned char)n };
    return aad_piece(ctx, enc, len, 4) && aad_piece(ctx, enc, s, n);
}

/* AAD of format 2:
 *   "vks-envelope" 0x00 0x02 | u32be(len) key_id | u32be(len) mount | u32be(len) path | u32be(len) key
 * with mount and path stripped of leading/trailing '/'. */
static int feed_aad(EVP_CIPHER_CTX *ctx, int enc, const char *key_id, size_t idlen,
                    const struct vks_envelope_place *pl)
{
    static const unsigned char head[] = AAD_MAGIC "\0\2";
    const char *m = or_empty(pl ? pl->mount : NULL), *p = or_empty(pl ? pl->path : NULL),
               *k = or_empty(pl ? pl->key : NULL);
    size_t ml = strlen(m), pln = strlen(p), kl = strlen(k);
    strip_slashes(&m, &ml);
    strip_slashes(&p, &pln);
    return aad_piece(ctx, enc, head, sizeof head - 1) && aad_field(ctx, enc, key_id, idlen) &&
           aad_field(ctx, enc, m, ml) && aad_field(ctx, enc, p, pln) && aad_field(ctx, enc, k, kl);
}

static bool place_fits(const struct vks_envelope_place *pl)
{
    return !pl || ((!pl->mount || strlen(pl->mount) <= AAD_FIELD_MAX) &&
                   (!pl->path || strlen(pl->path) <= AAD_FIELD_MAX) &&
                   (!pl->key || strlen(pl->key) <= AAD_FIELD_MAX));
}

/* Decrypts ct[0..ctlen) into out; true when the tag authenticated. out is NOT wiped here. */
static bool gcm_open(const unsigned char *key, const unsigned char *nonce, const char *key_id,
                     size_t idlen, const struct vks_envelope_place *pl, const unsigned char *ct,
                     size_t ctlen, const unsigned char *tag, unsigned char *out)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ok = ctx != NULL;
    int outl = 0, fin = 0;
    ok = ok && EVP_DecryptInit_ex(ctx, gcm(), NULL, NULL, NULL);
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL);
    ok = ok && EVP_DecryptInit_ex(ctx, NULL, NULL, key, nonce);
    if (ok && key_id)
        ok = feed_aad(ctx, 0, key_id, idlen, pl);
    if (ok && ctlen > 0)
        ok = EVP_DecryptUpdate(ctx, out, &outl, ct, (int)ctlen);
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)tag);
    ok = ok && EVP_DecryptFinal_ex(ctx, out + outl, &fin) > 0;
    EVP_CIPHER_CTX_free(ctx); /* frees the key schedule with OPENSSL_clear_free */
    return ok && (size_t)(outl + fin) == ctlen;
}

static bool gcm_seal(const unsigned char *key, const unsigned char *nonce, const char *key_id,
                     size_t idlen, const struct vks_envelope_place *pl, const unsigned char *pt,
                     size_t ptlen, unsigned char *ct, unsigned char *tag)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int ok = ctx != NULL;
    int outl = 0, fin = 0;
    ok = ok && EVP_EncryptInit_ex(ctx, gcm(), NULL, NULL, NULL);
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL);
    ok = ok && EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce);
    if (ok && key_id)
        ok = feed_aad(ctx, 1, key_id, idlen, pl);
    if (ok && ptlen > 0)
        ok = EVP_EncryptUpdate(ctx, ct, &outl, pt, (int)ptlen);
    ok = ok && EVP_EncryptFinal_ex(ctx, ct + outl, &fin);
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag);
    EVP_CIPHER_CTX_free(ctx);
    return ok && (size_t)(outl + fin) == ptlen;
}

/* ---- parsing ---- */

bool vks_envelope_is_encrypted(const unsigned char *value, size_t len)
{
    return value && len >= PREFIX_LEN && memcmp(value, PREFIX, PREFIX_LEN) == 0;
}

struct parsed {
    int format;
    const char *key_id; /* inside the value; NULL for legacy */
    size_t idlen;
    size_t rawlen;      /* decoded bytes in raw */
};

/* Splits and decodes an envelope into raw (RAW_MAX bytes). On failure, returns
 * VKS_E_DECRYPT_FAILED with a "malformed envelope" message. */
static vks_status parse(const unsigned char *value, size_t len, const char *where,
                        unsigned char *raw, struct parsed *out, struct vks_err *err)
{
    const char *s = (const char *)value + PREFIX_LEN;
    size_t n = len - PREFIX_LEN;
    /* Trailing whitespace (a newline from `echo` or a file) is tolerated, nothing else. */
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    memset(out, 0, sizeof *out);
    out->format = 1;

    /* Base64 never contains ':', so a ':' after the prefix means the versioned form. */
    const char *c1 = memchr(s, ':', n);
    if (c1) {
        size_t vlen = (size_t)(c1 - s);
        if (!(vlen == 2 && memcmp(s, V2_TAG, 2) == 0)) {
            if (vlen >= 2 && vlen <= 4 && s[0] == 'v')
                return vks_err_set(err, VKS_E_DECRYPT_FAILED,
                                   "ENC value at %s: malformed envelope: unsupported version "
                                   "'%.*s' (this build reads legacy and v2)",
                                   where, (int)vlen, s);
            return vks_err_set(err, VKS_E_DECRYPT_FAILED,
                               "ENC value at %s: malformed envelope: expected ENC:v2:<key id>:"
                               "<base64> or ENC:<base64>",
                               where);
        }
        const char *id = c1 + 1;
        const char *c2 = memchr(id, ':', (size_t)(s + n - id));
        if (!c2)
            return vks_err_set(err, VKS_E_DECRYPT_FAILED,
                               "ENC value at %s: malformed envelope: v2 needs ENC:v2:<key id>:"
                               "<base64>",
                               where);
        size_t idlen = (size_t)(c2 - id);
        if (!vks_key_id_valid(id, idlen))
            return vks_err_set(err, VKS_E_DECRYPT_FAILED,
                               "ENC value at %s: malformed envelope: invalid key id (need 1-%d "
                               "characters of A-Z a-z 0-9 . _ -)",
                               where, VKS_KEY_ID_MAX);
        out->format = 2;
        out->key_id = id;
        out->idlen = idlen;
        n = (size_t)(s + n - (c2 + 1));
        s = c2 + 1;
    }
    if (n == 0)
        return vks_err_set(err, VKS_E_DECRYPT_FAILED,
                           "ENC value at %s: malformed envelope: empty (no base64 after the "
                           "prefix)",
                           where);
    size_t got = 0, at = 0;
    enum vks_b64_result r = vks_b64_decode(s, n, raw, RAW_MAX, &got, &at);
    if (r == VKS_B64_TOO_LONG)
        return vks_err_set(err, VKS_E_DECRYPT_FAILED,
                           "ENC value at %s: malformed envelope: oversized (plaintext over %d "
                           "bytes)",
                           where, VKS_SECRET_MAX);
    if (r != VKS_B64_OK)
        return vks_err_set(err, VKS_E_DECRYPT_FAILED,
                           "ENC value at %s: malformed envelope: bad base64 (%s at offset %zu)",
                           where, vks_b64_strerror(r),
                           at + (size_t)(s - (const char *)value));
    if (got < NONCE_LEN + TAG_LEN)
        return vks_err_set(err, VKS_E_DECRYPT_FAILED,
                           "ENC value at %s: malformed envelope: too short (%zu bytes, need at "
                           "least %d: nonce %d + tag %d)",
                           where, got, NONCE_LEN + TAG_LEN, NONCE_LEN, TAG_LEN);
    out->rawlen = got;
    return VKS_OK;
}

vks_status vks_envelope_decrypt_into(const struct vks_keyring *kr, const unsigned char *value,
                                     size_t len, const struct vks_envelope_place *place,
                                     vks_secret *dst, struct vks_envelope_info *info,
                                     struct vks_err *err)
{
    struct place_text pt;
    const char *where = describe(place, &pt);
    unsigned char raw[RAW_MAX];
    struct parsed ps;
    vks_status st;

    if (info)
        memset(info, 0, sizeof *info);
    if (!dst || (!dst->data && dst->cap))
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_envelope_decrypt_into: no output slot");
    if (dst->data)
        vks_wipe(dst->data, dst->cap);
    dst->len = 0;
    if (!vks_envelope_is_encrypted(value, len))
        return vks_err_set(err, VKS_E_INVALID_ARG, "value at %s is not an ENC: envelope", where);
    if (len > VKS_ENVELOPE_MAX)
        return vks_err_set(err, VKS_E_DECRYPT_FAILED,
                           "ENC value at %s: malformed envelope: oversized (%zu bytes, at most "
                           "%d)",
                           where, len, VKS_ENVELOPE_MAX);
    if (!place_fits(place))
        return vks_err_set(err, VKS_E_INVALID_ARG, "place too long (mount/path/key over %d bytes)",
                           AAD_FIELD_MAX);
    if (kr && (st = vks_fork_check(kr->born_gen, VKS_E_DECRYPT_FAILED, "the ENC: keyring", err)) != VKS_OK)
        return st;

    st = parse(value, len, where, raw, &ps, err);
    if (st != VKS_OK)
        goto out;
    const unsigned char *nonce = raw, *ct = raw + NONCE_LEN;
    size_t ctlen = ps.rawlen - NONCE_LEN - TAG_LEN;
    const unsigned char *tag = raw + NONCE_LEN + ctlen;
    if (ctlen > 0 && (!dst->data || dst->cap < ctlen)) {
        st = vks_err_set(err, VKS_E_INVALID_ARG,
                         "vks_envelope_decrypt_into: output slot holds %zu bytes, need %zu",
                         dst->cap, ctlen);
        goto out;
    }
    if (info) {
        info->format = ps.format;
        if (ps.format == 2) {
            memcpy(info->key_id, ps.key_id, ps.idlen);
            info->key_id[ps.idlen] = '\0';
        }
    }

    /* An empty plaintext may go to an empty slot; EVP still needs a valid pointer. */
    unsigned char none = 0;
    unsigned char *o = dst->data ? dst->data : &none;
    char ids[256];
    if (!kr || kr->n == 0) {
        st = vks_err_set(err, VKS_E_DECRYPT_FAILED,
                         "ENC value at %s: no encryption key configured (set VKS_ENCRYPTION_KEY, "
                         "VKS_ENCRYPTION_KEY_FILE or VKS_ENCRYPTION_KEYS)",
                         where);
        goto out;
    }
    if (ps.format == 2) {
        const struct vks_key_entry *e = vks_keyring_find(kr, ps.key_id, ps.idlen);
        if (!e) {
            vks_keyring_list_ids(kr, ids, sizeof ids);
            st = vks_err_set(err, VKS_E_DECRYPT_FAILED,
                             "ENC value at %s: unknown key id '%.*s' (keyring has: %s)", where,
                             (int)ps.idlen, ps.key_id, ids);
            goto out;
        }
        if (gcm_open(e->key.data, nonce, ps.key_id, ps.idlen, place, ct, ctlen, tag, o)) {
            dst->len = ctlen;
            st = VKS_OK;
            goto out;
        }
        st = vks_err_set(err, VKS_E_DECRYPT_FAILED,
                         "ENC value at %s: did not authenticate with key id '%s' (wrong key, "
                         "tampered value, or a value copied from another mount/path/key)",
                         where, e->id);
        goto out;
    }
    /* Legacy: no id and no AAD, so every key is tried in keyring order. */
    for (size_t i = 0; i < kr->n; i++) {
        if (gcm_open(kr->keys[i].key.data, nonce, NULL, 0, NULL, ct, ctlen, tag, o)) {
            dst->len = ctlen;
            st = VKS_OK;
            goto out;
        }
        if (dst->data)
            vks_wipe(dst->data, dst->cap);
    }
    vks_keyring_list_ids(kr, ids, sizeof ids);
    st = vks_err_set(err, VKS_E_DECRYPT_FAILED,
                     "ENC value at %s: legacy envelope did not authenticate with any of the %zu "
                     "configured keys (%s): wrong key or tampered value",
                     where, kr->n, ids);

out:
    vks_wipe(raw, sizeof raw);
    if (st != VKS_OK && dst->data) {
        vks_wipe(dst->data, dst->cap);
        dst->len = 0;
    }
    return st;
}

vks_status vks_envelope_decrypt(const struct vks_keyring *kr, const unsigned char *value, size_t len,
                                const struct vks_envelope_place *place, vks_secret *out,
                                struct vks_envelope_info *info, struct vks_err *err)
{
    if (!out)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_envelope_decrypt: out is NULL");
    *out = VKS_SECRET_EMPTY;
    if (info)
        memset(info, 0, sizeof *info);
    if (!vks_envelope_is_encrypted(value, len)) {
        struct place_text pt;
        return vks_err_set(err, VKS_E_INVALID_ARG, "value at %s is not an ENC: envelope",
                           describe(place, &pt));
    }
    /* The plaintext is never longer than the decoded text minus nonce and tag; size the slot from
     * that (within the arena's largest slot) and let decrypt_into report oversize precisely. */
    size_t est = VKS_B64_DECODED_MAX(len - PREFIX_LEN + 3);
    est = est > NONCE_LEN + TAG_LEN ? est - NONCE_LEN - TAG_LEN : 1;
    size_t cap = est > VKS_SECRET_MAX ? VKS_SECRET_MAX : est;
    vks_status st = vks_secret_alloc(cap, out, err);
    if (st != VKS_OK)
        return st;
    st = vks_envelope_decrypt_into(kr, value, len, place, out, info, err);
    if (st != VKS_OK)
        vks_secret_free(out);
    return st;
}

/* Length of the envelope of n plaintext bytes: "ENC:" ["v2:" id ":"] base64(nonce || ct || tag). */
static size_t envelope_len(size_t idlen, bool versioned, size_t n)
{
    size_t head = PREFIX_LEN + (versioned ? strlen(V2_TAG) + 1 + idlen + 1 : 0);
    return head + VKS_B64_ENCODED_LEN(NONCE_LEN + n + TAG_LEN);
}

size_t vks_envelope_plaintext_max(const char *key_id)
{
    size_t head = PREFIX_LEN + (key_id ? strlen(V2_TAG) + 1 + strlen(key_id) + 1 : 0);
    if (head + VKS_B64_ENCODED_LEN(NONCE_LEN + TAG_LEN) > VKS_ENVELOPE_WRITE_MAX)
        return 0;
    size_t groups = (VKS_ENVELOPE_WRITE_MAX - head) / 4; /* base64 quads that fit */
    return groups * 3 - NONCE_LEN - TAG_LEN;
}

vks_status vks_envelope_encrypt(const struct vks_keyring *kr, const char *key_id,
                                const struct vks_envelope_place *place,
                                const unsigned char *plain, size_t len, char **out,
                                struct vks_err *err)
{
    if (!out || (!plain && len))
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_envelope_encrypt: NULL argument");
    *out = NULL;
    if (len > VKS_SECRET_MAX)
        return vks_err_set(err, VKS_E_INVALID_ARG, "plaintext of %zu bytes is over %d", len,
                           VKS_SECRET_MAX);
    if (!place_fits(place))
        return vks_err_set(err, VKS_E_INVALID_ARG, "place too long (mount/path/key over %d bytes)",
                           AAD_FIELD_MAX);
    if (!kr || kr->n == 0)
        return vks_err_set(err, VKS_E_CONFIG,
                           "no encryption key configured (set VKS_ENCRYPTION_KEY, "
                           "VKS_ENCRYPTION_KEY_FILE or VKS_ENCRYPTION_KEYS)");
    vks_status fst = vks_fork_check(kr->born_gen, VKS_E_CONFIG, "the ENC: keyring", err);
    if (fst != VKS_OK)
        return fst;
    const struct vks_key_entry *e = &kr->keys[0];
    size_t idlen = 0;
    if (key_id) {
        idlen = strlen(key_id);
        e = vks_keyring_find(kr, key_id, idlen);
        if (!e) {
            char ids[256];
            vks_keyring_list_ids(kr, ids, sizeof ids);
            struct place_text pt;
            safe_copy(pt.s, 80, key_id);
            return vks_err_set(err, VKS_E_CONFIG, "unknown key id '%s' (keyring has: %s)", pt.s,
                               ids);
        }
    }
    size_t envlen = envelope_len(idlen, key_id != NULL, len);
    if (envlen > VKS_ENVELOPE_WRITE_MAX)
        return vks_err_set(err, VKS_E_INVALID_ARG,
                           "plaintext of %zu bytes is too long: its envelope would be %zu bytes, over "
                           "the %d-byte limit (every keysource form holds at most %d bytes); at most "
                           "%zu bytes %s%s%s",
                           len, envlen, VKS_ENVELOPE_WRITE_MAX, VKS_SECRET_MAX,
                           vks_envelope_plaintext_max(key_id ? e->id : NULL),
                           key_id ? "under key id '" : "in the legacy form", key_id ? e->id : "",
                           key_id ? "'" : "");

    size_t rawlen = NONCE_LEN + len + TAG_LEN;
    unsigned char *raw = malloc(rawlen); /* nonce || ciphertext || tag: no plaintext */
    if (!raw)
        return vks_err_set(err, VKS_E_NOMEM, "encrypt: out of memory");
    if (RAND_bytes(raw, NONCE_LEN) != 1) {
        free(raw);
        return vks_err_set(err, VKS_E_INTERNAL, "encrypt: RAND_bytes failed");
    }
    if (!gcm_seal(e->key.data, raw, key_id ? e->id : NULL, idlen, place, plain, len,
                  raw + NONCE_LEN, raw + NONCE_LEN + len)) {
        free(raw);
        return vks_err_set(err, VKS_E_INTERNAL, "encrypt: AES-256-GCM failed");
    }
    size_t head = PREFIX_LEN + (key_id ? strlen(V2_TAG) + 1 + idlen + 1 : 0);
    char *s = malloc(head + VKS_B64_ENCODED_LEN(rawlen) + 1);
    if (!s) {
        free(raw);
        return vks_err_set(err, VKS_E_NOMEM, "encrypt: out of memory");
    }
    if (key_id)
        snprintf(s, head + 1, PREFIX V2_TAG ":%s:", e->id);
    else
        memcpy(s, PREFIX, PREFIX_LEN + 1);
    vks_b64_encode(raw, rawlen, s + head);
    free(raw);
    *out = s;
    return VKS_OK;
}

vks_status vks_envelope_inspect(const unsigned char *value, size_t len,
                                struct vks_envelope_info *info, struct vks_err *err)
{
    unsigned char raw[RAW_MAX];
    struct parsed ps;
    if (info)
        memset(info, 0, sizeof *info);
    if (!vks_envelope_is_encrypted(value, len))
        return vks_err_set(err, VKS_E_NOT_ENCRYPTED, "value is not an ENC: envelope");
    if (len > VKS_ENVELOPE_MAX)
        return vks_err_set(err, VKS_E_DECRYPT_FAILED,
                           "malformed envelope: oversized (%zu bytes, at most %d)", len,
                           VKS_ENVELOPE_MAX);
    vks_status st = parse(value, len, "(inspect)", raw, &ps, err);
    vks_wipe(raw, sizeof raw);
    if (st != VKS_OK)
        return st;
    if (info) {
        info->format = ps.format;
        if (ps.format == 2) {
            memcpy(info->key_id, ps.key_id, ps.idlen);
            info->key_id[ps.idlen] = '\0';
        }
    }
    return VKS_OK;
}

vks_status vks_envelope_rekey(const struct vks_keyring *kr, const unsigned char *value, size_t len,
                              const struct vks_envelope_place *place, const char *new_key_id,
                              char **out, bool *changed, struct vks_err *err)
{
    if (!out)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_envelope_rekey: out is NULL");
    *out = NULL;
    if (changed)
        *changed = false;
    if (!new_key_id)
        new_key_id = vks_keyring_primary_id(kr);
    if (!new_key_id)
        return vks_err_set(err, VKS_E_CONFIG,
                           "no encryption key configured (set VKS_ENCRYPTION_KEY, "
                           "VKS_ENCRYPTION_KEY_FILE or VKS_ENCRYPTION_KEYS)");
    if (!vks_envelope_is_encrypted(value, len)) {
        struct place_text pt;
        return vks_err_set(err, VKS_E_NOT_ENCRYPTED, "value at %s is plaintext, not an ENC: envelope",
                           describe(place, &pt));
    }
    vks_secret plain = VKS_SECRET_EMPTY;
    struct vks_envelope_info info;
    vks_status st = vks_envelope_decrypt(kr, value, len, place, &plain, &info, err);
    if (st != VKS_OK)
        return st;
    if (info.format == 2 && strcmp(info.key_id, new_key_id) == 0) {
        vks_secret_free(&plain);
        char *copy = malloc(len + 1);
        if (!copy)
            return vks_err_set(err, VKS_E_NOMEM, "rekey: out of memory");
        memcpy(copy, value, len);
        copy[len] = '\0';
        *out = copy;
        return VKS_OK;
    }
    st = vks_envelope_encrypt(kr, new_key_id, place, plain.data, plain.len, out, err);
    vks_secret_free(&plain);
    if (st == VKS_OK && changed)
        *changed = true;
    return st;
}
