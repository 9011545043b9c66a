/*
 * vks: the operator CLI. `vks <group> <command> [options]`; `vks help` lists the commands.
 * To add a command: write it in cli/<group>.c, declare it in cli/vks.h, add a row below.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "vks.h"

static const struct vks_cli_command commands[] = {
    { "audit", "verify", "verify the HMAC chains of audit logs", vks_cli_audit_verify_usage,
      vks_cli_audit_verify },
    { "audit", "report", "who used, revealed or changed which credential in a period",
      vks_cli_audit_report_usage, vks_cli_audit_report },
    { "backup", "create", "seal every credential under a prefix into an age-encrypted bundle",
      vks_cli_backup_create_usage, vks_cli_backup_create },
    { "backup", "verify", "check a bundle's seal and list its secrets without printing one",
      vks_cli_backup_verify_usage, vks_cli_backup_verify },
    { "backup", "restore", "restore a bundle into an empty Vault mount, versions preserved",
      vks_cli_backup_restore_usage, vks_cli_backup_restore },
    { "cred", "create", "create a managed SMTP credential (password generated, shown once)",
      vks_cli_cred_create_usage, vks_cli_cred_create },
    { "cred", "list", "list credentials: username, permissions, dates, state",
      vks_cli_cred_list_usage, vks_cli_cred_list },
    { "cred", "due", "list credentials past or near their due date (exit 3/4 when some are)",
      vks_cli_cred_due_usage, vks_cli_cred_due },
    { "cred", "show", "show a credential's metadata, restrictions, versions, fingerprint",
      vks_cli_cred_show_usage, vks_cli_cred_show },
    { "cred", "reveal", "print a credential's password for support (reason audited)",
      vks_cli_cred_reveal_usage, vks_cli_cred_reveal },
    { "cred", "restrict", "add or remove a credential's allowed domains and IPs",
      vks_cli_cred_restrict_usage, vks_cli_cred_restrict },
    { "cred", "delete", "delete a credential and every version of it",
      vks_cli_cred_delete_usage, vks_cli_cred_delete },
    { "cred", "rotate", "new password with zero downtime: create, set, test, finish (--resume, --abort)",
      vks_cli_cred_rotate_usage, vks_cli_cred_rotate },
    { "cred", "rollback", "make the previous password current again (reason audited)",
      vks_cli_cred_rollback_usage, vks_cli_cred_rollback },
    { "cred", "reset", "emergency reset: refuse credentials everywhere within seconds (reason audited)",
      vks_cli_cred_reset_usage, vks_cli_cred_reset },
    { "envelope", "encrypt", "encrypt a value (stdin) as ENC:v2 bound to mount/path/key",
      vks_cli_envelope_encrypt_usage, vks_cli_envelope_encrypt },
    { "envelope", "check", "check that an envelope (stdin) decrypts at mount/path/key",
      vks_cli_envelope_check_usage, vks_cli_envelope_check },
    { "envelope", "inspect", "show an envelope's format and key id (no key needed)",
      vks_cli_envelope_inspect_usage, vks_cli_envelope_inspect },
    { "envelope", "rekey", "re-encrypt an envelope (stdin) under the new primary key",
      vks_cli_envelope_rekey_usage, vks_cli_envelope_rekey },
    { "envelope", "keys", "list the encryption keys from the environment",
      vks_cli_envelope_keys_usage, vks_cli_envelope_keys },
    { "envelope", "genkey", "print a new random key (base64)", vks_cli_envelope_genkey_usage,
      vks_cli_envelope_genkey },
    { "rekey", "", "re-encrypt every ENC: value under a prefix under one key (--to KEYID)",
      vks_cli_rekey_usage, vks_cli_rekey },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

int vks_cli_exit_code(vks_status st)
{
    switch (st) {
    case VKS_OK: return 0;
    case VKS_E_INVALID_INPUT: case VKS_E_INVALID_ARG: case VKS_E_CONFIG: case VKS_E_NOMEM: case VKS_E_INTERNAL:
    case VKS_E_LOCKED_MEMORY: case VKS_E_AUDIT_UNAVAILABLE: case VKS_E_DECRYPT_FAILED: case VKS_E_BAD_KEYSOURCE:
        return 1;
    default: return 2;
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: vks <group> <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  vks %s %-10s %s\n", commands[i].group, commands[i].name,
                commands[i].summary);
    fprintf(out, "  vks serve --config FILE  the admin HTTPS API and web UI (docs/serve.md)\n");
    fprintf(out, "\n'vks <group> <command> --help' shows the options of a command.\n");
}

/* `vks cred --help` (stdout, 0) and `vks cred` alone (stderr, 2): that group's commands only. */
static void group_usage(FILE *out, const char *group)
{
    fprintf(out, "usage: vks %s <command> [options]\n\ncommands:\n", group);
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].group, group) == 0)
            fprintf(out, "  vks %s %-10s %s\n", commands[i].group, commands[i].name, commands[i].summary);
    fprintf(out, "\n'vks %s <command> --help' shows the options of a command.\n", group);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "serve")) /* the web admin is its own program (libevent): web/, cli/serve.c */
        return vks_cli_serve(argc - 1, argv + 1);
    bool group_known = false;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].group, argv[1]) != 0)
            continue;
        group_known = true;
        if (commands[i].name[0] == '\0') { /* a command without a sub-command: `vks rekey ...` */
            for (int a = 2; a < argc; a++)
                if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
                    fputs(commands[i].usage, stdout);
                    return 0;
                }
            return commands[i].run(argc - 1, argv + 1);
        }
        if (argc >= 3 && strcmp(commands[i].name, argv[2]) == 0) {
            for (int a = 3; a < argc; a++)
                if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
                    fputs(commands[i].usage, stdout);
                    return 0;
                }
            return commands[i].run(argc - 2, argv + 2);
        }
    }
    if (group_known && (argc < 3 || !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h") ||
                        !strcmp(argv[2], "help"))) {
        bool asked = argc >= 3;
        group_usage(asked ? stdout : stderr, argv[1]);
        return asked ? 0 : 2;
    }
    if (group_known)
        fprintf(stderr, "vks: unknown command '%s %s'\n\n", argv[1], argv[2]);
    else
        fprintf(stderr, "vks: unknown command group '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
