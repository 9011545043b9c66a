/*
 * vks_smtp: a small SMTP client that proves a relay credential works (issue 12's rotation test
 * step, and vks-policy's smtp.check_auth): connect, greeting, EHLO, STARTTLS (OpenSSL), EHLO again,
 * AUTH PLAIN, QUIT. No message is ever sent.
 *
 * STATUS: contract written by the lead; implemented on branch `smtp` (moved out of host/smtp.c);
 * design notes in docs/internals/smtp.md.
 *
 * TLS modes follow KumoMTA: OPPORTUNISTIC (STARTTLS when offered; an invalid certificate fails),
 * OPPORTUNISTIC_INSECURE, REQUIRED, REQUIRED_INSECURE, DISABLED. AUTH PLAIN is refused without TLS
 * unless allow_without_tls, and over TLS whose certificate was not validated unless
 * allow_invalid_cert (KumoMTA's two checks).
 *
 * Secrets: the password is read from a vks_secret arena slot; "\0user\0password" and its base64
 * form are built in one vks_scratch buffer (guard pages, mlock, MADV_DONTDUMP), sent with one write
 * and wiped (vks_scratch_close). The transcript and every error show "AUTH PLAIN <redacted>",
 * never the password; reply text and errors are made printable ('?' for control bytes).
 *
 * peer_ok: called once connected, with the peer's address, BEFORE anything is sent or read;
 * returning false closes that connection (the next resolved address, if any, is tried and asked in
 * turn); when no address is accepted the session stops at stage "restrict" with VKS_E_RESTRICTED
 * and peer_ok's `why` in the error (the credential's allowed_hosts, checked on the address actually
 * connected to, so DNS cannot send a password elsewhere). NULL: no check. result->peer is the
 * numeric address of the accepted connection.
 *
 * Deadline: timeout_ms bounds the whole session (name resolution with getaddrinfo_a, connect,
 * every read and write, the TLS handshake, QUIT): every wait is a poll on what is left of it, so a
 * server that drips bytes cannot stretch it. A name lookup glibc cannot cancel at the deadline is
 * abandoned to its resolver thread (its small request block is then never freed).
 *
 * Thread-safety: reentrant; one call per session, no shared state (OpenSSL 3 is thread-safe; the
 * scratch buffer comes from vks_secmem, safe from any thread). peer_ok is called on the calling
 * thread. A peer that goes away mid-write never kills the caller: SIGPIPE is blocked in the calling
 * thread for the session and a SIGPIPE it raised is consumed before the mask is restored.
 * Ownership: opts, password are borrowed for the call; result is caller-owned; result->transcript
 * is heap (<= 32 KiB, free with vks_smtp_result_free; NULL when the allocation failed or stage is
 * "options"). vks_smtp_result_free: frees the transcript, idempotent, NULL-safe.
 */
#ifndef VKS_SMTP_H
#define VKS_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "vks_error.h"
#include "vks_secmem.h"

enum vks_smtp_tls {
    VKS_SMTP_TLS_OPPORTUNISTIC,
    VKS_SMTP_TLS_OPPORTUNISTIC_INSECURE,
    VKS_SMTP_TLS_REQUIRED,
    VKS_SMTP_TLS_REQUIRED_INSECURE,
    VKS_SMTP_TLS_DISABLED,
};

struct vks_smtp_opts {
    const char *host;              /* name or IP literal                                        */
    int port;                      /* 1..65535                                                  */
    const char *ehlo_name;         /* NULL: "localhost"                                         */
    enum vks_smtp_tls tls;
    const char *username;
    size_t username_len;           /* <= 1024, no NUL                                          */
    const char *cafile;            /* NULL: the system's CAs                                    */
    bool allow_without_tls, allow_invalid_cert;
    int timeout_ms;                /* whole session; < 1 means 1                                */
    bool (*peer_ok)(const struct sockaddr *sa, socklen_t len, void *arg, char *why, size_t whyn);
    void *peer_ok_arg;
};

struct vks_smtp_result {
    bool ok;                       /* 235 to AUTH PLAIN                                         */
    const char *stage;             /* "options", "connect", "restrict", "greeting", "ehlo",
                                      "starttls", "tls", "policy" (our own TLS / username checks
                                      refused to send the credential), "auth" (also on success):
                                      where it stopped (static string)                          */
    int code;                      /* the last SMTP reply code, 0 if none                       */
    char reply[2048];              /* the last reply's text (the server's, never ours)          */
    char error[512];               /* why it is not ok (also a server refusal), "" when ok      */
    bool tls, tls_verified, auth_attempted;
    char tls_version[32];
    char verify_error[160];
    char peer[64];                 /* the address connected to ("192.0.2.1" / "2001:db8::1")   */
    char *transcript;              /* heap, "C: ..."/"S: ..." lines, AUTH redacted; may be NULL */
};

/*
 * Runs one session. result is always initialised (stage, error); err gets the same message.
 *   VKS_OK                 the server answered every step with a well-formed reply: check
 *                          result->ok (235). A server refusal (greeting not 220, EHLO or STARTTLS
 *                          refused, AUTH 4xx/5xx such as 535) is VKS_OK with ok=false and its code.
 *   VKS_E_INVALID_INPUT    bad opts, stage "options", nothing connected (host, port 1..65535,
 *                          ehlo_name 1..255 printable without spaces, tls, username <= 1024 bytes
 *                          without NUL, password <= VKS_SECRET_MAX without NUL; the field named);
 *                          or no username, stage "policy" (the session ran up to AUTH).
 *   VKS_E_RESTRICTED       peer_ok refused every address, stage "restrict".
 *   VKS_E_UNAVAILABLE      resolution, connect, reset, or closed between replies.
 *   VKS_E_TIMEOUT          the session deadline passed.
 *   VKS_E_TLS              handshake failure; certificate not valid (Opportunistic, Required);
 *                          TLS required but STARTTLS not offered; stage "policy": KumoMTA's two
 *                          checks refused to send the credential.
 *   VKS_E_BAD_RESPONSE     a malformed reply (no "DDD" code, codes differing within one reply),
 *                          a line over 4096 bytes, more than 200 lines, a connection closed in the
 *                          middle of a line, or data after the 220 to STARTTLS (injection).
 *   VKS_E_NOMEM / VKS_E_LOCKED_MEMORY   no memory for the scratch buffer of the credential.
 * opts->username == NULL is accepted (the session stops at "policy" before AUTH).
 */
vks_status vks_smtp_check_auth(const struct vks_smtp_opts *opts, const vks_secret *password,
                               struct vks_smtp_result *result, struct vks_err *err);
void vks_smtp_result_free(struct vks_smtp_result *result);

#endif
