/* benchlib: helpers shared by the benchmarks (contract: benchlib.h). */
#include "benchlib.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

/* Reads VAULT_ADDR= and VAULT_CACERT= from vault-dev's stdout file. */
static void read_announcement(const char *out, char *addr, size_t an, char *ca, size_t cn)
{
    FILE *f = fopen(out, "r");
    if (f == NULL)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "VAULT_ADDR=", 11) == 0)
            snprintf(addr, an, "%.200s", line + 11);
        if (strncmp(line, "VAULT_CACERT=", 13) == 0)
            snprintf(ca, cn, "%.500s", line + 13);
    }
    fclose(f);
}

pid_t bench_vault_dev_start(const char *dir, const char *root_token, char *addr, size_t an, char *ca, size_t cn)
{
    char bin[1024], out[1100];
    snprintf(bin, sizeof bin, "%s/%s/vault-dev", getenv("ROOT") ? getenv("ROOT") : ".",
             getenv("BUILD") ? getenv("BUILD") : "build");
    snprintf(out, sizeof out, "%s/vault-dev.out", dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600), nul = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(nul, 2);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execl(bin, bin, "--addr", "127.0.0.1:0", "--tls-dir", dir, "--root-token", root_token, (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    addr[0] = ca[0] = '\0';
    for (int i = 0; i < 3000 && !(addr[0] && ca[0]); i++) {
        read_announcement(out, addr, an, ca, cn);
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return -1;
        if (!(addr[0] && ca[0]))
            usleep(10000);
    }
    if (addr[0] && ca[0])
        return pid;
    bench_vault_dev_stop(pid);
    return -1;
}

void bench_vault_dev_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static size_t discard(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

int bench_vault_put(const char *addr, const char *ca, const char *token, const char *path, const char *json)
{
    char url[700], hdr[300];
    snprintf(url, sizeof url, "%s/v1/secret/data/%s", addr, path);
    snprintf(hdr, sizeof hdr, "X-Vault-Token: %s", token);
    CURL *c = curl_easy_init();
    if (c == NULL)
        return -1;
    struct curl_slist *h = curl_slist_append(NULL, hdr);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc == CURLE_OK && code / 100 == 2 ? 0 : -1;
}
