/*
 * vks-agent inbound: the verification threads and the vks_inbound object (agent/inbound.h).
 * Jobs come from the loop (SASL, policy and HTTP requests); a worker runs vks_inbound_verify or
 * vks_inbound_check_sender (which may read Vault and compute a slow hash), wipes the password and
 * hands the job back to the loop through a done queue and event_active (thread-safe after
 * evthread_use_pthreads). A job that waited longer than inbound.verify_timeout in the queue is
 * answered TEMP without work, so a burst cannot make answers arrive after the client gave up.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inbound_int.h"
#include "vks_envelope.h"
#include "vks_vault.h"

const struct ag_inbound_conf *in_conf;
static struct ag_conf *g_conf;
static struct vks_vault *g_vault;
static struct vks_keyring *g_kr;
static struct vks_inbound *g_ib;

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static struct in_job *q_head, *q_tail, *d_head, *d_tail;
static bool q_stop;
static struct event *g_done_ev;
static pthread_t *g_threads;
static int g_nthreads;
static atomic_size_t g_in_flight;
#define N_OUTCOMES 8 /* enum vks_inbound_outcome */
static atomic_uint_fast64_t g_count[2][N_OUTCOMES], g_cached; /* [0] logins, [1] sender checks */

int64_t in_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_job(struct in_job *j)
{
    struct vks_err e;
    const char *src = j->rip[0] ? j->rip : NULL;
    if (in_now_ms() - j->queued_ms > in_conf->verify_timeout_ms) {
        j->ans.outcome = j->sans.outcome = VKS_IN_TEMP;
        snprintf(j->ans.reason, sizeof j->ans.reason, "waited longer than inbound.verify_timeout for a worker");
        memcpy(j->sans.reason, j->ans.reason, sizeof j->sans.reason);
    } else if (j->kind == IN_POLICY) {
        vks_inbound_check_sender(g_ib, j->user, j->sender, src, &j->ans, &e);
    } else if (j->kind == IN_HTTP && j->id == 1) { /* POST /v1/vks/inbound/sender */
        vks_inbound_check_sender(g_ib, j->user, j->sender, src, &j->sans, &e);
    } else {
        vks_inbound_verify(g_ib, j->user, j->pw.data, j->pw.len, src, &j->ans, &e);
        if (j->check_sender && j->ans.outcome == VKS_IN_OK)
            vks_inbound_check_sender(g_ib, j->user, j->sender, src, &j->sans, &e);
    }
    vks_secret_free(&j->pw);
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&q_mu);
        while (q_head == NULL && !q_stop)
            pthread_cond_wait(&q_cv, &q_mu);
        struct in_job *j = q_head;
        if (j == NULL) {
            pthread_mutex_unlock(&q_mu);
            return NULL;
        }
        q_head = j->next;
        if (q_head == NULL)
            q_tail = NULL;
        pthread_mutex_unlock(&q_mu);
        run_job(j);
        j->next = NULL;
        pthread_mutex_lock(&q_mu);
        if (d_tail)
            d_tail->next = j;
        else
            d_head = j;
        d_tail = j;
        pthread_mutex_unlock(&q_mu);
        event_active(g_done_ev, EV_READ, 0);
    }
}

void ag_inbound_http_job_done(struct in_job *j); /* inbound_http.c */

static void count(const struct in_job *j)
{
    bool sender_only = j->kind == IN_POLICY || (j->kind == IN_HTTP && j->id == 1);
    const struct vks_inbound_answer *a = j->kind == IN_HTTP && j->id == 1 ? &j->sans : &j->ans;
    if ((unsigned)a->outcome < N_OUTCOMES)
        atomic_fetch_add(&g_count[sender_only][a->outcome], 1);
    if (!sender_only && a->cached)
        atomic_fetch_add(&g_cached, 1);
    if (j->kind == IN_HTTP && j->id != 1 && j->check_sender && (unsigned)j->sans.outcome < N_OUTCOMES &&
        j->ans.outcome == VKS_IN_OK)
        atomic_fetch_add(&g_count[1][j->sans.outcome], 1);
}

void ag_inbound_metrics(struct evbuffer *b)
{
    if (in_conf == NULL)
        return;
    static const char *const what[2] = { "vks_agent_inbound_logins_total", "vks_agent_inbound_sender_checks_total" };
    static const char *const help[2] = { "Inbound logins verified, by result.",
                                         "Sender-domain checks of inbound logins, by result." };
    for (int k = 0; k < 2; k++) {
        evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", what[k], help[k], what[k]);
        for (int o = 0; o < N_OUTCOMES; o++)
            evbuffer_add_printf(b, "%s{result=\"%s\"} %llu\n", what[k],
                                vks_inbound_outcome_name((enum vks_inbound_outcome)o),
                                (unsigned long long)atomic_load(&g_count[k][o]));
    }
    evbuffer_add_printf(b, "# HELP vks_agent_inbound_cached_total Inbound logins answered from the success cache.\n"
                           "# TYPE vks_agent_inbound_cached_total counter\nvks_agent_inbound_cached_total %llu\n",
                        (unsigned long long)atomic_load(&g_cached));
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    pthread_mutex_lock(&q_mu);
    struct in_job *j = d_head;
    d_head = d_tail = NULL;
    pthread_mutex_unlock(&q_mu);
    while (j != NULL) {
        struct in_job *next = j->next;
        atomic_fetch_sub(&g_in_flight, 1);
        count(j);
        if (j->kind == IN_HTTP)
            ag_inbound_http_job_done(j);
        else
            in_conn_job_done(j);
        j = next;
    }
}

void in_submit(struct in_job *j)
{
    j->queued_ms = in_now_ms();
    j->next = NULL;
    atomic_fetch_add(&g_in_flight, 1);
    pthread_mutex_lock(&q_mu);
    if (q_tail)
        q_tail->next = j;
    else
        q_head = j;
    q_tail = j;
    pthread_cond_signal(&q_cv);
    pthread_mutex_unlock(&q_mu);
}

size_t ag_inbound_in_flight(void)
{
    return atomic_load(&g_in_flight);
}

static int core_open(const struct ag_conf *conf, char *err, size_t n)
{
    struct vks_err e;
    vks_err_clear(&e);
    if (vks_vault_new(&conf->vault.vault, &g_vault, &e) != VKS_OK) {
        snprintf(err, n, "inbound: %s", e.msg);
        return -1;
    }
    if (vks_keyring_load_env(&g_kr, &e) != VKS_OK) /* only --retrievable credentials need it */
        g_kr = NULL;
    const struct ag_inbound_conf *c = &conf->inbound;
    struct vks_inbound_config ic = { .mount = c->mount, .prefix = c->prefix, .cache_ttl_ms = c->cache_ttl_ms,
                                     .max_failures = (unsigned)c->max_failures,
                                     .max_failures_address = (unsigned)c->max_failures_address,
                                     .lockout_ms = c->lockout_ms, .window_ms = c->window_ms,
                                     .reset_interval_ms = conf->vault.reset_interval_ms,
                                     .reset_bound_ms = conf->vault.reset_bound_ms };
    if (vks_inbound_new(&ic, g_vault, g_kr, &g_ib, &e) != VKS_OK) {
        snprintf(err, n, "inbound: %s", e.msg);
        return -1;
    }
    return 0;
}

int ag_inbound_open(struct event_base *base, const struct ag_conf *conf, char *err, size_t n)
{
    if (!conf->inbound.enabled)
        return 0;
    g_conf = ag_conf_ref((struct ag_conf *)conf); /* kept for the process lifetime (no reload) */
    in_conf = &g_conf->inbound;
    if (core_open(conf, err, n) != 0)
        return -1;
    g_done_ev = event_new(base, -1, 0, on_done, NULL);
    g_threads = calloc((size_t)in_conf->workers, sizeof *g_threads);
    if (g_done_ev == NULL || g_threads == NULL) {
        snprintf(err, n, "inbound: out of memory");
        return -1;
    }
    for (; g_nthreads < in_conf->workers; g_nthreads++)
        if (pthread_create(&g_threads[g_nthreads], NULL, worker, NULL) != 0) {
            snprintf(err, n, "inbound: cannot start worker threads");
            return -1;
        }
    return in_conn_open(base, in_conf, err, n);
}

void ag_inbound_stop_listening(void)
{
    if (in_conf != NULL)
        in_conn_stop_listening();
}

size_t ag_inbound_connections(void)
{
    return in_conf != NULL ? in_conn_count() : 0;
}

void ag_inbound_close(void)
{
    if (in_conf == NULL)
        return;
    in_conn_stop_listening();
    pthread_mutex_lock(&q_mu);
    q_stop = true;
    pthread_cond_broadcast(&q_cv);
    pthread_mutex_unlock(&q_mu);
    for (int i = 0; i < g_nthreads; i++)
        pthread_join(g_threads[i], NULL);
    on_done(-1, 0, NULL); /* finished jobs: their connections are released below */
    for (struct in_job *j = q_head, *nx; j != NULL; j = nx) { /* never started */
        nx = j->next;
        vks_secret_free(&j->pw);
        j->ans.outcome = j->sans.outcome = VKS_IN_TEMP;
        atomic_fetch_sub(&g_in_flight, 1);
        if (j->kind == IN_HTTP)
            ag_inbound_http_job_done(j);
        else
            in_conn_job_done(j);
    }
    q_head = q_tail = NULL;
    in_conn_close_all();
    free(g_threads);
    g_threads = NULL;
    g_nthreads = 0;
    if (g_done_ev)
        event_free(g_done_ev);
    g_done_ev = NULL;
    vks_inbound_free(g_ib);
    vks_keyring_free(g_kr);
    vks_vault_free(g_vault);
    g_ib = NULL;
    g_kr = NULL;
    g_vault = NULL;
    in_conf = NULL;
    ag_conf_unref(g_conf);
    g_conf = NULL;
}
