/*
 * The keyring: 32-byte AES-256-GCM keys by id, loaded from the environment and key files.
 * Sources, ids and precedence are documented in docs/internals/envelope.md.
 *
 * Key material is decoded or read straight into arena slots (vks_secret); a multi-key file is read
 * into a locked scratch buffer that is wiped on close. No key byte ever goes through malloc,
 * realloc, stdio buffers or an error message.
 */
#include "vks_keyring_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vks_base64.h"
#include "vks_file.h"
#include "vks_fork.h"

#define KEYRING_FILE_MAX (64 * 1024)
#define COMPAT_FILE_MAX 256

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_space((*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_space((*s)[*n - 1]))
        (*n)--;
}

bool vks_key_id_valid(const char *id, size_t n)
{
    if (n == 0 || n > VKS_KEY_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

const struct vks_key_entry *vks_keyring_find(const struct vks_keyring *kr, const char *id,
                                             size_t idlen)
{
    if (!kr)
        return NULL;
    for (size_t i = 0; i < kr->n; i++) {
        if (strlen(kr->keys[i].id) == idlen && memcmp(kr->keys[i].id, id, idlen) == 0)
            return &kr->keys[i];
    }
    return NULL;
}

void vks_keyring_list_ids(const struct vks_keyring *kr, char *buf, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; kr && i < kr->n; i++) {
        int w = snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", kr->keys[i].id);
        if (w < 0 || (size_t)w >= cap - o) {
            buf[cap - 1] = '\0';
            return;
        }
        o += (size_t)w;
    }
    if (o == 0)
        snprintf(buf, cap, "none");
}

vks_status vks_keyring_new(struct vks_keyring **out, struct vks_err *err)
{
    if (!out)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_keyring_new: out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out)
        return vks_err_set(err, VKS_E_NOMEM, "keyring: out of memory");
    (*out)->born_gen = vks_fork_generation();
    return VKS_OK;
}

void vks_keyring_free(struct vks_keyring *kr)
{
    if (!kr)
        return;
    for (size_t i = 0; i < kr->n; i++)
        vks_secret_free(&kr->keys[i].key);
    free(kr);
}

/* Moves *slot (exactly 32 key bytes) into the keyring under id; on failure the slot is freed. */
static vks_status take_key(struct vks_keyring *kr, const char *id, size_t idlen, const char *source,
                           vks_secret *slot, struct vks_err *err)
{
    vks_status st = VKS_OK;
    if (!vks_key_id_valid(id, idlen)) {
        st = vks_err_set(err, VKS_E_CONFIG,
                         "%s: invalid key id (need 1-%d characters of A-Z a-z 0-9 . _ -)", source,
                         VKS_KEY_ID_MAX);
    } else if (slot->len != VKS_KEY_LEN) {
        st = vks_err_set(err, VKS_E_CONFIG, "%s: key is %zu bytes, need %d", source, slot->len,
                         VKS_KEY_LEN);
    } else {
        const struct vks_key_entry *dup = vks_keyring_find(kr, id, idlen);
        if (dup) {
            st = vks_err_set(err, VKS_E_CONFIG, "%s: key id '%.*s' is already defined by %s",
                             source, (int)idlen, id, dup->source);
        } else if (kr->n >= VKS_KEYRING_MAX) {
            st = vks_err_set(err, VKS_E_CONFIG, "%s: keyring full (at most %d keys)", source,
                             VKS_KEYRING_MAX);
        }
    }
    /* keys outlive fork(): a forked MTA child must still open ENC: values (vks_fork) */
    if (st == VKS_OK)
        st = vks_secret_keep(slot, err);
    if (st != VKS_OK) {
        vks_secret_free(slot);
        return st;
    }
    struct vks_key_entry *e = &kr->keys[kr->n++];
    memcpy(e->id, id, idlen);
    e->id[idlen] = '\0';
    snprintf(e->source, sizeof e->source, "%s", source);
    e->key = *slot;
    *slot = VKS_SECRET_EMPTY;
    return VKS_OK;
}

vks_status vks_keyring_add(struct vks_keyring *kr, const char *id, const unsigned char *key32,
                           struct vks_err *err)
{
    if (!kr || !id || !key32)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_keyring_add: NULL argument");
    vks_secret slot = VKS_SECRET_EMPTY;
    vks_status st = vks_secret_dup(key32, VKS_KEY_LEN, &slot, err);
    if (st != VKS_OK)
        return st;
    return take_key(kr, id, strlen(id), "vks_keyring_add", &slot, err);
}

/* Decodes base64 key text (surrounding whitespace allowed) straight into a new slot. */
static vks_status key_from_b64(const char *b64, size_t n, const char *source, vks_secret *out,
                               struct vks_err *err)
{
    trim(&b64, &n);
    if (n == 0)
        return vks_err_set(err, VKS_E_CONFIG, "%s: empty key", source);
    vks_status st = vks_secret_alloc(64, out, err);
    if (st != VKS_OK)
        return st;
    size_t got = 0, where = 0;
    enum vks_b64_result r = vks_b64_decode(b64, n, out->data, out->cap, &got, &where);
    if (r == VKS_B64_TOO_LONG) {
        vks_secret_free(out);
        return vks_err_set(err, VKS_E_CONFIG,
                           "%s: key is not base64 of 32 bytes (%zu characters, expected 44)",
                           source, n);
    }
    if (r != VKS_B64_OK) {
        vks_secret_free(out);
        return vks_err_set(err, VKS_E_CONFIG, "%s: key is not valid base64 (%s at offset %zu)",
                           source, vks_b64_strerror(r), where);
    }
    out->len = got;
    if (got != VKS_KEY_LEN) {
        vks_secret_free(out);
        return vks_err_set(err, VKS_E_CONFIG, "%s: key decodes to %zu bytes, need %d", source, got,
                           VKS_KEY_LEN);
    }
    return VKS_OK;
}

/* Parses "id:base64" (surrounding whitespace allowed) and adds it. */
static vks_status add_entry(struct vks_keyring *kr, const char *s, size_t n, const char *source,
                            struct vks_err *err)
{
    trim(&s, &n);
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return vks_err_set(err, VKS_E_CONFIG, "%s: expected id:base64-key (no ':' found)", source);
    const char *id = s;
    size_t idlen = (size_t)(colon - s);
    trim(&id, &idlen);
    if (!vks_key_id_valid(id, idlen))
        return vks_err_set(err, VKS_E_CONFIG,
                           "%s: invalid key id (need 1-%d characters of A-Z a-z 0-9 . _ -)",
                           source, VKS_KEY_ID_MAX);
    vks_secret slot = VKS_SECRET_EMPTY;
    vks_status st = key_from_b64(colon + 1, (size_t)((s + n) - (colon + 1)), source, &slot, err);
    if (st != VKS_OK)
        return st;
    return take_key(kr, id, idlen, source, &slot, err);
}

/* How a key file is opened (vks_file): without blocking, a regular file of at most cap bytes, and
 * (when strict) without access for group/others. */
static struct vks_file_opts key_file_opts(bool strict, size_t cap)
{
    return (struct vks_file_opts){ .what = "key file", .code = VKS_E_CONFIG, .max_bytes = cap,
                                   .private_mode = strict };
}

/* Opens a key file; errors are prefixed with the variable that named it. */
static vks_status open_key_file(const char *path, const char *var, bool strict, size_t cap, int *fd_out,
                                struct vks_err *err)
{
    const struct vks_file_opts fo = key_file_opts(strict, cap);
    struct vks_err ferr;
    vks_err_clear(&ferr);
    vks_status st = vks_file_open(path, &fo, fd_out, NULL, &ferr);
    if (st != VKS_OK)
        return vks_err_set(err, st, "%s: %s", var, ferr.msg);
    return VKS_OK;
}

/* Reads up to cap bytes; *n is what was read, *more is true when the file holds more. */
static vks_status read_upto(int fd, unsigned char *buf, size_t cap, size_t *n, bool *more,
                            const char *var, const char *path, struct vks_err *err)
{
    const struct vks_file_opts fo = key_file_opts(false, 0);
    struct vks_err ferr;
    vks_err_clear(&ferr);
    vks_status st = vks_file_read_fd(fd, buf, cap, n, more, path, &fo, &ferr);
    if (st != VKS_OK)
        return vks_err_set(err, st, "%s: %s", var, ferr.msg);
    return VKS_OK;
}

/* VKS_ENCRYPTION_KEY_FILE: exactly 32 raw bytes, mode without group/other bits. */
static vks_status load_raw_key_file(struct vks_keyring *kr, const char *path, struct vks_err *err)
{
    const char *var = "VKS_ENCRYPTION_KEY_FILE";
    int fd = -1;
    vks_status st = open_key_file(path, var, true, VKS_SECRET_MAX, &fd, err);
    if (st != VKS_OK)
        return st;
    vks_secret slot = VKS_SECRET_EMPTY;
    st = vks_secret_alloc(VKS_KEY_LEN, &slot, err);
    if (st == VKS_OK) {
        size_t n = 0;
        bool more = false;
        st = read_upto(fd, slot.data, slot.cap, &n, &more, var, path, err);
        if (st == VKS_OK && (more || n != VKS_KEY_LEN)) {
            st = vks_err_set(err, VKS_E_CONFIG,
                             "%s: key file %s must hold exactly %d raw bytes (it holds %s%zu)%s",
                             var, path, VKS_KEY_LEN, more ? "more than " : "", n,
                             more ? "; a base64 key belongs in VKS_ENCRYPTION_KEY" : "");
        }
        slot.len = n;
    }
    close(fd);
    if (st != VKS_OK) {
        vks_secret_free(&slot);
        return st;
    }
    return take_key(kr, VKS_KEY_ID_DEFAULT, strlen(VKS_KEY_ID_DEFAULT), var, &slot, err);
}

/* VKS_ENCRYPTION_KEYRING_FILE: lines of "id:base64", '#' comments and blank lines ignored. */
static vks_status load_keyring_file(struct vks_keyring *kr, const char *path, struct vks_err *err)
{
    const char *var = "VKS_ENCRYPTION_KEYRING_FILE";
    int fd = -1;
    vks_status st = open_key_file(path, var, true, KEYRING_FILE_MAX, &fd, err);
    if (st != VKS_OK)
        return st;
    vks_scratch buf;
    st = vks_scratch_open(KEYRING_FILE_MAX, &buf, err);
    if (st != VKS_OK) {
        close(fd);
        return st;
    }
    size_t n = 0;
    bool more = false;
    st = read_upto(fd, buf.data, buf.cap, &n, &more, var, path, err);
    close(fd);
    buf.len = n;
    if (st == VKS_OK && more)
        st = vks_err_set(err, VKS_E_CONFIG, "%s: key file %s is larger than %d bytes", var, path,
                         KEYRING_FILE_MAX);
    const char *p = (const char *)buf.data, *end = p + n;
    for (size_t line = 1; st == VKS_OK && p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *s = p;
        size_t sl = len;
        trim(&s, &sl);
        if (sl > 0 && s[0] != '#') {
            char source[128];
            snprintf(source, sizeof source, "%s line %zu", path, line);
            st = add_entry(kr, s, sl, source, err);
        }
        p += len + (nl ? 1 : 0);
    }
    vks_scratch_close(&buf);
    return st;
}

static bool is_space_byte(unsigned char c)
{
    return is_space((char)c);
}

/* genro-mail-proxy's /run/secrets/encryption_key: raw bytes, surrounding ASCII whitespace removed
 * (Python's bytes.strip()), then exactly 32 bytes. genro reads it whatever its mode, and so do we
 * (container secrets are often mounted 0444); see docs/internals/envelope.md. */
static vks_status load_compat_file(struct vks_keyring *kr, const char *path, struct vks_err *err)
{
    const char *var = "compatibility key file";
    int fd = -1;
    vks_status st = open_key_file(path, var, false, VKS_SECRET_MAX, &fd, err);
    if (st != VKS_OK)
        return st;
    vks_secret slot = VKS_SECRET_EMPTY;
    st = vks_secret_alloc(COMPAT_FILE_MAX, &slot, err);
    if (st == VKS_OK) {
        size_t n = 0;
        bool more = false;
        st = read_upto(fd, slot.data, slot.cap, &n, &more, var, path, err);
        if (st == VKS_OK) {
            size_t a = 0, b = n;
            while (a < b && is_space_byte(slot.data[a]))
                a++;
            while (b > a && is_space_byte(slot.data[b - 1]))
                b--;
            if (more || b - a != VKS_KEY_LEN) {
                st = vks_err_set(err, VKS_E_CONFIG,
                                 "%s %s must hold %d raw bytes (it holds %s%zu after trimming "
                                 "whitespace)",
                                 var, path, VKS_KEY_LEN, more ? "more than " : "", b - a);
            } else {
                memmove(slot.data, slot.data + a, VKS_KEY_LEN);
                vks_wipe(slot.data + VKS_KEY_LEN, slot.cap - VKS_KEY_LEN);
                slot.len = VKS_KEY_LEN;
            }
        }
    }
    close(fd);
    if (st != VKS_OK) {
        vks_secret_free(&slot);
        return st;
    }
    char source[128];
    snprintf(source, sizeof source, "%s", path);
    return take_key(kr, VKS_KEY_ID_MAIL_PROXY, strlen(VKS_KEY_ID_MAIL_PROXY), source, &slot, err);
}

static const char *process_getenv(const char *name, void *ctx)
{
    (void)ctx;
    return secure_getenv(name);
}

/* An environment variable counts as set when present and not empty (genro does the same). */
static const char *env(vks_getenv_fn fn, void *ctx, const char *name)
{
    const char *v = fn(name, ctx);
    return (v && v[0]) ? v : NULL;
}

vks_status vks_keyring_load(struct vks_keyring **out, vks_getenv_fn getenv_fn, void *ctx,
                            const char *compat_file, struct vks_err *err)
{
    if (!out)
        return vks_err_set(err, VKS_E_INVALID_ARG, "vks_keyring_load: out is NULL");
    *out = NULL;
    if (!getenv_fn)
        getenv_fn = process_getenv;
    if (!compat_file)
        compat_file = VKS_COMPAT_KEY_FILE;

    struct vks_keyring *kr = NULL;
    vks_status st = vks_keyring_new(&kr, err);
    if (st != VKS_OK)
        return st;

    /* 1. VKS_ENCRYPTION_KEYS="id1:b64,id2:b64" (the first is the primary key). */
    const char *list = env(getenv_fn, ctx, "VKS_ENCRYPTION_KEYS");
    if (list) {
        const char *p = list;
        size_t entry = 1;
        while (st == VKS_OK) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            const char *s = p;
            size_t sl = len;
            trim(&s, &sl);
            char source[64];
            snprintf(source, sizeof source, "VKS_ENCRYPTION_KEYS entry %zu", entry);
            if (sl == 0)
                st = vks_err_set(err, VKS_E_CONFIG, "%s is empty", source);
            else
                st = add_entry(kr, s, sl, source, err);
            if (!comma)
                break;
            p = comma + 1;
            entry++;
        }
    }

    /* 2. VKS_ENCRYPTION_KEYRING_FILE: the same entries, one per line, in a 0600 file. */
    const char *ringfile = env(getenv_fn, ctx, "VKS_ENCRYPTION_KEYRING_FILE");
    if (st == VKS_OK && ringfile)
        st = load_keyring_file(kr, ringfile, err);

    /* 3. One key under id "default": VKS_ENCRYPTION_KEY (base64) or VKS_ENCRYPTION_KEY_FILE (raw). */
    const char *k = env(getenv_fn, ctx, "VKS_ENCRYPTION_KEY");
    const char *kf = env(getenv_fn, ctx, "VKS_ENCRYPTION_KEY_FILE");
    if (st == VKS_OK && k && kf) {
        st = vks_err_set(err, VKS_E_CONFIG,
                         "VKS_ENCRYPTION_KEY and VKS_ENCRYPTION_KEY_FILE are both set; set one");
    } else if (st == VKS_OK && k) {
        vks_secret slot = VKS_SECRET_EMPTY;
        st = key_from_b64(k, strlen(k), "VKS_ENCRYPTION_KEY", &slot, err);
        if (st == VKS_OK)
            st = take_key(kr, VKS_KEY_ID_DEFAULT, strlen(VKS_KEY_ID_DEFAULT), "VKS_ENCRYPTION_KEY",
                          &slot, err);
    } else if (st == VKS_OK && kf) {
        st = load_raw_key_file(kr, kf, err);
    }

    /* 4. genro-mail-proxy compatibility, under id "mail-proxy", with genro's own precedence: the
     * variable (base64) wins and the file is not read when it is set. */
    const char *mp = env(getenv_fn, ctx, "MAIL_PROXY_ENCRYPTION_KEY");
    if (st == VKS_OK && mp) {
        vks_secret slot = VKS_SECRET_EMPTY;
        st = key_from_b64(mp, strlen(mp), "MAIL_PROXY_ENCRYPTION_KEY", &slot, err);
        if (st == VKS_OK)
            st = take_key(kr, VKS_KEY_ID_MAIL_PROXY, strlen(VKS_KEY_ID_MAIL_PROXY),
                          "MAIL_PROXY_ENCRYPTION_KEY", &slot, err);
    } else if (st == VKS_OK && compat_file[0] && access(compat_file, F_OK) == 0) {
        st = load_compat_file(kr, compat_file, err);
    }

    if (st != VKS_OK) {
        vks_keyring_free(kr);
        return st;
    }
    *out = kr;
    return VKS_OK;
}

vks_status vks_keyring_load_env(struct vks_keyring **out, struct vks_err *err)
{
    return vks_keyring_load(out, NULL, NULL, NULL, err);
}

size_t vks_keyring_count(const struct vks_keyring *kr)
{
    return kr ? kr->n : 0;
}

const char *vks_keyring_id(const struct vks_keyring *kr, size_t i)
{
    return (kr && i < kr->n) ? kr->keys[i].id : NULL;
}

const char *vks_keyring_source(const struct vks_keyring *kr, size_t i)
{
    return (kr && i < kr->n) ? kr->keys[i].source : NULL;
}

const char *vks_keyring_primary_id(const struct vks_keyring *kr)
{
    return vks_keyring_id(kr, 0);
}
