/*
 * vks-agent, inbound SMTP credentials (issue 15; docs/inbound.md, docs/internals/agent.md
 * "Inbound"): a Dovecot SASL authentication protocol server (Postfix smtpd_sasl_type = dovecot) and
 * a Postfix policy delegation server (check_policy_service) on unix sockets, both answered by
 * vks_inbound (src/vks_inbound.h).
 *
 *   sasl.c      the Dovecot auth protocol's lines: parse (pure), PLAIN/LOGIN payloads, handshake
 *   policy.c    the policy delegation protocol's attribute lines (pure)
 *   inbound_conn.c   listeners and connections (deadlines, line limits, bounded clients)
 *   inbound_proto.c  the SASL and policy requests on a connection, the replies to finished jobs
 *   inbound.c        verification threads and the vks_inbound object
 *   inbound_http.c   the verify endpoints of the [vault_api] listener (vaultapi.c calls it)
 *
 * Thread-safety: the parsers are pure and reentrant; the connections live on the loop
 * thread only; its worker threads touch only their job and vks_inbound (thread-safe).
 * Secrets: a connection's input buffer (which holds PLAIN/LOGIN responses) is an arena slot, wiped
 * and returned when it is empty; decoded passwords live in arena slots until the worker is done.
 */
#ifndef VKS_AGENT_INBOUND_H
#define VKS_AGENT_INBOUND_H

#include <stdbool.h>
#include <stddef.h>

#include "agent.h"
#include "vks_secmem.h"

/* ---------------------------------------------------------------- sasl.c (pure) */
#define AG_SASL_LINE_MAX 4095   /* one protocol line, LF excluded; +1 = the input buffer (a slot) */
#define AG_SASL_RESP_MAX 1400   /* a decoded PLAIN/LOGIN response: 255 + 1024 + separators        */
#define AG_SASL_ID_MAX 4294967295UL

enum ag_sasl_cmd { AG_SASL_VERSION = 1, AG_SASL_CPID, AG_SASL_AUTH, AG_SASL_CONT };
enum ag_sasl_mech { AG_MECH_NONE = 0, AG_MECH_PLAIN, AG_MECH_LOGIN };

struct ag_sasl_line {
    enum ag_sasl_cmd cmd;
    unsigned long id;           /* AUTH, CONT                                                    */
    unsigned major, minor;      /* VERSION                                                       */
    enum ag_sasl_mech mech;     /* AUTH                                                          */
    bool secured, has_resp;     /* AUTH: "secured", "resp=" present                              */
    char rip[64];               /* AUTH: rip= (client address), "" when absent                   */
    const char *data;           /* AUTH resp= / CONT payload: points into the line (base64)       */
    size_t data_len;
};

/* Parses one line (no LF). 0: *out filled. -1: malformed or unknown; why names the problem and
 * *id_known says whether out->id holds the request id (so the caller can answer FAIL for it). */
int ag_sasl_parse(const char *line, size_t len, struct ag_sasl_line *out, bool *id_known, char *why, size_t wn);
/* Decodes base64 (at most AG_SASL_RESP_MAX bytes decoded) into a new arena slot *out. */
int ag_sasl_b64(const char *b64, size_t n, vks_secret *out, char *why, size_t wn);
/* Splits a decoded PLAIN response authzid NUL authcid NUL password: the authcid (1..255 printable,
 * no NUL) and password offsets in buf; an authzid must be empty or equal the authcid. */
int ag_sasl_plain_split(const vks_secret *buf, size_t *uoff, size_t *ulen, size_t *poff, size_t *plen, char *why,
                        size_t wn);
/* The server's handshake (VERSION, MECH PLAIN/LOGIN, SPID, CUID, COOKIE, DONE). */
size_t ag_sasl_handshake(char *out, size_t n, unsigned long cuid);

/* ---------------------------------------------------------------- policy.c (pure) */
#define AG_POLICY_LINE_MAX 4095
#define AG_POLICY_ATTRS_MAX 256

struct ag_policy_req {
    unsigned nattrs;
    bool bad;                   /* a line was malformed: the request is answered with an error    */
    char why[160];
    char request[32], state[16], sasl_username[256], sender[512], client_address[64];
    bool has_request, has_sasl;
};
/* Feeds one line (no LF). 1: the blank line ended the request; 0: more lines wanted. A malformed
 * line (no '=', empty name, control characters, too many attributes) sets r->bad/why and is
 * otherwise skipped, so that the request still ends at its blank line. */
int ag_policy_feed(struct ag_policy_req *r, const char *line, size_t len);
void ag_policy_reset(struct ag_policy_req *r);

/* ---------------------------------------------------------------- inbound.c */
/* Loop thread: opens the [inbound] listeners and verification threads (no-op when not configured). */
int ag_inbound_open(struct event_base *base, const struct ag_conf *conf, char *err, size_t n);
void ag_inbound_stop_listening(void);
void ag_inbound_close(void);
size_t ag_inbound_connections(void);
size_t ag_inbound_in_flight(void);
/* Appends the inbound counters to a /metrics answer (metrics.c; loop thread). */
struct evbuffer;
void ag_inbound_metrics(struct evbuffer *b);
#endif
