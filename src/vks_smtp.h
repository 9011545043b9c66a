/*
 * vks_smtp: a small SMTP client that proves a relay credential works (issue 12's rotation test
 * step, and vks-policy's smtp.check_auth): connect, greeting, EHLO, STARTTLS (OpenSSL), EHLO again,
 * AUTH PLAIN, QUIT. No message is ever sent.
 *
 * STATUS: contract written by the lead; implemented on branch `smtp` (moved out of host/smtp.c).
 *
 * TLS modes follow KumoMTA: OPPORTUNISTIC (STARTTLS when offered; an invalid certificate fails),
 * OPPORTUNISTIC_INSECURE, REQUIRED, REQUIRED_INSECURE, DISABLED. AUTH PLAIN is refused without TLS
 * unless allow_without_tls, and over TLS whose certificate was not validated unless
 * allow_invalid_cert (KumoMTA's two checks).
 *
 * Secrets: the password is read from a vks_secret arena slot; "\0user\0password" and its base64
 * form are built in locked, non-dumpable memory, sent with one write and wiped. The transcript and
 * every error show "AUTH PLAIN <redacted>", never the password.
 *
 * peer_ok: called once connected, with the peer's address, BEFORE anything is sent; returning
 * false stops the session at stage "restrict" (the credential's allowed_hosts, checked on the
 * address actually connected to, so DNS cannot send a password elsewhere). NULL: no check.
 *
 * Deadline: timeout_ms bounds the whole session (connect, every read and write, TLS handshake).
 *
 * Thread-safety: reentrant; one call per session, no shared state (OpenSSL 3 is thread-safe).
 * Ownership: opts, password are borrowed; result is caller-owned; result->transcript is heap
 * (free with vks_smtp_result_free).
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
    const char *stage;             /* "connect", "restrict", "greeting", "ehlo", "starttls", "tls",
                                      "auth", "quit": where it stopped (static string)          */
    int code;                      /* the last SMTP reply code, 0 if none                       */
    char reply[2048];              /* the last reply's text (the server's, never ours)          */
    char error[512];               /* a local failure, "" otherwise                            */
    bool tls, tls_verified, auth_attempted;
    char tls_version[32];
    char verify_error[160];
    char peer[64];                 /* the address connected to ("192.0.2.1" / "2001:db8::1")   */
    char *transcript;              /* heap, "C: ..."/"S: ..." lines, AUTH redacted; may be NULL */
};

/*
 * Runs one session. Returns VKS_OK when the session ran to an answer (check result->ok: a 535 is
 * VKS_OK with ok=false and code 535); VKS_E_INVALID_INPUT for bad opts (naming the field);
 * VKS_E_UNAVAILABLE (connect, reset), VKS_E_TIMEOUT (deadline), VKS_E_TLS (handshake, certificate),
 * with result->stage and result->error filled as well.
 */
vks_status vks_smtp_check_auth(const struct vks_smtp_opts *opts, const vks_secret *password,
                               struct vks_smtp_result *result, struct vks_err *err);
void vks_smtp_result_free(struct vks_smtp_result *result);

#endif
