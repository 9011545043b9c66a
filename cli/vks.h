/*
 * The operator CLI `vks <group> <command> [options]`. Each command is a function in its own
 * cli/<group>.c file, listed in the table of cli/vks.c. Commands return the process exit status
 * and print their own usage on bad arguments (status 2).
 */
#ifndef VKS_CLI_H
#define VKS_CLI_H

#include <stdbool.h>

struct vks_cli_command {
    const char *group;
    const char *name;
    const char *summary;
    const char *usage;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
};

/* cli/audit.c */
int vks_cli_audit_verify(int argc, char **argv);
extern const char vks_cli_audit_verify_usage[];
struct vks_audit_verifier;
int vks_cli_audit_feed(struct vks_audit_verifier *v, const char *path, bool syslog_framed,
                       const char *prog);
/* cli/audit_report.c */
int vks_cli_audit_report(int argc, char **argv);
extern const char vks_cli_audit_report_usage[];

/* cli/envelope.c */
int vks_cli_envelope_encrypt(int argc, char **argv);
int vks_cli_envelope_check(int argc, char **argv);
int vks_cli_envelope_inspect(int argc, char **argv);
int vks_cli_envelope_rekey(int argc, char **argv);
int vks_cli_envelope_keys(int argc, char **argv);
int vks_cli_envelope_genkey(int argc, char **argv);
extern const char vks_cli_envelope_encrypt_usage[], vks_cli_envelope_check_usage[],
    vks_cli_envelope_inspect_usage[], vks_cli_envelope_rekey_usage[],
    vks_cli_envelope_keys_usage[], vks_cli_envelope_genkey_usage[];

/* cli/envelope.c: reads stdin into a fresh arena slot of cap bytes (echo off on a terminal, one
 * trailing newline dropped); 0 or -1 after printing why. */
#include "vks_secmem.h"
/* The exit status of a failed act: 1 for a local problem, 2 for a remote one (docs: exit status). */
int vks_cli_exit_code(vks_status st);
int vks_cli_read_secret(vks_secret *s, size_t cap, const char *what);

/* cli/cred.c */
int vks_cli_cred_create(int argc, char **argv);
int vks_cli_cred_list(int argc, char **argv);
int vks_cli_cred_show(int argc, char **argv);
int vks_cli_cred_reveal(int argc, char **argv);
int vks_cli_cred_restrict(int argc, char **argv);
int vks_cli_cred_delete(int argc, char **argv);
int vks_cli_cred_due(int argc, char **argv);
extern const char vks_cli_cred_create_usage[], vks_cli_cred_list_usage[], vks_cli_cred_show_usage[],
    vks_cli_cred_reveal_usage[], vks_cli_cred_restrict_usage[], vks_cli_cred_delete_usage[],
    vks_cli_cred_due_usage[];

/* cli/cred_rotate.c */
int vks_cli_cred_rotate(int argc, char **argv);
int vks_cli_cred_rollback(int argc, char **argv);
extern const char vks_cli_cred_rotate_usage[], vks_cli_cred_rollback_usage[];

/* cli/cred_rotate_due.c: `vks cred rotate --due ...` (argv as given to `vks cred rotate`) */
int vks_cli_cred_rotate_due(int argc, char **argv);
extern const char vks_cli_cred_rotate_due_usage[];

/* cli/cred_reset.c: the emergency reset */
int vks_cli_cred_reset(int argc, char **argv);
extern const char vks_cli_cred_reset_usage[];

/* cli/backup.c */
int vks_cli_backup_create(int argc, char **argv);
int vks_cli_backup_verify(int argc, char **argv);
int vks_cli_backup_restore(int argc, char **argv);
extern const char vks_cli_backup_create_usage[], vks_cli_backup_verify_usage[], vks_cli_backup_restore_usage[];

/* cli/rekey.c: `vks rekey` (no sub-command: its row in cli/vks.c has the name "") */
int vks_cli_rekey(int argc, char **argv);
extern const char vks_cli_rekey_usage[];
/* `vks serve ARGS`: execs vks-serve (beside this program, else $VKS_SERVE, else on PATH). */
int vks_cli_serve(int argc, char **argv);

#endif
