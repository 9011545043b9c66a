/* vks-agent's pure parts: netstrings, socketmap and Exim requests, key forms, path templates,
 * Exim escaping, and configuration errors (file, line, key). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "proto.h"

static enum ag_parse ns(const char *s, size_t max, size_t *used, char *payload, const char **why)
{
    const char *p = NULL;
    size_t pl = 0;
    *why = NULL;
    enum ag_parse r = ag_netstring_parse(s, strlen(s), max, used, &p, &pl, why);
    if (r == AG_PARSE_OK) {
        memcpy(payload, p, pl);
        payload[pl] = '\0';
    }
    return r;
}

Test(netstring, complete_partial_and_bad)
{
    size_t used;
    char pl[256];
    const char *why;
    cr_assert_eq(ns("14:sasl 127.0.0.1,", 100, &used, pl, &why), AG_PARSE_OK);
    cr_assert_str_eq(pl, "sasl 127.0.0.1");
    cr_assert_eq(used, 18);
    cr_assert_eq(ns("0:,", 100, &used, pl, &why), AG_PARSE_OK);
    cr_assert_eq(used, 3);
    cr_assert_eq(ns("14:sasl 127.0.0.1,9:sasl", 100, &used, pl, &why), AG_PARSE_OK);
    cr_assert_eq(used, 18, "only the first netstring is consumed");
    /* partial frames: need more */
    cr_assert_eq(ns("", 100, &used, pl, &why), AG_PARSE_MORE);
    cr_assert_eq(ns("14", 100, &used, pl, &why), AG_PARSE_MORE);
    cr_assert_eq(ns("14:sasl", 100, &used, pl, &why), AG_PARSE_MORE);
    cr_assert_eq(ns("14:sasl 127.0.0.1", 100, &used, pl, &why), AG_PARSE_MORE);
    /* errors name the problem */
    cr_assert_eq(ns("14:sasl 127.0.0.1;", 100, &used, pl, &why), AG_PARSE_ERROR);
    cr_assert(strstr(why, "','"));
    cr_assert_eq(ns("x:", 100, &used, pl, &why), AG_PARSE_ERROR);
    cr_assert_eq(ns(":abc,", 100, &used, pl, &why), AG_PARSE_ERROR);
    cr_assert_eq(ns("-1:", 100, &used, pl, &why), AG_PARSE_ERROR);
    cr_assert_eq(ns("01:a,", 100, &used, pl, &why), AG_PARSE_ERROR, "leading zeros are refused");
    cr_assert_eq(ns("101:", 100, &used, pl, &why), AG_PARSE_ERROR);
    cr_assert(strstr(why, "limit"));
    cr_assert_eq(ns("99999999999999999999:", 100, &used, pl, &why), AG_PARSE_ERROR, "no overflow");
    cr_assert_eq(ns("100", 100, &used, pl, &why), AG_PARSE_MORE, "at the limit: still fine");
}

Test(netstring, replies)
{
    char out[64];
    cr_assert_eq(ag_netstring_reply(out, sizeof out, "NOTFOUND", ""), strlen("9:NOTFOUND ,"));
    cr_assert_str_eq(out, "9:NOTFOUND ,");
    ag_netstring_reply(out, sizeof out, "TEMP", "a\nb");
    cr_assert_str_eq(out, "8:TEMP a?b,", "control bytes in a reason are replaced");
    cr_assert_eq(ag_netstring_reply(out, 5, "PERM", "long reason"), 0, "too small: nothing");
}

Test(socketmap, split)
{
    const char *n, *k;
    size_t nl, kl;
    cr_assert(ag_socketmap_split("sasl [h]:25", 11, &n, &nl, &k, &kl));
    cr_assert_eq(nl, 4);
    cr_assert_eq(kl, 6);
    cr_assert(ag_socketmap_split("sasl ", 5, &n, &nl, &k, &kl));
    cr_assert_eq(kl, 0, "empty key: the caller answers NOTFOUND");
    cr_assert_not(ag_socketmap_split("sasl", 4, &n, &nl, &k, &kl));
    cr_assert_not(ag_socketmap_split(" key", 4, &n, &nl, &k, &kl));
    cr_assert_not(ag_socketmap_split("sasl a\nb", 8, &n, &nl, &k, &kl));
    cr_assert_not(ag_socketmap_split("sasl a\0b", 8, &n, &nl, &k, &kl));
}

Test(exim, requests)
{
    char item[8];
    const char *h, *why;
    size_t hl;
    cr_assert(ag_exim_request("plain relay.example\n", 20, item, &h, &hl, &why));
    cr_assert_str_eq(item, "plain");
    cr_assert_eq(hl, 13);
    cr_assert(ag_exim_request("user 127.0.0.1", 14, item, &h, &hl, &why));
    cr_assert(ag_exim_request("pass h\r\n", 8, item, &h, &hl, &why));
    cr_assert_eq(hl, 1);
    cr_assert_not(ag_exim_request("size h", 6, item, &h, &hl, &why));
    cr_assert_not(ag_exim_request("pass", 4, item, &h, &hl, &why));
    cr_assert_not(ag_exim_request("pass ", 5, item, &h, &hl, &why));
    cr_assert_not(ag_exim_request("pass a b", 8, item, &h, &hl, &why));
    cr_assert_not(ag_exim_request("users h", 7, item, &h, &hl, &why));
}

Test(exim, escaping)
{
    unsigned char out[32];
    long n = ag_exim_escape((const unsigned char *)"a^b^^", 5, out, sizeof out);
    cr_assert_eq(n, 8);
    cr_assert(memcmp(out, "a^^b^^^^", 8) == 0);
    cr_assert_eq(ag_exim_escape((const unsigned char *)"a\nb", 3, out, sizeof out), -1);
    cr_assert_eq(ag_exim_escape((const unsigned char *)"a\0b", 3, out, sizeof out), -1);
    cr_assert_eq(ag_exim_escape((const unsigned char *)"^^^^", 4, out, 7), -1, "no overflow");
}

static int expand(const char *tmpl, const char *key, char *out, char *host, char *dom)
{
    enum ag_form f;
    if (!ag_key_form(key, &f))
        return -9;
    return ag_expand_path(tmpl, key, f, out, 256, host, 256, dom, 256);
}

Test(keys, forms_and_paths)
{
    char out[256], host[256], dom[256];
    enum ag_form f;
    cr_assert(ag_key_form("127.0.0.1", &f) && f == AG_FORM_HOST);
    cr_assert(ag_key_form("[127.0.0.1]:2525", &f) && f == AG_FORM_NEXTHOP);
    cr_assert(ag_key_form("relay.example:587", &f) && f == AG_FORM_NEXTHOP);
    cr_assert(ag_key_form("user+ext@example.com", &f) && f == AG_FORM_SENDER);
    cr_assert_not(ag_key_form("", &f));
    cr_assert_eq(expand("smtp-auth/{host}", "relay.example", out, host, dom), 1);
    cr_assert_str_eq(out, "smtp-auth/relay.example");
    cr_assert_eq(expand("smtp-auth/{host}", "[relay.example]:587", out, host, dom), 1);
    cr_assert_str_eq(out, "smtp-auth/relay.example");
    cr_assert_str_eq(host, "relay.example");
    cr_assert_eq(expand("smtp-auth/{host}/{port}", "[relay.example]:submission", out, host, dom), 1);
    cr_assert_str_eq(out, "smtp-auth/relay.example/submission");
    cr_assert_eq(expand("smtp-auth/{host}/{port}", "relay.example", out, host, dom), 0, "no port: not ours");
    cr_assert_eq(expand("senders/{domain}/{sender}", "a+b@example.com", out, host, dom), 1);
    cr_assert_str_eq(out, "senders/example.com/a+b@example.com");
    cr_assert_str_eq(dom, "example.com");
    cr_assert_eq(expand("smtp-auth/{host}", "a@example.com", out, host, dom), 0, "sender key, host template");
    /* nothing that could leave the template's place in Vault */
    cr_assert_eq(expand("smtp-auth/{host}", "../x", out, host, dom), 0);
    cr_assert_eq(expand("smtp-auth/{host}", "a/b", out, host, dom), 0);
    cr_assert_eq(expand("smtp-auth/{host}", ".hidden", out, host, dom), 0);
    cr_assert_eq(expand("smtp-auth/{host}", "126.0..01", out, host, dom), 0, "\"..\" inside a name (found by fuzz_agent_proto)");
    cr_assert_eq(expand("smtp-auth/{host}", "[a/b]:25", out, host, dom), 0);
    cr_assert_eq(expand("smtp-auth/{host}", "[x]:2/5", out, host, dom), 0);
    cr_assert_eq(expand("smtp-auth/{key}", "[x]:25", out, host, dom), 0, "{key} must be a safe component");
    cr_assert_eq(expand("smtp-auth/{host}", "[]:25", out, host, dom), 0);
    cr_assert_eq(expand("smtp-auth/{host}", "[x:25", out, host, dom), 0);
    cr_assert_eq(expand("smtp-auth/{host}", "a b", out, host, dom), 0);
    char small[8];
    enum ag_form hf = AG_FORM_HOST;
    cr_assert_eq(ag_expand_path("smtp-auth/{host}", "relay.example", hf, small, sizeof small, host, 256, dom, 256), -1);
}

static char *write_tmp(const char *text)
{
    static int n;
    char *path = malloc(64);
    snprintf(path, 64, "/tmp/vks-agent-test-%d-%d.toml", (int)getpid(), n++);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

Test(conf, errors_name_file_line_and_key)
{
    char *p = write_tmp("[vault]\naddress = \"https://127.0.0.1:8200\"\ntimeout = \"soon\"\n"
                        "[agent]\nworkers = 0\ncolour = \"blue\"\n"
                        "[socketmap]\nsocket = \"relative\"\nmap = \"sasl\"\nallow_users = [\"root\"]\n"
                        "mode = \"0666\"\n"
                        "[socketmap.credential]\nmount = \"secret\"\npath = \"x/{nope}\"\nusername = \"a:b\"\n");
    char err[4096];
    struct ag_conf *c = ag_conf_load(p, err, sizeof err);
    cr_assert_null(c);
    char want[256];
    snprintf(want, sizeof want, "%s:3: vault.timeout:", p);
    cr_assert(strstr(err, want), "%s", err);
    snprintf(want, sizeof want, "%s:5: agent.workers: must be between 1 and 64", p);
    cr_assert(strstr(err, want), "%s", err);
    snprintf(want, sizeof want, "%s:6: agent.colour: unknown key", p);
    cr_assert(strstr(err, want), "%s", err);
    snprintf(want, sizeof want, "%s:8: socketmap.socket:", p);
    cr_assert(strstr(err, want), "%s", err);
    snprintf(want, sizeof want, "%s:11: socketmap.mode:", p);
    cr_assert(strstr(err, want), "%s", err);
    cr_assert(strstr(err, "socketmap.credential.path: unknown placeholder {nope}"), "%s", err);
    cr_assert(strstr(err, "socketmap.credential.username: must not contain ':'"), "%s", err);
    unlink(p);
    free(p);
}

Test(conf, syntax_error_and_missing_file)
{
    char *p = write_tmp("[vault\naddress = 1\n");
    char err[2048];
    cr_assert_null(ag_conf_load(p, err, sizeof err));
    char want[128];
    snprintf(want, sizeof want, "%s:1:", p);
    cr_assert(strstr(err, want), "%s", err);
    unlink(p);
    cr_assert_null(ag_conf_load(p, err, sizeof err));
    cr_assert(strstr(err, "cannot open"), "%s", err);
    free(p);
}

Test(conf, inline_secrets_refused)
{
    char *p = write_tmp("[vault]\naddress = \"https://127.0.0.1:8200\"\ntoken = \"s.SHOULD-NOT-ECHO\"\n"
                        "[exim]\nsocket = \"/tmp/x.sock\"\nallow_users = [0]\n"
                        "[exim.credential]\nmount = \"secret\"\npath = \"p/{host}\"\nusername = \"u\"\n");
    char err[2048];
    cr_assert_null(ag_conf_load(p, err, sizeof err));
    cr_assert(strstr(err, ":3: vault.token: secrets are not written in the config file"), "%s", err);
    cr_assert_null(strstr(err, "SHOULD-NOT-ECHO"));
    unlink(p);
    free(p);
}

Test(conf, valid_minimal)
{
    char *p = write_tmp("[vault]\naddress = \"https://127.0.0.1:8200\"\n"
                        "[exim]\nsocket = \"/tmp/x.sock\"\nallow_users = [0, \"root\"]\n"
                        "[exim.credential]\nmount = \"secret\"\npath = \"p/{host}\"\nusername_field = \"u\"\n");
    char err[2048];
    struct ag_conf *c = ag_conf_load(p, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    cr_assert(c->lst[AG_PROTO_EXIM].enabled);
    cr_assert_not(c->lst[AG_PROTO_SOCKETMAP].enabled);
    cr_assert_eq(c->lst[AG_PROTO_EXIM].mode, 0660);
    cr_assert_str_eq(c->lst[AG_PROTO_EXIM].cred.password_field, "key");
    cr_assert_eq(c->lst[AG_PROTO_EXIM].n_uids, 2);
    cr_assert_eq(c->workers, 4);
    ag_conf_unref(c);
    unlink(p);
    free(p);
}
