/*
 * vks-agent: serves credentials from Vault (through the vault-keysource core: cache,
 * restrictions, audit) to MTAs over the protocols they already speak. See vks-agent(8),
 * docs/agent.md and docs/internals/agent.md.
 */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "inbound.h"
#include "vks_resolver.h"

#define ERRBUF 8192

static const char kUsage[] =
    "usage: vks-agent --config FILE [--check-config]\n"
    "       vks-agent --help | --version\n"
    "\n"
    "Serves SMTP credentials stored in Vault to Postfix (socketmap) and Exim (readsocket), through\n"
    "the vault-keysource cache, restrictions and hash-chained audit trail; with [inbound], verifies\n"
    "the logins of applications submitting to Postfix (Dovecot SASL and policy delegation).\n"
    "\n"
    "  --config FILE    the TOML configuration (see vks-agent(8) and docs/agent.md)\n"
    "  --check-config   validate FILE and the files it names, print every error as\n"
    "                   FILE:LINE: key: message, exit 0 when valid and 2 when not\n"
    "  --help           this text\n"
    "  --version        the version\n"
    "\n"
    "Signals: SIGHUP reloads FILE atomically (a bad file keeps the running configuration and\n"
    "logs why); SIGTERM and SIGINT stop accepting, finish the lookups in flight (drain_timeout)\n"
    "and exit 0.\n"
    "Exit status: 0 done, 1 runtime failure (cannot listen, cannot configure the core), 2 usage\n"
    "or configuration error.\n";

static struct event_base *g_base;
static struct ag_conf *g_conf;
static const char *g_file;
static struct event *g_drain_timer;
static struct timespec g_drain_deadline;

static void on_hup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    char *err = malloc(ERRBUF);
    if (err == NULL)
        return;
    struct ag_conf *c = ag_conf_load(g_file, err, ERRBUF);
    if (c == NULL) {
        ag_log("error", "reload refused, the running configuration is kept:");
        char *save = NULL;
        for (char *line = strtok_r(err, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
            ag_log("error", "  %s", line);
        ag_metrics_reload(false);
        free(err);
        return;
    }
    if (c->workers != g_conf->workers)
        ag_log("warning", "agent.workers changed: takes effect at the next restart");
    if (c->inbound.enabled || g_conf->inbound.enabled)
        ag_log("warning", "[inbound] is read at start only: its changes take effect at the next restart");
    if (ag_conf_apply_core(c, g_conf, err, ERRBUF) != 0 || ag_net_reconfigure(c, err, ERRBUF) != 0) {
        ag_log("error", "reload refused, the running configuration is kept: %s", err);
        ag_conf_apply_core(g_conf, NULL, err, ERRBUF); /* the old settings back in the core */
        ag_conf_unref(c);
        ag_metrics_reload(false);
        free(err);
        return;
    }
    ag_conf_unref(g_conf);
    g_conf = c;
    ag_metrics_reload(true);
    ag_log("info", "configuration reloaded from %s", g_file);
    free(err);
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    double deadline = (double)g_drain_deadline.tv_sec + (double)g_drain_deadline.tv_nsec / 1e9;
    if ((ag_pool_in_flight() == 0 && ag_net_connections() == 0 && ag_inbound_in_flight() == 0) ||
        mono() >= deadline) {
        if (ag_pool_in_flight() > 0 || ag_net_connections() > 0)
            ag_log("warning", "drain deadline passed with %zu lookups and %zu connections open",
                   ag_pool_in_flight(), ag_net_connections());
        event_base_loopbreak(g_base);
    }
}

static void on_term(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (g_drain_timer != NULL)
        return;
    ag_log("info", "stopping: no new connections, finishing %zu lookups in flight", ag_pool_in_flight());
    ag_metrics_set_draining(true);
    ag_net_stop_listening();
    ag_inbound_stop_listening();
    double d = mono() + (double)g_conf->drain_timeout_ms / 1000.0;
    g_drain_deadline.tv_sec = (time_t)d;
    g_drain_deadline.tv_nsec = (long)((d - (double)(time_t)d) * 1e9);
    g_drain_timer = event_new(g_base, -1, EV_PERSIST, on_drain_tick, NULL);
    struct timeval tv = { 0, 20000 };
    event_add(g_drain_timer, &tv);
}

static void job_done_cb(struct ag_job *j);

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int run(void)
{
    char err[ERRBUF];
    if (evthread_use_pthreads() != 0) {
        ag_log("error", "libevent threading unavailable");
        return 1;
    }
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    /* the changelist folds the enable/disable pairs evhttp makes around every request into at
     * most one epoll_ctl per descriptor and loop pass (4 per request without it) */
    struct event_config *ecfg = event_config_new();
    if (ecfg != NULL)
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    g_base = ecfg != NULL ? event_base_new_with_config(ecfg) : NULL;
    if (ecfg != NULL)
        event_config_free(ecfg);
    if (g_base == NULL) {
        ag_log("error", "cannot create the event loop");
        return 1;
    }
    if (ag_conf_apply_core(g_conf, NULL, err, sizeof err) != 0) {
        ag_log("error", "%s", err);
        return 1;
    }
    if (ag_pool_start(g_base, g_conf->workers, job_done_cb) != 0) {
        ag_log("error", "cannot start %d worker threads", g_conf->workers);
        return 1;
    }
    if (ag_net_open(g_base, g_conf, err, sizeof err) != 0 || ag_api_open(g_base, g_conf, err, sizeof err) != 0 ||
        ag_metrics_listen(g_base, g_conf->metrics_host, g_conf->metrics_port, err, sizeof err) != 0 ||
        ag_inbound_open(g_base, g_conf, err, sizeof err) != 0) {
        ag_log("error", "%s", err);
        ag_inbound_close();
        ag_pool_stop();
        ag_api_close();
        ag_net_close_all();
        return 1;
    }
    struct event *hup = evsignal_new(g_base, SIGHUP, on_hup, NULL);
    struct event *term = evsignal_new(g_base, SIGTERM, on_term, NULL);
    struct event *intr = evsignal_new(g_base, SIGINT, on_term, NULL);
    event_add(hup, NULL);
    event_add(term, NULL);
    event_add(intr, NULL);
    for (int p = 0; p < AG_LISTENER_COUNT; p++)
        if (g_conf->lst[p].enabled)
            ag_log("info", "%s listening on %s", ag_proto_name((enum ag_proto)p), g_conf->lst[p].socket);
    if (g_conf->api.enabled && g_conf->api.host != NULL)
        ag_log("info", "vault_api on %s://%s%s%s:%d%s", g_conf->api.plain_http ? "http" : "https",
               strchr(g_conf->api.host, ':') ? "[" : "", g_conf->api.host, strchr(g_conf->api.host, ':') ? "]" : "",
               g_conf->api.port, g_conf->api.plain_http ? " (plain HTTP, loopback only)" : "");
    if (g_conf->api.enabled && g_conf->api.socket != NULL)
        ag_log("info", "vault_api on unix:%s", g_conf->api.socket);
    if (g_conf->metrics_host != NULL)
        ag_log("info", "metrics on http://%s:%d/metrics", g_conf->metrics_host, g_conf->metrics_port);
    ag_log("info", "ready (%d workers)", g_conf->workers);

    event_base_dispatch(g_base);

    ag_inbound_close();
    ag_pool_stop();
    ag_api_close();
    ag_net_close_all();
    ag_metrics_close();
    event_free(hup);
    event_free(term);
    event_free(intr);
    if (g_drain_timer != NULL)
        event_free(g_drain_timer);
    event_base_free(g_base);
    vks_audit_shutdown();
    vks_resolver_shutdown();
    vks_cache_shutdown();
    ag_log("info", "stopped");
    return 0;
}

static void job_done_cb(struct ag_job *j)
{
    if (j->proto == AG_PROTO_VAULTAPI)
        ag_api_job_done(j);
    else
        ag_net_job_done(j);
}

int main(int argc, char **argv)
{
    bool check = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            g_file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            g_file = argv[i] + 9;
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(kUsage, stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            puts("vks-agent 0.1 (vault-keysource)");
            return 0;
        } else {
            fprintf(stderr, AG_NAME ": unknown argument \"%s\"\n%s", argv[i], kUsage);
            return 2;
        }
    }
    if (g_file == NULL) {
        fprintf(stderr, AG_NAME ": --config FILE is required\n%s", kUsage);
        return 2;
    }
    char *err = malloc(ERRBUF);
    if (err == NULL)
        return 1;
    g_conf = ag_conf_load(g_file, err, ERRBUF);
    if (g_conf == NULL) {
        fputs(err, stderr);
        free(err);
        return 2;
    }
    free(err);
    if (check) {
        printf("%s: configuration OK\n", g_file);
        ag_conf_unref(g_conf);
        return 0;
    }
    int rc = run();
    ag_conf_unref(g_conf);
    return rc;
}
