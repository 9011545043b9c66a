/*
 * The operator CLI `vks <group> <command> [options]`. Each command is a function in its own
 * cli/<group>.c file, listed in the table of cli/vks.c. Commands return the process exit status
 * and print their own usage on bad arguments (status 2).
 */
#ifndef VKS_CLI_H
#define VKS_CLI_H

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

#endif
