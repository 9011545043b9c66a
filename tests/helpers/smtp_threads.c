/*
 * smtp_threads: runs vks_smtp_check_auth from several threads at once against one relay, so that
 * the probe's reentrancy is checked under ThreadSanitizer (Criterion cannot run under TSan).
 *
 *   smtp_threads HOST PORT CAFILE USER THREADS SESSIONS
 * The password is the first line of stdin (never argv). Threads with an odd index send it with
 * "-wrong" appended. Prints one line per thread, "thread N: OK=a REJECTED=b OTHER=c", and exits 0
 * when every even thread got 235 and every odd one 535 in every session, 1 otherwise.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vks_secmem.h"
#include "vks_smtp.h"

struct job {
    const char *host, *cafile, *user;
    int port, index, sessions;
    const char *pw;
    int ok, rejected, other;
};

static void one(struct job *j, const char *ehlo, const vks_secret *s)
{
    struct vks_smtp_opts o = { .host = j->host, .port = j->port, .ehlo_name = ehlo,
                               .tls = VKS_SMTP_TLS_REQUIRED, .username = j->user,
                               .username_len = strlen(j->user), .cafile = j->cafile, .timeout_ms = 30000 };
    struct vks_smtp_result r;
    struct vks_err err;
    vks_status st = vks_smtp_check_auth(&o, s, &r, &err);
    if (st == VKS_OK && r.ok)
        j->ok++;
    else if (st == VKS_OK && r.code == 535)
        j->rejected++;
    else {
        j->other++;
        fprintf(stderr, "%s: %s at %s: %s\n", ehlo, vks_status_code(st), r.stage, r.error);
    }
    vks_smtp_result_free(&r);
}

static void *run(void *arg)
{
    struct job *j = arg;
    char ehlo[32], pw[512];
    snprintf(ehlo, sizeof ehlo, "thread-%d", j->index);
    snprintf(pw, sizeof pw, "%s%s", j->pw, j->index % 2 ? "-wrong" : "");
    for (int i = 0; i < j->sessions; i++) {
        vks_secret s = VKS_SECRET_EMPTY;
        struct vks_err err;
        if (vks_secret_dup(pw, strlen(pw), &s, &err) != VKS_OK) {
            j->other++;
            continue;
        }
        one(j, ehlo, &s);
        vks_secret_free(&s);
    }
    vks_wipe(pw, sizeof pw);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: smtp_threads HOST PORT CAFILE USER THREADS SESSIONS < password\n");
        return 2;
    }
    char pw[256];
    if (fgets(pw, sizeof pw, stdin) == NULL)
        return 2;
    pw[strcspn(pw, "\r\n")] = '\0';
    int n = atoi(argv[5]);
    if (n < 1 || n > 64)
        return 2;
    struct job jobs[64];
    pthread_t th[64];
    for (int i = 0; i < n; i++) {
        jobs[i] = (struct job){ .host = argv[1], .port = atoi(argv[2]), .cafile = argv[3], .user = argv[4],
                                .index = i, .sessions = atoi(argv[6]), .pw = pw };
        if (pthread_create(&th[i], NULL, run, &jobs[i]) != 0)
            return 1;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        printf("thread %d: OK=%d REJECTED=%d OTHER=%d\n", i, jobs[i].ok, jobs[i].rejected, jobs[i].other);
        bad |= (i % 2 ? jobs[i].rejected : jobs[i].ok) != jobs[i].sessions;
    }
    vks_wipe(pw, sizeof pw);
    return bad;
}
