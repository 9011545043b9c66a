/* vault-dev: command line, listening socket, TLS material, libmicrohttpd daemon, shutdown.
 *
 *   vault-dev --addr 127.0.0.1:0 [--tls-dir DIR] [--root-token TOKEN] [--kv1 MOUNT]...
 *             [--kv2 MOUNT]... [--state FILE] [--standby-of URL]
 *
 * Prints VAULT_ADDR=<url> (and VAULT_CACERT=<DIR>/ca.pem with TLS), one per line, once it
 * accepts connections, then serves until SIGTERM or SIGINT. See docs/vault-dev.md.
 */
#include "vd.h"
#include "vd_http.h"
#include "vd_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void usage(void)
{
    fprintf(stderr, "usage: vault-dev --addr 127.0.0.1:0 [--tls-dir DIR] [--root-token TOKEN] "
                    "[--kv1 MOUNT]... [--kv2 MOUNT]... [--state FILE] [--standby-of URL]\n");
    exit(2);
}

static char *mount_key(const char *m)
{
    while (*m == '/')
        m++;
    size_t n = strlen(m);
    while (n && m[n - 1] == '/')
        n--;
    if (n == 0) {
        fprintf(stderr, "vault-dev: empty mount path\n");
        exit(2);
    }
    char *k = malloc(n + 2);
    if (!k)
        abort();
    memcpy(k, m, n);
    k[n] = '/';
    k[n + 1] = 0;
    return k;
}

static void ensure_mount(const char *path, int version, bool replace)
{
    struct json_object *ns = vd_ns_get("");
    struct json_object *m = vd_get(vd_get(ns, "mounts"), path);
    if (m) {
        const char *v = vd_str(vd_get(m, "options"), "version");
        int have = v && !strcmp(v, "2") ? 2 : 1;
        if (!replace || have == version)
            return;
        json_object_object_del(vd_get(ns, "mounts"), path);
    }
    vd_mount_add(ns, path, "kv", version, version == 2 ? "key/value secret storage" : "key/value secret storage (v1)");
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *tls_dir = NULL;
    const char *kv[64];
    int kv_ver[64], nkv = 0;
    vd_cfg.root_token = "root";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            usage();
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--addr"))
            addr = v;
        else if (!strcmp(a, "--tls-dir"))
            tls_dir = v;
        else if (!strcmp(a, "--root-token"))
            vd_cfg.root_token = v;
        else if (!strcmp(a, "--state"))
            vd_cfg.state_file = v;
        else if (!strcmp(a, "--standby-of"))
            vd_cfg.standby_of = v;
        else if ((!strcmp(a, "--kv1") || !strcmp(a, "--kv2")) && nkv < 64) {
            kv[nkv] = v;
            kv_ver[nkv++] = a[4] - '0';
        } else
            usage();
    }
    if (!addr)
        usage();
    if (!*vd_cfg.root_token) {
        fprintf(stderr, "vault-dev: --root-token must not be empty\n");
        return 2;
    }

    /* address */
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host)
        usage();
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        usage();
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "vault-dev: --addr needs an IPv4 address, got %s\n", host);
        return 2;
    }

    /* state */
    vd_state_init();
    bool loaded = false;
    if (vd_cfg.state_file) {
        int rc = vd_state_load(vd_cfg.state_file);
        if (rc < 0) {
            fprintf(stderr, "vault-dev: cannot load state file %s (not a vault-dev state)\n", vd_cfg.state_file);
            return 1;
        }
        loaded = rc == 0;
    }
    if (!loaded)
        ensure_mount("secret/", 2, false);
    for (int i = 0; i < nkv; i++) {
        char *k = mount_key(kv[i]);
        ensure_mount(k, kv_ver[i], true);
        free(k);
    }
    const char *uk = vd_str(vd_state, "unseal_key");
    if (!uk) {
        char key[45];
        vd_random_b62(key, 44);
        json_object_object_add(vd_state, "unseal_key", json_object_new_string(key));
        uk = vd_str(vd_state, "unseal_key");
    }
    vd_cfg.unseal_key = uk;
    /* the root token (replaced if the state had one with the same id) */
    struct json_object *pol = json_object_new_array();
    json_object_array_add(pol, json_object_new_string("root"));
    vd_token_new(pol, 0, false, 0, NULL, "auth/token/root", "", NULL, "root", 0, 0, vd_cfg.root_token);
    json_object_put(pol);
    if (vd_cfg.state_file && vd_state_save(vd_cfg.state_file) != 0)
        fprintf(stderr, "vault-dev: warning: cannot write state file %s\n", vd_cfg.state_file);

    /* TLS */
    char *cert = NULL, *key = NULL, *ca = NULL;
    if (tls_dir) {
        if (vd_tls_prepare(tls_dir, &cert, &key, &ca) != 0) {
            fprintf(stderr, "vault-dev: cannot create or read TLS material in %s\n", tls_dir);
            return 1;
        }
        char *abs = realpath(ca, NULL);
        if (abs) {
            free(ca);
            ca = abs;
        }
    }

    /* socket */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 128) != 0) {
        fprintf(stderr, "vault-dev: cannot listen on %s: %s\n", addr, strerror(errno));
        return 1;
    }
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (tls_dir)
        flags |= MHD_USE_TLS;
    struct MHD_Daemon *d;
    if (tls_dir)
        d = MHD_start_daemon(flags, 0, NULL, NULL, vd_access, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
                             MHD_OPTION_NOTIFY_COMPLETED, vd_completed, NULL,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300, MHD_OPTION_HTTPS_MEM_KEY, key,
                             MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_END);
    else
        d = MHD_start_daemon(flags, 0, NULL, NULL, vd_access, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
                             MHD_OPTION_NOTIFY_COMPLETED, vd_completed, NULL,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "vault-dev: cannot start the HTTP daemon%s\n",
                tls_dir ? " (is libmicrohttpd built with TLS?)" : "");
        return 1;
    }
    printf("VAULT_ADDR=%s://127.0.0.1:%u\n", tls_dir ? "https" : "http", (unsigned)ntohs(sa.sin_port));
    if (tls_dir)
        printf("VAULT_CACERT=%s\n", ca);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
        ; /* ignore hang-ups */
    vd_stopping = 1;
    MHD_stop_daemon(d);
    pthread_mutex_lock(&vd_lock);
    if (vd_cfg.state_file)
        vd_state_save(vd_cfg.state_file);
    json_object_put(vd_state);
    pthread_mutex_unlock(&vd_lock);
    free(cert);
    free(key);
    free(ca);
    return 0;
}
