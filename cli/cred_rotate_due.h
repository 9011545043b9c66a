/*
 * `vks cred rotate --due` in brief, appended to `vks cred rotate`'s usage (cli/cred_rotate.c) so
 * that `vks cred rotate --help` shows both forms (the command table prints one usage per command,
 * and one string literal may not exceed 4095 characters). The full text,
 * vks_cli_cred_rotate_due_usage, is printed on a usage error with --due.
 */
#ifndef VKS_CLI_CRED_ROTATE_DUE_H
#define VKS_CLI_CRED_ROTATE_DUE_H

#define VKS_CLI_CRED_ROTATE_DUE_BRIEF \
    "       vks cred rotate --due [--within D] [--dry-run] [--tenant T] [--json] [options above]\n" \
    "Rotates every credential that is due (vks cred due), one at a time against its stored relay,\n" \
    "going on after a failure; a due rotation in flight is resumed; invalid ones are reported and\n" \
    "never rotated.\n" \
    "  --due              every due credential instead of NAME (defaults: $VKS_CRED_SET_HOOK,\n" \
    "                     $VKS_CRED_HOOK_TIMEOUT, $VKS_CRED_RELAY_CAFILE)\n" \
    "  --within D         with --due: also what falls due within D (0, Nd, Nw, Nh; default 0)\n" \
    "  --dry-run          with --due: list what would be rotated and why; write nothing\n" \
    "  --tenant T         with --due: only that tenant's credentials\n" \
    "exit status with --due: 0 nothing due or all rotated; 4 a rotation failed or a credential is\n" \
    "invalid; 1 local problem; 2 Vault refused the listing. With --dry-run: 0 nothing due; 3 some\n" \
    "would be rotated; 4 some are invalid.\n"

#endif
