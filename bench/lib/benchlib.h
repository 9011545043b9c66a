/*
 * benchlib: what several benchmarks share (not part of the product; linked into every build/bench/ program).
 *   - a monotonic clock in microseconds and a median;
 *   - starting build/vault-dev on 127.0.0.1 with a root token and TLS (it prints VAULT_ADDR and
 *     VAULT_CACERT, which are read back), stopping it;
 *   - writing a KV v2 secret with libcurl.
 * Single-threaded use (main thread of a benchmark).
 */
#ifndef BENCHLIB_H
#define BENCHLIB_H

#include <stddef.h>
#include <sys/types.h>

double bench_now_us(void);

/* Sorts t[0..n) and returns its middle element. */
double bench_median(double *t, int n);

/* Starts $ROOT/$BUILD/vault-dev (defaults . and build) with its TLS files in dir, waits up to
 * 30 s for its address and CA file. Returns its pid (it gets SIGTERM when we die), or -1. */
pid_t bench_vault_dev_start(const char *dir, const char *root_token, char *addr, size_t addr_cap,
                            char *ca, size_t ca_cap);

/* SIGTERM and wait. */
void bench_vault_dev_stop(pid_t pid);

/* POST {json} to /v1/secret/data/<path>. 0 on a 2xx answer. */
int bench_vault_put(const char *addr, const char *ca, const char *token, const char *path, const char *json);

#endif
