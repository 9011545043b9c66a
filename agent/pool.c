/*
 * vks-agent worker pool: lookups that may block on Vault run here, never on the event loop.
 * The loop submits jobs (ag_pool_submit); N threads take them in order, run ag_lookup_run, and put
 * them on the completion list; one libevent event (made active from the worker with
 * event_active, thread-safe after evthread_use_pthreads) wakes the loop, which calls `done` for
 * each finished job on the loop thread.
 * Locks: one mutex for the job queue, one for the completion list; neither is held while a lookup
 * runs or while `done` runs.
 */
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "agent.h"

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static struct ag_job *q_head, *q_tail;
static bool q_stop;

static pthread_mutex_t d_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ag_job *d_head, *d_tail;

static struct event *done_ev;
static ag_done_fn done_fn;
static pthread_t *threads;
static int nthreads;
static atomic_size_t in_flight;

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&q_mu);
        while (q_head == NULL && !q_stop)
            pthread_cond_wait(&q_cv, &q_mu);
        if (q_head == NULL) {
            pthread_mutex_unlock(&q_mu);
            return NULL;
        }
        struct ag_job *j = q_head;
        q_head = j->next;
        if (q_head == NULL)
            q_tail = NULL;
        pthread_mutex_unlock(&q_mu);

        j->next = NULL;
        ag_lookup_run(j);

        pthread_mutex_lock(&d_mu);
        if (d_tail != NULL)
            d_tail->next = j;
        else
            d_head = j;
        d_tail = j;
        pthread_mutex_unlock(&d_mu);
        event_active(done_ev, EV_READ, 0);
    }
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    pthread_mutex_lock(&d_mu);
    struct ag_job *j = d_head;
    d_head = d_tail = NULL;
    pthread_mutex_unlock(&d_mu);
    while (j != NULL) {
        struct ag_job *next = j->next;
        atomic_fetch_sub(&in_flight, 1);
        done_fn(j);
        j = next;
    }
}

int ag_pool_start(struct event_base *base, int workers, ag_done_fn done)
{
    done_fn = done;
    done_ev = event_new(base, -1, 0, on_done, NULL);
    threads = calloc((size_t)workers, sizeof *threads);
    if (done_ev == NULL || threads == NULL)
        return -1;
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&threads[i], NULL, worker, NULL) != 0)
            return -1;
        nthreads++;
    }
    return 0;
}

void ag_pool_submit(struct ag_job *job)
{
    job->next = NULL;
    atomic_fetch_add(&in_flight, 1);
    pthread_mutex_lock(&q_mu);
    if (q_tail != NULL)
        q_tail->next = job;
    else
        q_head = job;
    q_tail = job;
    pthread_cond_signal(&q_cv);
    pthread_mutex_unlock(&q_mu);
}

void ag_pool_complete(struct ag_job *job)
{
    job->next = NULL;
    atomic_fetch_add(&in_flight, 1);
    pthread_mutex_lock(&d_mu);
    if (d_tail != NULL)
        d_tail->next = job;
    else
        d_head = job;
    d_tail = job;
    pthread_mutex_unlock(&d_mu);
    event_active(done_ev, EV_READ, 0);
}

size_t ag_pool_in_flight(void)
{
    return atomic_load(&in_flight);
}

/* Stops the workers after the queue is empty (the caller waited for in_flight to reach 0 or gave
 * up: jobs still queued are run first, lookups have deadlines). */
void ag_pool_stop(void)
{
    pthread_mutex_lock(&q_mu);
    q_stop = true;
    pthread_cond_broadcast(&q_cv);
    pthread_mutex_unlock(&q_mu);
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    nthreads = 0;
    free(threads);
    threads = NULL;
    if (done_ev != NULL) {
        on_done(-1, 0, NULL);
        event_free(done_ev);
        done_ev = NULL;
    }
}
