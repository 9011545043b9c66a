/*
 * What cli/cred.c shares with the other `vks cred` command files (cli/cred_rotate.c): the Vault
 * client, keyring and vks_cred context built from the environment, and the error printer with the
 * exit status of docs/credentials.md (1 local, 2 remote). Single-threaded CLI code.
 */
#ifndef VKS_CLI_CRED_INT_H
#define VKS_CLI_CRED_INT_H

#include <stdbool.h>

#include "vks_cred.h"

struct vks_cli_cred_env {
    struct vks_vault *vault;
    struct vks_keyring *kr;
    struct vks_cred_ctx ctx;
};
/* mount/prefix NULL: $VKS_CRED_MOUNT / $VKS_CRED_PREFIX, else the defaults. keys: load the ENC:
 * keyring. 0, or -1 after printing why (the caller exits 1: configuration, keys and addresses are local; see
 * vks_cli_cred_fail). */
int vks_cli_cred_open(const char *cmd, const char *mount, const char *prefix, bool keys,
                      struct vks_cli_cred_env *out);
void vks_cli_cred_close(struct vks_cli_cred_env *v);
/* Prints "vks cred CMD: message (code)" (and the permission hint); returns the exit status. */
int vks_cli_cred_fail(const char *cmd, vks_status st, const struct vks_err *e);

#endif
