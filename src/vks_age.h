/*
 * vks_age: the age file format (age-encryption.org/v1, C2SP "age") with OpenSSL 3 primitives only:
 * X25519 and scrypt recipient stanzas, HKDF-SHA256, the HMAC-SHA256 header MAC, and the
 * ChaCha20-Poly1305 STREAM payload in 64 KiB chunks. Recipients are "age1..." and identities
 * "AGE-SECRET-KEY-1..." (Bech32). Design, limits and what is not supported: docs/internals/age.md.
 *
 * Two directions, two shapes:
 *  - sealing streams: vks_age_writer_* takes plaintext in any pieces, keeps at most one 64 KiB
 *    chunk of it (in a vks_scratch buffer: locked, wiped), and hands header and ciphertext to a
 *    sink callback as it goes (the caller writes it to a file with its own deadline);
 *  - opening is bounded and in memory: vks_age_open authenticates the header (MAC) and every
 *    chunk, the last one included, before it returns, so a truncated, modified or foreign file
 *    yields nothing at all; the plaintext is a vks_scratch the caller closes (wiped).
 * Header parsing is strict and bounded (VKS_AGE_* limits below; fuzzed by
 * tests/fuzz/fuzz_age_header.c): canonical unpadded base64, 64-column stanza bodies, at most
 * VKS_AGE_STANZAS_MAX stanzas, a header of at most VKS_AGE_HEADER_MAX bytes.
 *
 * Secrets: file keys, payload keys, identities and passphrases live in vks_secret slots or on the
 * stack and are wiped on every path (OpenSSL's own copies of X25519 private keys are cleared by
 * EVP_PKEY_free). Error messages name the line, field or chunk, never a byte of key material.
 *
 * Ownership: stated per function. Thread-safety: every function is reentrant; a writer or an
 * identity set must not be used by two threads at once.
 */
#ifndef VKS_AGE_H
#define VKS_AGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_error.h"
#include "vks_secmem.h"

#define VKS_AGE_VERSION_LINE "age-encryption.org/v1"
#define VKS_AGE_FILE_KEY_LEN 16
#define VKS_AGE_KEY_LEN 32          /* X25519 keys, HKDF outputs                                 */
#define VKS_AGE_CHUNK 65536         /* plaintext bytes per STREAM chunk                          */
#define VKS_AGE_TAG 16
#define VKS_AGE_HEADER_MAX 65536    /* bytes of header, MAC line included                        */
#define VKS_AGE_STANZAS_MAX 32
#define VKS_AGE_ARGS_MAX 8          /* arguments of a stanza, the type included                  */
#define VKS_AGE_ARG_MAX 128         /* bytes of one argument                                     */
#define VKS_AGE_BODY_MAX 4096       /* decoded bytes of one stanza body                          */
#define VKS_AGE_RECIPIENTS_MAX 32
#define VKS_AGE_IDENTITIES_MAX 16
#define VKS_AGE_SCRYPT_LOGN 18      /* work factor we seal with (age's default): 256 MiB, ~1 s   */
#define VKS_AGE_SCRYPT_LOGN_MAX 20  /* highest we open: 1 GiB of memory                          */
#define VKS_AGE_RECIPIENT_LEN 62    /* "age1" + 58 Bech32 characters                            */
#define VKS_AGE_IDENTITY_LEN 74     /* "AGE-SECRET-KEY-1" + 58                                   */

/* ---------------------------------------------------------------- header (pure, fuzzed) */

struct vks_age_span {
    size_t off, len;               /* into the buffer given to vks_age_header_parse */
};
struct vks_age_stanza {
    struct vks_age_span args[VKS_AGE_ARGS_MAX]; /* args[0] is the type ("X25519", "scrypt") */
    size_t nargs;
    unsigned char body[VKS_AGE_BODY_MAX];       /* decoded (wrapped keys: not secret)        */
    size_t body_len;
};
struct vks_age_header {
    struct vks_age_stanza stanzas[VKS_AGE_STANZAS_MAX];
    size_t nstanzas;
    size_t mac_covered;            /* bytes the MAC covers: up to and including "---"          */
    size_t len;                    /* header bytes, the MAC line's newline included           */
    unsigned char mac[32];
};
/* Parses the header at the start of buf[0..n). VKS_E_INVALID_INPUT with a message naming the line
 * and what is wrong: not an age file, an armored one, a truncated or oversized header, a bad
 * stanza argument, non-canonical base64, a body line over 64 columns, no stanza, a bad MAC line.
 * Heavy struct (~140 KiB): allocate it. Pure, reentrant. */
vks_status vks_age_header_parse(const unsigned char *buf, size_t n, struct vks_age_header *h,
                                struct vks_err *err);
/* True when the argument equals lit. */
bool vks_age_arg_is(const unsigned char *buf, const struct vks_age_span *a, const char *lit);

/* ---------------------------------------------------------------- keys */

struct vks_age_recipient {
    unsigned char pub[VKS_AGE_KEY_LEN];
};
/* "age1..." (Bech32, one case) -> X25519 public key. VKS_E_INVALID_INPUT naming `field`. */
vks_status vks_age_recipient_parse(const char *s, size_t n, const char *field, struct vks_age_recipient *out,
                                   struct vks_err *err);
/* out: VKS_AGE_RECIPIENT_LEN + 1 bytes, NUL-terminated. */
void vks_age_recipient_encode(const struct vks_age_recipient *r, char *out);
/* A recipients file's text (age -R): one "age1..." per line; blank lines and '#' comments skipped.
 * Appends to out[*n..max); errors name `field` and the line. */
vks_status vks_age_recipients_parse(const char *text, size_t len, const char *field,
                                    struct vks_age_recipient *out, size_t max, size_t *n, struct vks_err *err);

/* Identities: X25519 private keys in arena slots. Owned by the caller: vks_age_identities_free. */
struct vks_age_identities {
    vks_secret keys[VKS_AGE_IDENTITIES_MAX];
    size_t n;
};
/* An identity file's text (age-keygen's output): "AGE-SECRET-KEY-1..." lines, blank lines and
 * '#' comments skipped; at least one identity. Errors name `field` and the line, never its text. */
vks_status vks_age_identities_parse(const unsigned char *text, size_t len, const char *field,
                                    struct vks_age_identities *out, struct vks_err *err);
void vks_age_identities_free(struct vks_age_identities *ids);
/* A new X25519 identity (for tests and tools): key into a fresh slot, its recipient in *pub. */
vks_status vks_age_keygen(vks_secret *key, struct vks_age_recipient *pub, struct vks_err *err);
/* The recipient of an identity key (32 bytes). */
vks_status vks_age_identity_recipient(const vks_secret *key, struct vks_age_recipient *pub, struct vks_err *err);
/* "AGE-SECRET-KEY-1..." of key into a fresh slot (caller frees). */
vks_status vks_age_identity_encode(const vks_secret *key, vks_secret *out, struct vks_err *err);

/* ---------------------------------------------------------------- sealing (streaming) */

/* Receives the file's bytes in order; returns VKS_OK or a failure (with err set) that stops the
 * writer. The bytes are ciphertext or header: no secret. */
typedef vks_status (*vks_age_sink)(void *arg, const unsigned char *p, size_t n, struct vks_err *err);

struct vks_age_writer;
/*
 * Starts a file sealed to the recipients r[0..nr) (1..VKS_AGE_RECIPIENTS_MAX), or, when nr is 0,
 * to passphrase (1..1024 bytes) with scrypt work factor logn (0: VKS_AGE_SCRYPT_LOGN; 1..30). The
 * header and the payload nonce go to the sink at once. *out is owned by the caller
 * (vks_age_writer_free, which wipes). The passphrase is borrowed for the call only.
 */
vks_status vks_age_writer_new(const struct vks_age_recipient *r, size_t nr, const vks_secret *passphrase, int logn,
                              vks_age_sink sink, void *arg, struct vks_age_writer **out, struct vks_err *err);
/* Appends plaintext; full chunks are encrypted and sunk once more data follows them. */
vks_status vks_age_writer_write(struct vks_age_writer *w, const void *p, size_t n, struct vks_err *err);
/* Encrypts and sinks the last chunk (flagged final). After a failure, or after finish, the writer
 * only accepts vks_age_writer_free. */
vks_status vks_age_writer_finish(struct vks_age_writer *w, struct vks_err *err);
void vks_age_writer_free(struct vks_age_writer *w);

/* ---------------------------------------------------------------- opening (bounded, in memory) */

struct vks_age_key {
    const struct vks_age_identities *ids; /* for X25519 stanzas, or NULL                       */
    const vks_secret *passphrase;         /* for an scrypt stanza, or NULL                     */
    int max_logn;                         /* 0: VKS_AGE_SCRYPT_LOGN_MAX                        */
};
/*
 * Opens the age file buf[0..n) into *out, a fresh vks_scratch the caller closes (wiped). Nothing
 * is returned unless the header MAC and every chunk authenticate and the file ends exactly after
 * the final chunk. Errors: VKS_E_INVALID_INPUT (not an age file, malformed header or stanza, the
 * wrong kind of key: passphrase for a recipient file or the reverse, work factor above max_logn),
 * VKS_E_DECRYPT_FAILED (no identity matches, wrong passphrase, header MAC mismatch, a chunk that
 * does not authenticate: modified or truncated; the message says which), VKS_E_NOMEM,
 * VKS_E_LOCKED_MEMORY.
 */
vks_status vks_age_open(const unsigned char *buf, size_t n, const struct vks_age_key *key, vks_scratch *out,
                        struct vks_err *err);

/* For tests of the bounded in-memory helpers: seals p[0..n) into a malloc'd buffer (*file, *flen;
 * caller frees; ciphertext, no secret). */
vks_status vks_age_seal_buffer(const struct vks_age_recipient *r, size_t nr, const vks_secret *passphrase, int logn,
                               const void *p, size_t n, unsigned char **file, size_t *flen, struct vks_err *err);

#endif
