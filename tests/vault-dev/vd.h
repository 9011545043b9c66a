/*
 * vault-dev: a Vault-compatible development server for tests, benchmarks and the demo.
 * Not part of the shipped library. Wire rules come from /work/shared/reference/vault-http-api.md;
 * the operator/test contract is docs/vault-dev.md.
 *
 * Threading: libmicrohttpd runs one thread per connection. All server state (one json-c tree,
 * struct vd_state below) is guarded by one mutex, vd_lock, taken for the whole logical handling
 * of a request and released before any I/O or injected latency. Responses are serialized to a
 * malloc'd string while the lock is held, so no json-c object is shared across threads.
 */
#ifndef VD_H
#define VD_H

#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VD_VERSION "1.17.0-dev"
#define VD_MAX_BODY (32u * 1024u * 1024u)
#define VD_DEFAULT_TTL 2764800 /* 768h, Vault's system default and max lease TTL */

/* ---- growable byte buffer (vd_json.c) ---- */
struct vd_buf {
    char *p;
    size_t len, cap;
};
void vd_buf_add(struct vd_buf *b, const void *s, size_t n);
void vd_buf_str(struct vd_buf *b, const char *s);
void vd_buf_fmt(struct vd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vd_buf_free(struct vd_buf *b);

/* ---- Go encoding/json compatible serializer (vd_json.c) ---- */
/* Writes v the way Go's encoding/json writes a map[string]interface{} value: object keys sorted,
 * <, >, & escaped as \u003c etc. NULL writes null. */
void vd_json_write(struct vd_buf *b, struct json_object *v);
void vd_json_string(struct vd_buf *b, const char *s);

/* ---- small helpers (vd_json.c) ---- */
int64_t vd_now_ns(void);                 /* wall clock plus the test clock offset */
void vd_set_clock_offset(int64_t seconds);
int64_t vd_clock_offset(void);
void vd_time_string(int64_t ns, char out[40]); /* RFC 3339 nano, UTC, Go trimming; 0 -> "" */
struct json_object *vd_time_obj(int64_t ns);
void vd_uuid(char out[37]);
void vd_request_id(char out[37]); /* fast, unique, not secret */
void vd_random_b62(char *out, size_t n);  /* n chars + NUL */
/* Go/Vault duration: "1h30m", "20s", "15", integer. Returns 0 on success. */
int vd_parse_duration(struct json_object *v, int64_t *seconds);
void vd_duration_string(int64_t seconds, char out[32]); /* Go time.Duration String(), e.g. "1h0m0s" */
const char *vd_str(struct json_object *o, const char *key); /* string member or NULL */
struct json_object *vd_get(struct json_object *o, const char *key);
int64_t vd_int(struct json_object *o, const char *key, int64_t dflt);
bool vd_bool(struct json_object *o, const char *key, bool dflt);
/* Parse an int from a JSON value that may be a number or a numeric string. 0 ok, -1 bad. */
int vd_as_int(struct json_object *v, int64_t *out);
/* Parse a bool from a JSON value that may be a bool or a "true"/"false" string. */
int vd_as_bool(struct json_object *v, bool *out);
/* A list of strings from an array, or a comma-separated string. Returns a new json array. */
struct json_object *vd_str_list(struct json_object *v);
bool vd_list_has(struct json_object *arr, const char *s);

/* ---- the request as the logical layer sees it ---- */
enum vd_op { VD_OP_READ, VD_OP_LIST, VD_OP_UPDATE, VD_OP_DELETE, VD_OP_PATCH, VD_OP_HEAD };

struct vd_req {
    enum vd_op op;
    const char *http_method;
    char *path;                 /* logical path relative to the namespace, no leading '/'    */
    char *ns;                   /* namespace path, "" (root) or "a/" / "a/b/"                */
    struct json_object *nsobj;  /* namespace entry in the state                              */
    struct json_object *body;   /* parsed body (object) or NULL                              */
    const char *content_type;
    struct MHD_Connection *conn;
    const char *token_id;       /* as sent, or NULL                                          */
    struct json_object *token;  /* token entry once authenticated, or NULL                   */
    bool is_root;               /* token has the root policy                                 */
    int64_t now;                /* ns                                                        */
    char request_id[37];
};

/* ---- the response ---- */
struct vd_resp {
    int status;
    struct vd_buf body;
    const char *content_type;   /* NULL: application/json                                    */
    char *location;             /* 307                                                       */
};

/* Build responses. All copy what they need; data/auth/warnings ownership stays with the caller. */
void vd_reply_error(struct vd_resp *r, int status, const char *msg); /* NULL msg: {"errors":[]} */
void vd_reply_errorf(struct vd_resp *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vd_reply_204(struct vd_resp *r);
/* 200 envelope (Encoder.Encode: trailing newline). */
struct vd_env {
    struct json_object *data;     /* object or NULL                                          */
    struct json_object *auth;     /* HTTPAuth-shaped object (written in its Go field order)  */
    struct json_object *warnings; /* array or NULL                                           */
    int64_t lease_duration;
    const char *mount_type;
};
void vd_reply_env(struct vd_resp *r, const struct vd_req *q, int status, const struct vd_env *e,
                  bool raw);
/* A raw JSON body with a given status (no newline). */
void vd_reply_json(struct vd_resp *r, int status, struct json_object *body);

/* ---- state (vd_state.c) ---- */
struct vd_config {
    const char *root_token;
    const char *state_file;
    const char *standby_of;
    const char *unseal_key;
};
extern pthread_mutex_t vd_lock;
extern struct json_object *vd_state; /* {"namespaces":{...},"tokens":{...},"sealed":bool} */
extern struct vd_config vd_cfg;
void vd_state_init(void);
int vd_state_load(const char *file);
int vd_state_save(const char *file);
void vd_state_dirty(void);           /* mark for saving after this request */
void vd_state_flush_if_dirty(void);
struct json_object *vd_ns_new(const char *path);
struct json_object *vd_ns_get(const char *path);
/* Adds a KV mount; version 1 or 2. Returns the mount entry (owned by the state). */
struct json_object *vd_mount_add(struct json_object *ns, const char *path, const char *type,
                                 int version, const char *description);
/* Longest-prefix mount of path in ns; *mount_path gets the mount key ("secret/"). */
struct json_object *vd_mount_match(struct json_object *ns, const char *path, const char **mount_path);

/* ---- routing (each returns true if it handled the path) ---- */
bool vd_sys_handle(struct vd_req *q, struct vd_resp *r);
bool vd_auth_handle(struct vd_req *q, struct vd_resp *r);
void vd_kv_handle(struct vd_req *q, struct vd_resp *r, struct json_object *mount, const char *mpath);
bool vd_kv_exists(struct vd_req *q, struct json_object *mount, const char *mpath);

/* ---- userpass auth method (vd_userpass.c) ---- */
bool vd_userpass_handle(struct vd_req *q, struct vd_resp *r, struct json_object *mount, const char *mpath,
                        const char *sub);

/* ---- tokens (vd_token.c) ---- */
struct json_object *vd_token_lookup(const char *id, int64_t now); /* valid token or NULL */
struct json_object *vd_token_new(struct json_object *policies, int64_t ttl, bool renewable,
                                 int64_t num_uses, const char *parent, const char *path,
                                 const char *ns, struct json_object *meta, const char *display_name,
                                 int64_t explicit_max_ttl, int64_t period, const char *id);
void vd_token_revoke(const char *id, bool children);
/* Fill HTTPAuth for token t (Go field order), lease_duration as seen at `now` (ns). New object. */
struct json_object *vd_token_auth(struct json_object *t, const char *id, int64_t now);
/* Count one use; revokes the token when its uses run out. */
void vd_token_use(struct vd_req *q);

/* ---- ACL (vd_acl.c) ---- */
/* Parses HCL or JSON policy text into an array of {"path":..,"capabilities":[..]}. NULL + err. */
struct json_object *vd_policy_parse(const char *text, char *err, size_t errlen);
/* Capability check for the token in q on q->path with the given capability name. */
bool vd_acl_allowed(struct vd_req *q, const char *path, const char *cap);
/* any non-deny capability on path or anything under it (ui/mounts preflight) */
bool vd_acl_any_under(struct vd_req *q, const char *path);
extern const char vd_default_policy[];

#endif
