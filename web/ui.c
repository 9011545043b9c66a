/*
 * vks-serve UI: server-rendered HTML pages (every value through sv_html), with the behaviour in
 * /static/app.js (no inline script or style: the CSP forbids both). Pages read through the same
 * core operations as the API (vks_cred_list, vks_cred_show, the audit reader); acts are made by
 * app.js through the API with the CSRF token of the page's <meta name="csrf-token">.
 *   /login  /  /ui/credentials  /ui/new  /ui/credential?name=N  /ui/audit?...
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

static struct evbuffer *page(struct sv_req *r, const char *title)
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

static void finish(struct sv_req *r, int code, struct evbuffer *b)
{
    P(b, "</main></body></html>\n");
    sv_send_html(r, code, b);
}

static int err_page(struct sv_req *r, struct evbuffer *b, vks_status st, const struct vks_err *e)
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
    struct evbuffer *b = page(r, "Log in");
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
    finish(r, 200, b);
}

static void list_page(struct sv_req *r)
{
    const char *tenant = sv_query(r, "tenant");
    char prefix[VKS_CRED_NAME_MAX + 1];
    const char *base = sv_cfg->prefix ? sv_cfg->prefix : VKS_CRED_DEFAULT_PREFIX;
    struct evbuffer *b = page(r, "Credentials");
    struct vks_err e;
    vks_err_clear(&e);
    if (tenant && vks_cred_check_tenant(tenant, "tenant", &e) != VKS_OK)
        {
            finish(r, err_page(r, b, VKS_E_INVALID_INPUT, &e), b);
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
            finish(r, err_page(r, b, st, &e), b);
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
    finish(r, 200, b);
}

static void new_page(struct sv_req *r)
{
    struct evbuffer *b = page(r, "New credential");
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
    finish(r, 200, b);
}

static void list_items(struct evbuffer *b, const struct vks_cred_list *l, const char *all)
{
    if (l->all) {
        H(b, all);
        return;
    }
    P(b, "<ul>");
    for (size_t i = 0; i < l->n; i++) {
        P(b, "<li>");
        H(b, l->v[i]);
        P(b, "</li>");
    }
    P(b, "</ul>");
}

static void lines(struct evbuffer *b, const struct vks_cred_list *l)
{
    for (size_t i = 0; !l->all && i < l->n; i++) {
        H(b, l->v[i]);
        P(b, "\n");
    }
}

static void dd(struct evbuffer *b, const char *k, const char *v)
{
    P(b, "<dt>");
    H(b, k);
    P(b, "</dt><dd>");
    H(b, v && *v ? v : "—");
    P(b, "</dd>");
}

static void events_table(struct evbuffer *b, json_object *ev)
{
    P(b, "<div class=\"scroll\"><table class=\"events\"><thead><tr><th>Time</th><th>Event</th><th>Result</th>"
         "<th>Operator</th><th>From</th><th>Reason / detail</th><th>Line</th></tr></thead><tbody>");
    for (size_t i = 0; i < json_object_array_length(ev); i++) {
        json_object *e = json_object_array_get_idx(ev, i);
        const char *k[] = { "ts", "type", "result", "operator", "client_addr", "reason" };
        const char *lab[] = { "Time", "Event", "Result", "Operator", "From", "Reason / detail" };
        P(b, "<tr>");
        for (size_t j = 0; j < 6; j++) {
            const char *v = json_object_get_string(json_object_object_get(e, k[j]));
            if (j == 5 && !v)
                v = json_object_get_string(json_object_object_get(e, "detail"));
            P(b, "<td data-label=\"");
            P(b, lab[j]);
            P(b, "\">");
            H(b, v ? v : "");
            P(b, "</td>");
        }
        P(b, "<td data-label=\"Line\">");
        char ln[48];
        snprintf(ln, sizeof ln, "%lld%s", (long long)json_object_get_int64(json_object_object_get(e, "line")),
                 json_object_get_boolean(json_object_object_get(e, "line_verified")) ? " ✓" : " ✗");
        H(b, ln);
        P(b, "</td></tr>");
    }
    P(b, "</tbody></table></div>");
}

static void cred_page(struct sv_req *r)
{
    const char *name = sv_query(r, "name");
    struct evbuffer *b = page(r, name ? name : "Credential");
    struct vks_err e;
    vks_err_clear(&e);
    struct vks_cred_ctx ctx;
    struct vks_cred_record rec;
    memset(&rec, 0, sizeof rec);
    const char *tenant = sv_query(r, "tenant");
    char prefix[VKS_CRED_NAME_MAX + 1];
    snprintf(prefix, sizeof prefix, "%s%s%s", sv_cfg->prefix ? sv_cfg->prefix : VKS_CRED_DEFAULT_PREFIX,
             tenant ? tenant : "", tenant ? "/" : "");
    vks_status st = !name ? vks_err_set(&e, VKS_E_INVALID_INPUT, "no credential named (?name=)")
                    : tenant ? vks_cred_check_tenant(tenant, "tenant", &e) : VKS_OK;
    if (st == VKS_OK)
        st = sv_ctx(r, prefix, &ctx, &e);
    char vpath[512];
    snprintf(vpath, sizeof vpath, "%s%s", prefix, name ? name : "");
    if (st == VKS_OK)
        st = vks_cred_show(&ctx, name, &rec, &e);
    if (name)
        sv_audit_read(r, "view", st, vpath, rec.username);
    if (st != VKS_OK) {
        vks_cred_record_free(&rec);
        {
            finish(r, err_page(r, b, st, &e), b);
            return;
        }
    }
    json_object *o = sv_record_json(&rec, true);
    char fp[33] = "";
    struct vks_err fe;
    bool has_fp = vks_cred_fingerprint(&ctx, name, fp, &fe) == VKS_OK;
    P(b, "<div class=\"grid\"><section class=\"card\"><h2>Details</h2><dl>");
    dd(b, "Username", rec.username);
    P(b, "<dt>Password</dt><dd><span class=\"masked\" aria-label=\"password hidden\">••••••••••••</span></dd>");
    dd(b, "Fingerprint", has_fp ? fp : "not shown (this role may not read the data)");
    dd(b, "State", json_object_get_string(json_object_object_get(o, "state")));
    dd(b, "Permissions", json_object_get_string(json_object_object_get(o, "permissions")));
    dd(b, "Created", rec.created);
    dd(b, "Last rotated", rec.rotated);
    dd(b, "Due", json_object_get_string(json_object_object_get(o, "due")));
    dd(b, "Owner", rec.owner);
    dd(b, "Tenant", rec.tenant);
    P(b, "<dt>Domains</dt><dd>");
    list_items(b, &rec.restrictions.domains, "All domains");
    P(b, "</dd><dt>IPs</dt><dd>");
    list_items(b, &rec.restrictions.hosts, "All IPs");
    P(b, "</dd></dl></section>");
    /* reveal */
    P(b, "<section class=\"card\"><h2>Reveal</h2><form id=\"reveal-form\" data-tenant=\"");
    H(b, tenant);
    P(b, "\" data-name=\"");
    H(b, name);
    P(b, "\"><label for=\"reason\">Reason (required, audited)</label><input id=\"reason\" name=\"reason\" required "
         "maxlength=\"256\">");
    if (sv_stepup_needed(r->s, r->now))
        P(b, "<label for=\"totp\">One-time code (TOTP)</label><input id=\"totp\" inputmode=\"numeric\" "
             "autocomplete=\"one-time-code\" pattern=\"[0-9]{6}\" maxlength=\"6\" required>");
    P(b, "<button type=\"submit\">Reveal</button>"
         "<p id=\"reveal-error\" class=\"error\" role=\"alert\"></p></form>"
         "<div id=\"revealed\" class=\"secret\" hidden aria-live=\"polite\"><code id=\"revealed-value\"></code> "
         "<button type=\"button\" id=\"revealed-copy\">Copy</button> <span id=\"revealed-timer\"></span></div></section>");
    /* restrictions */
    P(b, "<section class=\"card\"><h2>Restrictions</h2><form id=\"restrict-form\" data-tenant=\"");
    H(b, tenant);
    P(b, "\" data-name=\"");
    H(b, name);
    P(b, "\"><label><input type=\"checkbox\" id=\"r-all-domains\"");
    P(b, rec.restrictions.domains.all ? " checked" : "");
    P(b, "> All domains</label><label for=\"r-domains\">Domains</label><textarea id=\"r-domains\" rows=\"3\">");
    lines(b, &rec.restrictions.domains);
    P(b, "</textarea><label><input type=\"checkbox\" id=\"r-all-ips\"");
    P(b, rec.restrictions.hosts.all ? " checked" : "");
    P(b, "> All IPs</label><label for=\"r-ips\">Addresses or CIDR ranges</label><textarea id=\"r-ips\" rows=\"3\">");
    lines(b, &rec.restrictions.hosts);
    P(b, "</textarea><button type=\"submit\">Save restrictions</button><p id=\"restrict-msg\" role=\"status\"></p></form></section>");
    /* rotation: the four steps of vks cred rotate, shown live (app.js polls the job) */
    P(b, "<section class=\"card\"><h2>Rotate</h2><form id=\"rotate-form\" data-tenant=\"");
    H(b, tenant);
    P(b, "\" data-name=\"");
    H(b, name);
    P(b, "\"><p>");
    H(b, rec.relay[0] ? "New password, set by the hook, tested against the relay " : "No relay stored: rotation needs one.");
    H(b, rec.relay);
    P(b, "</p><ol id=\"rotate-steps\" class=\"steps\"><li data-step=\"claim\">claim</li><li data-step=\"create\">create</li>"
         "<li data-step=\"set\">set</li><li data-step=\"test\">test</li><li data-step=\"finish\">finish</li></ol>"
         "<button type=\"submit\" id=\"rotate-btn\">Rotate now</button> ");
    if (!strcmp(rec.state, "rotating"))
        P(b, "<button type=\"button\" id=\"rotate-resume\">Resume</button> <button type=\"button\" id=\"rotate-abort\">Abort</button>");
    P(b, "<p id=\"rotate-msg\" role=\"status\" aria-live=\"polite\"></p></form></section>");
    /* versions */
    P(b, "<section class=\"card\"><h2>Versions and rotation history</h2><table><thead><tr><th>Version</th><th>Created</th>"
         "<th>Deleted</th></tr></thead><tbody>");
    for (size_t i = 0; i < rec.nversions; i++) {
        char v[32];
        snprintf(v, sizeof v, "%lld%s", (long long)rec.versions[i].version,
                 rec.versions[i].version == rec.vault_version ? " (current)" : "");
        P(b, "<tr><td>");
        H(b, v);
        P(b, "</td><td>");
        H(b, rec.versions[i].created);
        P(b, "</td><td>");
        H(b, rec.versions[i].destroyed ? "destroyed" : rec.versions[i].deleted);
        P(b, "</td></tr>");
    }
    P(b, "</tbody></table></section>");
    /* delete */
    P(b, "<section class=\"card danger\"><h2>Delete</h2><form id=\"delete-form\" data-tenant=\"");
    H(b, tenant);
    P(b, "\" data-name=\"");
    H(b, name);
    P(b, "\" data-username=\"");
    H(b, rec.username);
    P(b, "\"><label for=\"confirm\">Type the username <strong>");
    H(b, rec.username);
    P(b, "</strong> to delete every version</label><input id=\"confirm\" autocomplete=\"off\">"
         "<button type=\"submit\" id=\"delete-btn\" disabled>Delete</button><p id=\"delete-error\" class=\"error\" "
         "role=\"alert\"></p></form></section></div>");
    /* audit */
    char path[512], verdict[80];
    snprintf(path, sizeof path, "%s%s", ctx.prefix, name);
    json_object *ev = sv_audit_query(path, NULL, NULL, NULL, NULL, 20, verdict, sizeof verdict);
    P(b, "<section class=\"card\"><h2>Recent audit events</h2><p>Audit chain: <strong class=\"chain\">");
    H(b, verdict);
    P(b, "</strong></p>");
    events_table(b, ev);
    P(b, "</section>");
    json_object_put(ev);
    json_object_put(o);
    vks_cred_record_free(&rec);
    finish(r, 200, b);
}

static void audit_page(struct sv_req *r)
{
    struct evbuffer *b = page(r, "Audit trail");
    const char *k[] = { "credential", "operator", "action", "since", "until" };
    P(b, "<form class=\"filters\" method=\"get\" action=\"/ui/audit\">");
    for (size_t i = 0; i < 5; i++) {
        P(b, "<label for=\"a-");
        P(b, k[i]);
        P(b, "\">");
        P(b, k[i]);
        P(b, "</label><input id=\"a-");
        P(b, k[i]);
        P(b, "\" name=\"");
        P(b, k[i]);
        P(b, "\" value=\"");
        H(b, sv_query(r, k[i]));
        P(b, "\">");
    }
    P(b, "<button type=\"submit\">Filter</button></form>");
    struct vks_cred_ctx ctx;
    struct vks_err e;
    vks_err_clear(&e);
    bool can = false;
    char p[VKS_CRED_NAME_MAX + 160];
    vks_status st = sv_ctx(r, NULL, &ctx, &e);
    snprintf(p, sizeof p, "%s/metadata/%s", ctx.mount, ctx.prefix);
    if (st == VKS_OK)
        st = vks_vault_token_can(r->s->vault, p, "list", &can, &e);
    if (st == VKS_OK && !can)
        st = vks_err_set(&e, VKS_E_PERMISSION_DENIED, "the trail covers every credential under %s", ctx.prefix);
    if (st != VKS_OK)
        {
            finish(r, err_page(r, b, st, &e), b);
            return;
        }
    char path[512], verdict[80];
    const char *cred = sv_query(r, "credential");
    if (cred)
        snprintf(path, sizeof path, "%s%s", ctx.prefix, cred);
    json_object *ev = sv_audit_query(cred ? path : NULL, sv_query(r, "operator"), sv_query(r, "action"),
                                     sv_query(r, "since"), sv_query(r, "until"), 200, verdict, sizeof verdict);
    P(b, "<p>Chain verification: <strong class=\"chain\">");
    H(b, verdict);
    P(b, "</strong></p>");
    events_table(b, ev);
    json_object_put(ev);
    finish(r, 200, b);
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
            cred_page(r);
            return;
        }
    if (!strcmp(r->path, "/ui/audit"))
        {
            audit_page(r);
            return;
        }
    struct evbuffer *b = page(r, "Not found");
    finish(r, 404, b);
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
