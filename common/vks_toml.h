/*
 * vks_toml: a small C API over toml++ (Debian's libtomlplusplus-dev, header-only), shared by the
 * policy host (host/toml.cpp turns the tree into Lua tables) and vks-agent (agent/conf.c reads
 * its configuration). Built into $(BUILD)/libvkstoml.a; callers link it with the C++ runtime.
 *
 * vks_toml_parse() parses a whole document into an immutable tree of plain C values. Every node
 * carries the line and column where it starts, so that configuration errors can name file, line
 * and key. Tables keep toml++'s order (sorted by key). Dates and times are kept as their TOML
 * text (type VKS_TOML_DATETIME). Nesting deeper than VKS_TOML_MAX_DEPTH is refused.
 *
 * Ownership: the tree returned in *out belongs to the caller and is released with vks_toml_free
 * (NULL is fine). Every string in it is a NUL-terminated heap copy (strings may also hold NUL
 * bytes: use len). Nothing in the tree points into `text`.
 * Thread-safety: reentrant; a tree is read-only after parse and may be read from any thread.
 * Secrets: the parser keeps no copy of `text` beyond the tree; configuration files read through
 * it must not hold secrets (the agent names files instead), because the tree is ordinary heap.
 */
#ifndef VKS_TOML_H
#define VKS_TOML_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VKS_TOML_MAX_DEPTH 64

enum vks_toml_type {
    VKS_TOML_TABLE = 0,
    VKS_TOML_ARRAY,
    VKS_TOML_STRING,
    VKS_TOML_INTEGER,
    VKS_TOML_FLOAT,
    VKS_TOML_BOOL,
    VKS_TOML_DATETIME /* date, time or date-time: `str` holds its TOML text */
};

struct vks_toml_node {
    enum vks_toml_type type;
    int line, column;            /* where the value starts (1-based; 0 when unknown)           */
    char *key;                   /* the key in the parent table; NULL for array elements/root */
    int key_line;                /* where the key is written (0 when unknown)                 */
    char *str;                   /* STRING, DATETIME                                          */
    size_t len;
    long long ival;              /* INTEGER                                                   */
    double dval;                 /* FLOAT                                                     */
    bool bval;                   /* BOOL                                                      */
    struct vks_toml_node *items; /* TABLE: members; ARRAY: elements                           */
    size_t n;
};

/*
 * Parses text[0..len). On success returns 0 and *out is the root table. On failure returns -1,
 * *out is NULL and err holds "source:line:col: message" (always NUL-terminated, truncated).
 */
int vks_toml_parse(const char *text, size_t len, const char *source, struct vks_toml_node **out,
                   char *err, size_t errlen);

/* Releases a tree (NULL is fine). */
void vks_toml_free(struct vks_toml_node *root);

/* The member `key` of a TABLE node, or NULL (also when t is NULL or not a table). */
const struct vks_toml_node *vks_toml_get(const struct vks_toml_node *t, const char *key);

/* "table", "array", "string", "integer", "float", "boolean", "datetime". */
const char *vks_toml_type_name(enum vks_toml_type t);

#ifdef __cplusplus
}
#endif

#endif
