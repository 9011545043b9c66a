/*
 * vks_http: the HTTP(S) transport under vks_vault (libcurl). Details: docs/internals/vault.md.
 *
 *  - A pool of curl easy handles ("leases"), each keeping its own keep-alive connection, plus one
 *    share handle for TLS sessions and DNS, so any number of threads can run requests at once and
 *    the 2nd..Nth request on a lease reuses its connection.
 *  - One call = one logical request: retries like Vault's Go client (412, 429, 5xx except 501,
 *    transport errors except TLS and unsupported scheme) with linear jittered backoff, all inside
 *    one absolute deadline (each attempt's CURLOPT_TIMEOUT_MS is the time left); at most one
 *    redirect (301/302/307/308) is followed, and only to the same scheme, host and port: the
 *    token never goes to another authority (https to http is another authority).
 *  - The response body lands in the lease's scratch buffer (vks_scratch: locked when possible,
 *    never realloc'ed, wiped on release), capped at max_response_bytes.
 *  - The X-Vault-Token header line is built in a scratch buffer and handed to curl through list
 *    nodes we own, so libcurl never strdup()s it. (curl still copies it into its own send buffer;
 *    see the docs for what is and is not protected.)
 *
 * Ownership: vks_http_new/free own the pool; a lease returned by vks_http_do belongs to the caller
 * until vks_http_release, which wipes the body and gives the handle back to the pool.
 * Thread-safety: vks_http_do/release/get_stats are safe from any number of threads on one pool;
 * new/free are not concurrent with anything on the same pool. The pure helpers are reentrant.
 */
#ifndef VKS_HTTP_H
#define VKS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vks_error.h"

struct vks_http_config {
    const char *cacert, *capath, *client_cert, *client_key, *tls_server_name; /* NULL = unset */
    bool skip_verify;
    bool allow_http;             /* plain http to a non-loopback host */
    int max_retries;             /* retries after the first attempt                     */
    long min_retry_wait_ms, max_retry_wait_ms;
    size_t max_response_bytes;   /* larger bodies fail with VKS_E_BAD_RESPONSE          */
};

struct vks_http;
struct vks_http_lease;

/* Copies every string of cfg. */
vks_status vks_http_new(const struct vks_http_config *cfg, struct vks_http **out, struct vks_err *err);
void vks_http_free(struct vks_http *h);

struct vks_http_request {
    const char *method;              /* "GET", "POST"; "PATCH" (merge-patch body), "DELETE",
                                        "LIST" for the administrative calls (vks cred)        */
    const char *url;                 /* absolute http(s) URL                                  */
    const char *namespace_;          /* X-Vault-Namespace, NULL/"" = none                     */
    const unsigned char *token;      /* X-Vault-Token bytes (secret), NULL = none             */
    size_t token_len;
    const char *body;                /* POST body (may be secret; never copied by us)         */
    size_t body_len;
    int64_t deadline_ms;             /* absolute, on the vks_http_now_ms() clock              */
    const char *what;                /* e.g. "read of secret/data/x": names it in messages    */
};

struct vks_http_response {
    long status;                     /* final HTTP status                                     */
    int attempts;                    /* requests sent, retries and the redirect included      */
    const char *body;                /* inside the lease; valid until vks_http_release        */
    size_t body_len;
    char final_origin[256];          /* scheme://host:port that answered (after a redirect)  */
};

/*
 * Runs one logical request. VKS_OK means an HTTP answer was received (any status, after retries);
 * then *lease holds the body and must be released. Errors (no usable answer), one code per
 * transport fault: VKS_E_UNAVAILABLE (connection refused/reset, no answer, DNS, a redirect refused:
 * to another scheme/host/port or a second one), VKS_E_TIMEOUT (deadline), VKS_E_TLS (certificate,
 * handshake), VKS_E_BAD_RESPONSE (not HTTP, headers or body over their caps, body cut short,
 * redirect without a usable Location); all of these are transient for the cache. VKS_E_CONFIG
 * (URL refused: scheme, too long, tls_server_name), VKS_E_AUTH_FAILED (token with non-printable
 * bytes), VKS_E_NOMEM. On error *lease is NULL. Messages name req->what and the address.
 */
vks_status vks_http_do(struct vks_http *h, const struct vks_http_request *req,
                       struct vks_http_response *resp, struct vks_http_lease **lease,
                       struct vks_err *err);
void vks_http_release(struct vks_http *h, struct vks_http_lease *lease);

struct vks_http_stats {
    unsigned long requests;          /* HTTP requests sent (attempts)                         */
    unsigned long connects;          /* new connections opened (CURLINFO_NUM_CONNECTS summed) */
    unsigned long retries;
    unsigned long handles;           /* easy handles created                                  */
};
void vks_http_get_stats(struct vks_http *h, struct vks_http_stats *out);

/* Monotonic milliseconds. */
int64_t vks_http_now_ms(void);

/* ---- pure helpers (exposed for tests) ---- */

/* Retry decision like Vault's Go client. curl_code is a CURLcode (0 when an answer arrived). */
bool vks_http_should_retry(int curl_code, long status);

/* Linear jittered backoff: (min + r*(max-min)) * attempt, r in [0,1), attempt 1-based. */
long vks_http_backoff_ms(long min_ms, long max_ms, int attempt, double r);

/* True for 127.0.0.0/8, ::1 (with or without brackets) and "localhost". */
bool vks_http_host_is_loopback(const char *host);

/*
 * Checks a Vault address: http or https, a host, no user info, query or fragment; plain http only
 * to loopback or with allow_http. Writes the normalised origin ("scheme://host[:port][/prefix]",
 * no trailing slash) into out. VKS_E_CONFIG names the address on failure (an address is not
 * secret; user info, if any, is never echoed).
 */
vks_status vks_http_check_address(const char *address, bool allow_http, char *out, size_t cap,
                                   struct vks_err *err);

/*
 * Appends the path p to out (at *len, cap bytes total, NUL-terminated), percent-encoding every
 * byte but unreserved characters and '/'. Fails (false) when p has a "." or ".." segment or a NUL
 * would not fit.
 */
bool vks_http_append_path(char *out, size_t cap, size_t *len, const char *p);

#endif
