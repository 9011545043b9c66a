/*
 * vks_hook: runs an operator-configured command with a secret on its standard input, under a
 * deadline (issue 12: rotation's set step, `vks cred rotate --set-hook CMD`). Design:
 * docs/internals/cred-rotate.md "The set hook".
 *
 * The command runs as `/bin/sh -c CMD` in its own process group (posix_spawn, no fork of this
 * process's memory), stdin a pipe that receives the secret followed by one newline and is then
 * closed, stdout redirected to this process's stderr (so a program's own stdout, e.g. --json,
 * stays clean), stderr inherited. The environment is this process's MINUS every VAULT_* and VKS_*
 * variable (the Vault token and the encryption keys are not the hook's business), PLUS the
 * caller's `env` entries ("NAME=value"). When the deadline passes, the whole process group gets
 * SIGKILL and the call returns VKS_E_TIMEOUT; it never waits longer than the deadline plus the
 * reaping of the killed process.
 *
 * Errors: VKS_E_INVALID_INPUT (empty command, a newline-free secret is required: a secret holding
 * '\n' or NUL is refused, naming no byte), VKS_E_REJECTED (the command exited non-zero or was
 * killed by a signal: the status is in the message and in *exit_status), VKS_E_TIMEOUT, VKS_E_INTERNAL
 * (spawn or pipe failure, errno text in the message), VKS_E_INVALID_ARG (more than
 * VKS_HOOK_MAX_ENV env entries: a caller's bug), VKS_E_NOMEM. Messages never contain the secret.
 *
 * SIGPIPE: a command that exits without reading stdin makes the write fail with EPIPE; the
 * signal is blocked in the calling thread for the write and a SIGPIPE it raised is consumed.
 *
 * Ownership: everything borrowed. Thread-safety: reentrant (no global state; posix_spawn).
 */
#ifndef VKS_HOOK_H
#define VKS_HOOK_H

#include <stddef.h>

#include "vks_error.h"
#include "vks_secmem.h"

#define VKS_HOOK_DEFAULT_TIMEOUT_MS 60000
#define VKS_HOOK_MAX_ENV 8

/* timeout_ms <= 0: VKS_HOOK_DEFAULT_TIMEOUT_MS. *exit_status (may be NULL): the exit code, 128+signal
 * when killed by a signal, -1 when it did not end by itself (timeout) or was never started. */
vks_status vks_hook_run(const char *command, const vks_secret *secret, const char *const *env, size_t nenv,
                        int timeout_ms, int *exit_status, struct vks_err *err);

#endif
