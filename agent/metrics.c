/*
 * vks-agent metrics: atomic counters updated from any thread, served in the Prometheus text
 * format (version 0.0.4) by libevent's evhttp on a loopback listener, with a health check.
 *   GET /metrics   counters and the Vault latency histogram
 *   GET /health    200 "ok" while serving, 503 "draining" during shutdown
 * Everything else is 404; only GET and HEAD are answered. No secret is ever counted by value.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "inbound.h"

static const double kBuckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define NBUCKETS (sizeof kBuckets / sizeof kBuckets[0])

static const char *const kOutcomes[] = { "hit", "miss", "refresh", "stale", "negative", "error", "bypass", "none" };
#define NOUTCOMES (sizeof kOutcomes / sizeof kOutcomes[0])

static const char *const kRefusals[] = { "peer_not_allowed", "too_many_connections", "bad_request",
                                         "read_timeout", "write_timeout" };
#define NREFUSALS (sizeof kRefusals / sizeof kRefusals[0])

static atomic_uint_fast64_t m_lookups[AG_PROTO_COUNT][AG_R_COUNT];
static atomic_uint_fast64_t m_outcomes[NOUTCOMES];
static atomic_uint_fast64_t m_buckets[NBUCKETS];
static atomic_uint_fast64_t m_lat_count, m_lat_sum_us;
static atomic_int_fast64_t m_conns[AG_PROTO_COUNT];
static atomic_uint_fast64_t m_refused[AG_PROTO_COUNT][NREFUSALS];
static atomic_uint_fast64_t m_reload_ok, m_reload_fail;
static atomic_uint_fast64_t m_inline[AG_PROTO_COUNT];
static atomic_bool m_draining;
static struct evhttp *m_http;

void ag_metrics_lookup(enum ag_proto p, enum ag_result r)
{
    if (p < AG_PROTO_COUNT && r < AG_R_COUNT)
        atomic_fetch_add_explicit(&m_lookups[p][r], 1, memory_order_relaxed);
}

void ag_metrics_outcome(const char *o)
{
    for (size_t i = 0; o != NULL && i < NOUTCOMES; i++)
        if (strcmp(o, kOutcomes[i]) == 0)
            atomic_fetch_add_explicit(&m_outcomes[i], 1, memory_order_relaxed);
}

void ag_metrics_vault_latency(double s)
{
    for (size_t i = 0; i < NBUCKETS; i++)
        if (s <= kBuckets[i]) {
            atomic_fetch_add_explicit(&m_buckets[i], 1, memory_order_relaxed);
            break;
        }
    atomic_fetch_add_explicit(&m_lat_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m_lat_sum_us, (uint64_t)(s * 1e6), memory_order_relaxed);
}

void ag_metrics_conn(enum ag_proto p, int delta)
{
    atomic_fetch_add_explicit(&m_conns[p], delta, memory_order_relaxed);
}

void ag_metrics_refused(enum ag_proto p, const char *reason)
{
    for (size_t i = 0; i < NREFUSALS; i++)
        if (strcmp(reason, kRefusals[i]) == 0)
            atomic_fetch_add_explicit(&m_refused[p][i], 1, memory_order_relaxed);
}

void ag_metrics_inline(enum ag_proto p)
{
    if (p < AG_PROTO_COUNT)
        atomic_fetch_add_explicit(&m_inline[p], 1, memory_order_relaxed);
}

void ag_metrics_reload(bool ok)
{
    atomic_fetch_add_explicit(ok ? &m_reload_ok : &m_reload_fail, 1, memory_order_relaxed);
}

void ag_metrics_set_draining(bool d)
{
    atomic_store(&m_draining, d);
}

#define LD(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

static void render(struct evbuffer *b)
{
    evbuffer_add_printf(b, "# HELP vks_agent_lookups_total Lookups answered, by protocol and result code.\n"
                           "# TYPE vks_agent_lookups_total counter\n");
    for (int p = 0; p < AG_PROTO_COUNT; p++)
        for (int r = 0; r < AG_R_COUNT; r++)
            evbuffer_add_printf(b, "vks_agent_lookups_total{protocol=\"%s\",result=\"%s\"} %llu\n",
                                ag_proto_name((enum ag_proto)p), ag_result_name((enum ag_result)r), LD(m_lookups[p][r]));
    evbuffer_add_printf(b, "# HELP vks_agent_inline_total Requests answered on the event loop from the cache (no worker).\n"
                           "# TYPE vks_agent_inline_total counter\n");
    for (int p = 0; p < AG_PROTO_COUNT; p++)
        evbuffer_add_printf(b, "vks_agent_inline_total{protocol=\"%s\"} %llu\n", ag_proto_name((enum ag_proto)p),
                            LD(m_inline[p]));
    evbuffer_add_printf(b, "# HELP vks_agent_cache_total Core lookups by cache outcome (hit, miss, stale, ...).\n"
                           "# TYPE vks_agent_cache_total counter\n");
    for (size_t i = 0; i < NOUTCOMES; i++)
        evbuffer_add_printf(b, "vks_agent_cache_total{outcome=\"%s\"} %llu\n", kOutcomes[i], LD(m_outcomes[i]));
    evbuffer_add_printf(b, "# HELP vks_agent_cache_hits_total Fresh cache hits.\n# TYPE vks_agent_cache_hits_total counter\n"
                           "vks_agent_cache_hits_total %llu\n", LD(m_outcomes[0]));
    evbuffer_add_printf(b, "# HELP vks_agent_cache_misses_total Lookups that read Vault (miss and refresh).\n"
                           "# TYPE vks_agent_cache_misses_total counter\nvks_agent_cache_misses_total %llu\n",
                        LD(m_outcomes[1]) + LD(m_outcomes[2]));
    evbuffer_add_printf(b, "# HELP vks_agent_stale_answers_total Stale values served because Vault failed.\n"
                           "# TYPE vks_agent_stale_answers_total counter\nvks_agent_stale_answers_total %llu\n",
                        LD(m_outcomes[3]));
    evbuffer_add_printf(b, "# HELP vks_agent_vault_latency_seconds Time of lookups that went to Vault.\n"
                           "# TYPE vks_agent_vault_latency_seconds histogram\n");
    unsigned long long cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += LD(m_buckets[i]);
        evbuffer_add_printf(b, "vks_agent_vault_latency_seconds_bucket{le=\"%g\"} %llu\n", kBuckets[i], cum);
    }
    evbuffer_add_printf(b, "vks_agent_vault_latency_seconds_bucket{le=\"+Inf\"} %llu\n", LD(m_lat_count));
    evbuffer_add_printf(b, "vks_agent_vault_latency_seconds_sum %.6f\n", (double)LD(m_lat_sum_us) / 1e6);
    evbuffer_add_printf(b, "vks_agent_vault_latency_seconds_count %llu\n", LD(m_lat_count));
    evbuffer_add_printf(b, "# HELP vks_agent_connections Open client connections.\n# TYPE vks_agent_connections gauge\n");
    for (int p = 0; p < AG_PROTO_COUNT; p++)
        evbuffer_add_printf(b, "vks_agent_connections{protocol=\"%s\"} %lld\n", ag_proto_name((enum ag_proto)p),
                            (long long)atomic_load(&m_conns[p]));
    evbuffer_add_printf(b, "# HELP vks_agent_refused_total Connections or requests refused, by reason.\n"
                           "# TYPE vks_agent_refused_total counter\n");
    for (int p = 0; p < AG_PROTO_COUNT; p++)
        for (size_t i = 0; i < NREFUSALS; i++)
            evbuffer_add_printf(b, "vks_agent_refused_total{protocol=\"%s\",reason=\"%s\"} %llu\n",
                                ag_proto_name((enum ag_proto)p), kRefusals[i], LD(m_refused[p][i]));
    evbuffer_add_printf(b, "# HELP vks_agent_reloads_total Configuration reloads (SIGHUP) by result.\n"
                           "# TYPE vks_agent_reloads_total counter\n"
                           "vks_agent_reloads_total{result=\"ok\"} %llu\nvks_agent_reloads_total{result=\"failed\"} %llu\n",
                        LD(m_reload_ok), LD(m_reload_fail));
    struct vks_audit_stats as;
    vks_audit_get_stats(&as);
    evbuffer_add_printf(b, "# HELP vks_agent_audit_failures_total Audit events no sink could record.\n"
                           "# TYPE vks_agent_audit_failures_total counter\nvks_agent_audit_failures_total %llu\n",
                        (unsigned long long)as.failures);
    ag_inbound_metrics(b); /* [inbound] (agent/inbound.c) */
}

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *uri = evhttp_request_get_uri(req);
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_send_error(req, 405, NULL);
    } else if (strcmp(uri, "/metrics") == 0) {
        render(b);
        evhttp_add_header(h, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", b);
    } else if (strcmp(uri, "/health") == 0) {
        bool d = atomic_load(&m_draining);
        evbuffer_add_printf(b, "%s\n", d ? "draining" : "ok");
        evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
        evhttp_send_reply(req, d ? 503 : 200, d ? "Service Unavailable" : "OK", b);
    } else {
        evhttp_send_error(req, 404, NULL);
    }
    evbuffer_free(b);
}

int ag_metrics_listen(struct event_base *base, const char *host, int port, char *err, size_t n)
{
    if (host == NULL)
        return 0;
    m_http = evhttp_new(base);
    if (m_http == NULL) {
        snprintf(err, n, "metrics: cannot create the HTTP server");
        return -1;
    }
    evhttp_set_timeout(m_http, 10);
    evhttp_set_max_headers_size(m_http, 8192);
    evhttp_set_max_body_size(m_http, 0);
    evhttp_set_allowed_methods(m_http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(m_http, on_request, NULL);
    if (evhttp_bind_socket(m_http, host, (ev_uint16_t)port) != 0) {
        snprintf(err, n, "metrics.listen: cannot listen on %s:%d", host, port);
        evhttp_free(m_http);
        m_http = NULL;
        return -1;
    }
    return 0;
}

void ag_metrics_close(void)
{
    if (m_http != NULL)
        evhttp_free(m_http);
    m_http = NULL;
}
