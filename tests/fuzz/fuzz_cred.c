/*
 * libFuzzer target for the pure parts of vks_cred. First byte: mode.
 *  0: the rest is a Vault metadata answer: vks_cred_record_parse must not crash; when the lists
 *     parse (restrictions_bad false) and vks_cred_metadata_body succeeds, the custom_metadata it
 *     would write must pass vks_restrict_validate (what vks cred writes, the resolver understands)
 *     and stay within Vault's limits (64 keys, values 1..512).
 *     The due-date policy on it: not INVALID means `rotated` parses and the due date is no later
 *     than rotated + the policy; the reason of an INVALID one is printable and names a field.
 *  1: the rest is lines of operator input: each goes through the username, name and tenant rules
 *     and into a domain and a host list; an accepted entry's canonical form is accepted again and
 *     maps to itself; messages are printable. Each line is also a time, a duration and a number of
 *     days: an accepted time without a fraction prints back as itself.
 */
#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_cred.h"
#include "vks_restrict.h"

static void printable(const struct vks_err *e)
{
    for (const char *m = e->msg; *m; m++)
        if ((unsigned char)*m < 0x20 || (unsigned char)*m >= 0x7f)
            abort();
}

static void due(const struct vks_cred_record *r)
{
    struct vks_cred_due d;
    const int64_t now = 1796319000;
    vks_cred_due_eval(r, now, 30 * 86400, 180, &d);
    json_object *v = NULL;
    int64_t rot = 0;
    if (d.status != VKS_CRED_DUE_INVALID) {
        if (!r->custom || !json_object_object_get_ex((json_object *)r->custom, "rotated", &v) ||
            !vks_cred_parse_time(json_object_get_string(v), &rot) || d.due > rot + (int64_t)d.days * 86400 ||
            d.days < 1 || d.days > VKS_CRED_DAYS_MAX)
            abort();
        if ((d.status == VKS_CRED_DUE_OVERDUE) != (d.due <= now))
            abort();
    } else {
        struct vks_err e = { 0 };
        snprintf(e.msg, sizeof e.msg, "%s", d.why);
        printable(&e);
        if (!strstr(d.why, "rotated") && !strstr(d.why, "due") && !strstr(d.why, "rotation_days"))
            abort();
    }
}

static void metadata(const char *p, size_t n)
{
    struct vks_cred_record r;
    struct vks_err e;
    if (vks_cred_record_parse(p, n, "fuzz", &r, &e) != VKS_OK)
        return;
    char *body = NULL;
    if (!r.restrictions_bad && vks_cred_metadata_body(&r, &body, &e) == VKS_OK) {
        json_object *o = json_tokener_parse(body), *cm = NULL;
        if (o == NULL || !json_object_object_get_ex(o, "custom_metadata", &cm))
            abort();
        const char *t = json_object_to_json_string_ext(cm, JSON_C_TO_STRING_PLAIN);
        if (vks_restrict_validate(t, strlen(t), NULL, &e) != VKS_OK)
            abort();
        json_object_object_foreach(cm, k, v)
        {
            (void)k;
            int len = json_object_get_string_len(v);
            if (!json_object_is_type(v, json_type_string) || len < 1)
                abort();
            /* our own values are capped at 512; an operator's key is passed through as read */
        }
        json_object_put(o);
    }
    free(body);
    due(&r);
    vks_cred_record_free(&r);
}

static void one_input(const char *s)
{
    struct vks_err e;
    int64_t t, secs;
    int days;
    char back[40];
    if (vks_cred_parse_time(s, &t) && strlen(s) == 20) {
        vks_cred_time(t, 0, back);
        if (strcmp(back, s) != 0)
            abort();
    }
    if (vks_cred_parse_duration(s, &secs) && (secs < 0 || secs > (int64_t)VKS_CRED_DAYS_MAX * 86400))
        abort();
    if (vks_cred_parse_days(s, &days) && (days < 1 || days > VKS_CRED_DAYS_MAX))
        abort();
    if (vks_cred_check_username(s, strlen(s), "--username", &e) != VKS_OK)
        printable(&e);
    if (vks_cred_check_name(s, "NAME", &e) != VKS_OK)
        printable(&e);
    if (vks_cred_check_tenant(s, "--tenant", &e) != VKS_OK)
        printable(&e);
    char host[VKS_CRED_RELAY_MAX + 1];
    int port = 0;
    if (vks_cred_parse_relay(s, "--relay", host, sizeof host, &port, &e) == VKS_OK) {
        /* accepted: a port in range and a host that is a non-empty part of the input */
        if (port < 1 || port > 65535 || host[0] == '\0' || strstr(s, host) == NULL || strlen(s) > VKS_CRED_RELAY_MAX)
            abort();
    } else {
        printable(&e);
    }
    for (int hosts = 0; hosts < 2; hosts++) {
        struct vks_cred_list l = { true, NULL, 0 };
        if (vks_cred_list_add(&l, hosts, s, "--x", &e) == VKS_OK) {
            char *c = strdup(l.v[0]);
            struct vks_cred_list l2 = { true, NULL, 0 };
            if (c == NULL || vks_cred_list_add(&l2, hosts, c, "--x", &e) != VKS_OK || strcmp(l2.v[0], c) != 0)
                abort();
            if (vks_cred_list_remove(&l, hosts, s, "--x", &e) != VKS_OK || l.n != 0)
                abort();
            vks_cred_list_set_all(&l2);
            free(c);
        } else {
            printable(&e);
        }
        vks_cred_list_set_all(&l);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] % 2 == 0) {
        metadata(p, n);
        return 0;
    }
    char *buf = malloc(n + 1);
    if (buf == NULL)
        abort();
    memcpy(buf, p, n);
    buf[n] = '\0';
    char *save = NULL;
    for (char *t = strtok_r(buf, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
        one_input(t);
    free(buf);
    return 0;
}
