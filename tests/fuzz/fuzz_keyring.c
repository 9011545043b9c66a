/*
 * libFuzzer target: the keyring's parsers. Byte 0 picks the source: VKS_ENCRYPTION_KEYS (the
 * rest is the variable's value) or VKS_ENCRYPTION_KEYRING_FILE (the rest is the file, held in a
 * 0600 memfd and opened through /proc/self/fd). A loaded keyring must be well formed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vks_envelope.h"

static const char *value;
static char path[64];
static int mfd = -1;

static const char *get(const char *name, void *ctx)
{
    int file = *(int *)ctx;
    if (!file && strcmp(name, "VKS_ENCRYPTION_KEYS") == 0)
        return value;
    if (file && strcmp(name, "VKS_ENCRYPTION_KEYRING_FILE") == 0)
        return path;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int file = data[0] & 1;
    data++;
    size--;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    value = s;
    if (file) {
        if (mfd < 0) {
            mfd = memfd_create("fuzz-keyring", MFD_CLOEXEC);
            if (mfd < 0 || fchmod(mfd, 0600) != 0)
                abort();
            snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
        }
        if (ftruncate(mfd, 0) != 0 || (size && pwrite(mfd, data, size, 0) != (ssize_t)size))
            abort();
    }
    struct vks_keyring *kr = NULL;
    struct vks_err e;
    vks_status st = vks_keyring_load(&kr, get, &file, "/nonexistent/compat", &e);
    if (st == VKS_OK) {
        size_t n = vks_keyring_count(kr);
        if (n > VKS_KEYRING_MAX)
            abort();
        for (size_t i = 0; i < n; i++) {
            const char *id = vks_keyring_id(kr, i);
            if (!id || strlen(id) == 0 || strlen(id) > VKS_KEY_ID_MAX)
                abort();
            for (size_t j = 0; j < i; j++)
                if (strcmp(id, vks_keyring_id(kr, j)) == 0)
                    abort();
        }
        vks_keyring_free(kr);
    } else if (kr != NULL || st != VKS_E_CONFIG || e.msg[0] == '\0') {
        abort();
    }
    free(s);
    return 0;
}
