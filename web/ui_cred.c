/*
 * vks-serve UI: the credential page (details, reveal, restrictions, rotation, emergency reset,
 * versions, delete, its audit events with the chain verdict) and the audit view. Every value through sv_html; the
 * behaviour is in /static/app.js. Loop thread only.
 */
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

#define H(b, s) sv_html((b), (s))
#define P(b, s) evbuffer_add((b), (s), strlen(s))

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

/* The emergency reset (issue 13; POST .../NAME/reset): reason, optional rotation, the step-up
 * code when one is needed, and the credential's name typed as confirmation (as delete types the
 * username). A credential under a reset says so first. */
static void reset_card(struct sv_req *r, struct evbuffer *b, const char *tenant, const char *name, json_object *o)
{
    const char *rid = json_object_get_string(json_object_object_get(o, "reset_id"));
    const char *at = json_object_get_string(json_object_object_get(o, "reset_at"));
    P(b, "<section class=\"card danger\"><h2>Emergency reset</h2>");
    const char *st = json_object_get_string(json_object_object_get(o, "state"));
    if (rid || (st && !strcmp(st, "reset"))) {
        P(b, "<p id=\"reset-state\" class=\"error\">Under an emergency reset since ");
        H(b, at ? at : "?");
        P(b, " (");
        H(b, rid ? rid : "no reset_id");
        P(b, "): every lookup refuses it (code revoked) until it is rotated.</p>");
    }
    P(b, "<p>Refuses this credential everywhere at once: new lookups fail, running resolvers drop their "
         "cached copy within seconds. Mail using it is deferred until it is rotated.</p>"
         "<form id=\"reset-form\" data-tenant=\"");
    H(b, tenant);
    P(b, "\" data-name=\"");
    H(b, name);
    P(b, "\"><label for=\"reset-reason\">Reason (required, audited)</label><input id=\"reset-reason\" required "
         "maxlength=\"256\"><label><input type=\"checkbox\" id=\"reset-rotate\"> Also rotate now (a new password "
         "ends the reset)</label>");
    if (sv_stepup_needed(r->s, r->now))
        P(b, "<label for=\"reset-totp\">One-time code (TOTP)</label><input id=\"reset-totp\" inputmode=\"numeric\" "
             "autocomplete=\"one-time-code\" pattern=\"[0-9]{6}\" maxlength=\"6\" required>");
    P(b, "<label for=\"reset-confirm\">Type the name <strong>");
    H(b, name);
    P(b, "</strong> to confirm</label><input id=\"reset-confirm\" autocomplete=\"off\">"
         "<button type=\"submit\" id=\"reset-btn\" disabled>Reset now</button>"
         "<p id=\"reset-msg\" role=\"status\" aria-live=\"polite\"></p></form></section>");
}

void sv_cred_page(struct sv_req *r)
{
    const char *name = sv_query(r, "name");
    struct evbuffer *b = sv_page(r, name ? name : "Credential");
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
            sv_page_end(r, sv_page_error(r, b, st, &e), b);
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
    const char *state = json_object_get_string(json_object_object_get(o, "state"));
    state = state ? state : "";
    P(b, "<dt>State</dt><dd><span id=\"state-value\" class=\"state state-");
    H(b, state);
    P(b, "\">");
    H(b, state);
    P(b, "</span></dd>");
    if (json_object_object_get(o, "reset_id") || !strcmp(state, "reset")) {
        dd(b, "Reset at", json_object_get_string(json_object_object_get(o, "reset_at")));
        dd(b, "Reset id", json_object_get_string(json_object_object_get(o, "reset_id")));
    }
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
    reset_card(r, b, tenant, name, o);
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
    sv_page_end(r, 200, b);
}

void sv_audit_page(struct sv_req *r)
{
    struct evbuffer *b = sv_page(r, "Audit trail");
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
            sv_page_end(r, sv_page_error(r, b, st, &e), b);
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
    sv_page_end(r, 200, b);
}

