/*
 * vks-serve UI: server-rendered HTML pages (every value through sv_html), with the behaviour in
 * /static/app.js (no inline script or style: the CSP forbids both). Pages read through the same
 * core operations as the API (vks_cred_list, vks_cred_show, the audit reader); acts are made by
 * app.js through the API with the CSRF token of the page's <meta name="csrf-token">.
 *   /login  /  /ui/credentials  /ui/new  (here)   /ui/credential?name=N  /ui/audit?...  (ui_cred.c)
 * A page without a live session redirects to /login. Loop thread only.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

#define H(b, s) sv_html((b), (s))
#define P(b, s) evbuffer_add((b), (s), strlen(s))

struct evbuffer *sv_page(struct sv_req *r, const char *title)
{
    struct evbuffer *b = evbuffer_new();
    P(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
         "<link rel=\"icon\" href=\"/static/icon.svg\" type=\"image/svg+xml\">"
         "<link rel=\"stylesheet\" href=\"/static/app.css\">");
    if (r->s) {
        P(b, "<meta name=\"csrf-token\" content=\"");
        H(b, r->s->csrf);
        P(b, "\">");
    }
    P(b, "<title>");
    H(b, title);
    P(b, " · vault-keysource</title><script src=\"/static/app.js\" defer></script></head><body>"
         "<header><a class=\"brand\" href=\"/ui/credentials\">vault-keysource</a>");
    if (r->s) {
        P(b, "<nav aria-label=\"main\"><a href=\"/ui/credentials\">Credentials</a> <a href=\"/ui/new\">New credential</a> "
             "<a href=\"/ui/audit\">Audit</a></nav><span class=\"who\">");
        H(b, r->s->operator_name);
        P(b, " <button type=\"button\" id=\"logout\">Log out</button></span>");
    }
    P(b, "</header><main id=\"main\"><h1>");
    H(b, title);
    P(b, "</h1>");
    return b;
}

void sv_page_end(struct sv_req *r, int code, struct evbuffer *b)
{
    P(b, "</main></body></html>\n");
    sv_send_html(r, code, b);
}

int sv_page_error(struct sv_req *r, struct evbuffer *b, vks_status st, const struct vks_err *e)
{
    (void)r;
    int code = st == VKS_E_PERMISSION_DENIED ? 403 : st == VKS_E_NOT_FOUND ? 404 : st == VKS_E_INVALID_INPUT ? 400 : 502;
    P(b, "<p class=\"error\" role=\"alert\">");
    H(b, code == 403 ? "Permission denied: your Vault policies do not allow this. " : "");
    H(b, e->msg);
    P(b, "</p>");
    return code;
}

static void login_page(struct sv_req *r)
{
    struct evbuffer *b = sv_page(r, "Log in");
    P(b, "<form id=\"login-form\" class=\"card\"><fieldset><legend>Method</legend>"
         "<label><input type=\"radio\" name=\"method\" value=\"userpass\" checked> Username and password</label> "
         "<label><input type=\"radio\" name=\"method\" value=\"token\"> Vault token</label></fieldset>"
         "<div class=\"up\"><label for=\"username\">Username</label><input id=\"username\" name=\"username\" "
         "autocomplete=\"username\" autocapitalize=\"none\"><label for=\"password\">Password</label>"
         "<input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\"></div>"
         "<div class=\"tk\" hidden><label for=\"token\">Vault token</label><input id=\"token\" name=\"token\" "
         "type=\"password\" autocomplete=\"off\"></div>"
         "<button type=\"submit\">Log in</button><p id=\"login-error\" class=\"error\" role=\"alert\"></p></form>"
         "<p class=\"note\">Your own Vault identity is used for every action: Vault's policies decide what you may do.</p>");
    sv_page_end(r, 200, b);
}

static void list_page(struct sv_req *r)
{
    const char *tenant = sv_query(r, "tenant");
    char prefix[VKS_CRED_NAME_MAX + 1];
    const char *base = sv_cfg->prefix ? sv_cfg->prefix : VKS_CRED_DEFAULT_PREFIX;
    struct evbuffer *b = sv_page(r, "Credentials");
    struct vks_err e;
    vks_err_clear(&e);
    if (tenant && vks_cred_check_tenant(tenant, "tenant", &e) != VKS_OK)
        {
            sv_page_end(r, sv_page_error(r, b, VKS_E_INVALID_INPUT, &e), b);
            return;
        }
    snprintf(prefix, sizeof prefix, tenant ? "%s%s/" : "%s", base, tenant ? tenant : "");
    P(b, "<form class=\"filters\" method=\"get\" action=\"/ui/credentials\" role=\"search\">"
         "<label for=\"filter\">Search</label><input id=\"filter\" type=\"search\" placeholder=\"name or username\">"
         "<label for=\"state-filter\">State</label><select id=\"state-filter\"><option value=\"\">any</option>"
         "<option>active</option><option>rotating</option><option>reset</option><option>unmanaged</option>"
         "<option value=\"due\">due or overdue</option></select>"
         "<label for=\"tenant\">Tenant</label><input id=\"tenant\" name=\"tenant\" value=\"");
    H(b, tenant);
    P(b, "\"><button type=\"submit\">Show tenant</button></form>");
    struct vks_cred_ctx ctx;
    struct vks_cred_record *recs = NULL;
    size_t n = 0;
    vks_status st = sv_ctx(r, prefix, &ctx, &e);
    if (st == VKS_OK)
        st = vks_cred_list(&ctx, &recs, &n, &e);
    sv_audit_read(r, "list", st, prefix, NULL);
    if (st != VKS_OK)
        {
            sv_page_end(r, sv_page_error(r, b, st, &e), b);
            return;
        }
    P(b, "<div class=\"scroll\"><table id=\"cred-table\"><thead><tr><th>Name</th><th>Username</th><th>Permissions</th>"
         "<th>Created</th><th>Due</th><th>State</th></tr></thead><tbody>");
    for (size_t i = 0; i < n; i++) {
        json_object *o = sv_record_json(&recs[i], false);
        const char *state = json_object_get_string(json_object_object_get(o, "state"));
        const char *due = json_object_get_string(json_object_object_get(o, "due"));
        const char *ds = json_object_get_string(json_object_object_get(o, "due_status"));
        char full[VKS_CRED_NAME_MAX * 2 + 2];
        snprintf(full, sizeof full, tenant ? "%s/%s" : "%s%s", tenant ? tenant : "", recs[i].name);
        P(b, "<tr data-state=\"");
        H(b, state);
        P(b, "\" data-due=\"");
        H(b, ds ? ds : "");
        P(b, "\" data-search=\"");
        H(b, full);
        P(b, " ");
        H(b, recs[i].username);
        P(b, "\"><td data-label=\"Name\"><a href=\"/ui/credential?");
        if (tenant) {
            P(b, "tenant=");
            H(b, tenant);
            P(b, "&amp;");
        }
        P(b, "name=");
        char *enc = evhttp_encode_uri(recs[i].name);
        H(b, enc);
        free(enc);
        P(b, "\">");
        H(b, full);
        P(b, "</a></td><td data-label=\"Username\">");
        H(b, recs[i].username);
        P(b, "</td><td data-label=\"Permissions\">");
        H(b, json_object_get_string(json_object_object_get(o, "permissions")));
        P(b, "</td><td data-label=\"Created\">");
        H(b, recs[i].created);
        P(b, "</td><td data-label=\"Due\" class=\"due-");
        H(b, ds ? ds : "none");
        P(b, "\">");
        H(b, due ? due : "");
        H(b, ds && strcmp(ds, "ok") ? " (" : "");
        H(b, ds && strcmp(ds, "ok") ? ds : "");
        H(b, ds && strcmp(ds, "ok") ? ")" : "");
        P(b, "</td><td data-label=\"State\"><span class=\"state state-");
        H(b, state);
        P(b, "\">");
        H(b, state);
        P(b, "</span></td></tr>");
        json_object_put(o);
    }
    P(b, "</tbody></table></div>");
    if (n == 0)
        P(b, "<p>No credentials under this prefix.</p>");
    vks_cred_records_free(recs, n);
    sv_page_end(r, 200, b);
}

static void new_page(struct sv_req *r)
{
    struct evbuffer *b = sv_page(r, "New credential");
    P(b, "<form id=\"create-form\" class=\"card\" novalidate>"
         "<label for=\"c-name\">Name</label><input id=\"c-name\" name=\"name\" required placeholder=\"acme/example.com\">"
         "<label for=\"c-username\">SMTP username</label><input id=\"c-username\" name=\"username\" required autocomplete=\"off\">"
         "<fieldset><legend>Recipient domains</legend><label><input type=\"checkbox\" id=\"c-all-domains\"> All domains</label>"
         "<label for=\"c-domains\">Allowed domains (one per line, *.suffix allowed)</label>"
         "<textarea id=\"c-domains\" rows=\"3\"></textarea></fieldset>"
         "<fieldset><legend>Relay addresses</legend><label><input type=\"checkbox\" id=\"c-all-ips\" checked> All IPs</label>"
         "<label for=\"c-ips\">Allowed addresses or CIDR ranges (one per line)</label>"
         "<textarea id=\"c-ips\" rows=\"3\" disabled></textarea></fieldset>"
         "<label for=\"c-owner\">Owner (optional)</label><input id=\"c-owner\" name=\"owner\">"
         "<label for=\"c-tenant\">Tenant (optional: stored under the tenant's own prefix)</label><input id=\"c-tenant\" name=\"tenant\">"
         "<button type=\"submit\">Create</button><p id=\"create-error\" class=\"error\" role=\"alert\"></p></form>"
         "<section id=\"pw-once\" class=\"card secret\" hidden aria-live=\"polite\"><h2>Password (shown once)</h2>"
         "<p>Copy it now. It is not stored anywhere in clear and will not be shown again; a later reveal is audited.</p>"
         "<p><code id=\"pw-value\"></code></p><button type=\"button\" id=\"pw-copy\">Copy</button> "
         "<button type=\"button\" id=\"pw-saved\">I have saved it</button></section>");
    sv_page_end(r, 200, b);
}

void sv_ui(struct sv_req *r)
{
    if (strcmp(r->method, "GET") != 0) {
        sv_security_headers(r->req, true);
        evhttp_send_error(r->req, 405, "Method Not Allowed");
        return;
    }
    if (!strcmp(r->path, "/login"))
        {
            if (r->s) sv_redirect(r, "/ui/credentials"); else login_page(r);
            return;
        }
    if (!r->s)
        {
            sv_redirect(r, "/login");
            return;
        }
    if (!strcmp(r->path, "/") || !strcmp(r->path, "/ui/credentials"))
        {
            list_page(r);
            return;
        }
    if (!strcmp(r->path, "/ui/new"))
        {
            new_page(r);
            return;
        }
    if (!strcmp(r->path, "/ui/credential"))
        {
            sv_cred_page(r);
            return;
        }
    if (!strcmp(r->path, "/ui/audit"))
        {
            sv_audit_page(r);
            return;
        }
    struct evbuffer *b = sv_page(r, "Not found");
    sv_page_end(r, 404, b);
}

void sv_static(struct sv_req *r, const char *file)
{
    static const struct { const char *name, *type; } files[] = {
        { "app.js", "text/javascript; charset=utf-8" }, { "app.css", "text/css; charset=utf-8" },
        { "icon.svg", "image/svg+xml" },
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (strcmp(file, files[i].name) != 0)
            continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", sv_cfg->static_dir, file);
        FILE *f = fopen(path, "re");
        if (!f)
            break;
        struct evbuffer *b = evbuffer_new();
        char buf[8192];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            evbuffer_add(b, buf, n);
        fclose(f);
        sv_security_headers(r->req, false);
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type", files[i].type);
        evhttp_send_reply(r->req, 200, "OK", b);
        evbuffer_free(b);
        return;
    }
    sv_security_headers(r->req, true);
    evhttp_send_error(r->req, 404, "Not Found");
}
