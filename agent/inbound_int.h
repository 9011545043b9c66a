/*
 * vks-agent inbound internals shared by agent/inbound.c (verification threads, open/close, HTTP)
 * and agent/inbound_conn.c (unix-socket connections of the SASL and policy protocols). Loop-thread
 * objects unless said otherwise.
 */
#ifndef VKS_AGENT_INBOUND_INT_H
#define VKS_AGENT_INBOUND_INT_H

#include <stdint.h>

#include "inbound.h"
#include "vks_inbound.h"

enum in_kind { IN_SASL = 0, IN_POLICY = 1, IN_HTTP = 2 };

#define IN_REQS 4 /* SASL requests one connection may have open (Postfix uses one at a time) */

struct in_req {                        /* a SASL request waiting for a CONT                      */
    bool used;
    unsigned long id;
    enum ag_sasl_mech mech;
    int stage;                         /* PLAIN: 1 = response wanted; LOGIN: 1 user, 2 password   */
    char user[256], rip[64];
};

struct in_conn {
    uint64_t id;
    int fd;
    enum in_kind kind;
    struct ag_peer peer;
    struct event *rev, *wev, *tev;
    vks_secret in;                     /* input: an arena slot, taken while bytes are buffered   */
    size_t inlen;
    char *out;                         /* output (never a secret): heap                          */
    size_t outlen, outoff;
    int64_t last_ms, partial_ms;       /* last activity; when the buffered partial line began    */
    int64_t accept_ms;                 /* SASL: VERSION is due within read_timeout of this       */
    unsigned pending;                  /* jobs in flight (at most one: lines wait meanwhile)     */
    bool dead, closing, versioned;
    struct in_req req[IN_REQS];
    struct ag_policy_req pol;
    struct in_conn *prev, *next;
};

struct in_job {
    struct in_job *next;
    enum in_kind kind;
    struct in_conn *conn;              /* IN_SASL / IN_POLICY                                    */
    void *http;                        /* IN_HTTP: the evhttp request                            */
    unsigned long id;                  /* SASL request id                                        */
    char user[256], rip[64], sender[512];
    bool check_sender;                 /* IN_HTTP: also the sender's domain                       */
    vks_secret pw;                     /* (secret) wiped by the worker                            */
    int64_t queued_ms;
    struct vks_inbound_answer ans, sans;
};

/* inbound.c */
extern const struct ag_inbound_conf *in_conf;
int64_t in_now_ms(void);
/* Queues a job for the verification threads (takes ownership). */
void in_submit(struct in_job *j);
/* inbound_conn.c */
int in_conn_open(struct event_base *base, const struct ag_inbound_conf *c, char *err, size_t n);
void in_conn_stop_listening(void);
void in_conn_close_all(void);
size_t in_conn_count(void);
/* A finished SASL/policy job: reply, release (loop thread). */
void in_conn_job_done(struct in_job *j);
/* Closes the connection (why != NULL: logged); freed once no job and no caller needs it. */
void in_conn_close(struct in_conn *c, const char *why);
/* Queues a reply line (never a secret), bounded; may close the connection. */
void in_reply(struct in_conn *c, const char *s);
/* inbound_proto.c: one SASL line, a complete policy request, and the replies to finished jobs. */
void in_sasl_line(struct in_conn *c, const char *line, size_t len);
void in_policy_request(struct in_conn *c);
void in_sasl_done(struct in_conn *c, struct in_job *j);
void in_policy_done(struct in_conn *c, struct in_job *j);

#endif
