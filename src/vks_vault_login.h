/*
 * vks_vault_login: an operator's own Vault login for `vks serve` (docs/internals/serve.md): the
 * userpass method (POST auth/<mount>/login/<username> {"password": ...}) that returns the
 * operator's client token. The token auth method needs no call here: the operator's token is
 * used as given (vks_vault_new with cfg.token) and checked with vks_vault_token_identity.
 *
 * Secrets: the password and the returned token live only in vks_secret arena slots and a scratch
 * request body (wiped); neither ever appears in an error message.
 * Ownership: cfg, username, password borrowed; *token is a fresh arena slot the caller frees with
 * vks_secret_free. Thread-safety: reentrant (each call makes and frees its own HTTP client).
 * Errors: VKS_E_AUTH_FAILED (Vault answered 400/401/403: wrong name or password, the message says
 * only that), VKS_E_INVALID_INPUT (a username Vault could not take in a path), VKS_E_BAD_RESPONSE,
 * VKS_E_SEALED (HTTP 503), VKS_E_UNAVAILABLE (any other answer but 200), and the transport's codes
 * (vks_http_do).
 */
#ifndef VKS_VAULT_LOGIN_H
#define VKS_VAULT_LOGIN_H

#include "vks_error.h"
#include "vks_secmem.h"
#include "vks_vault.h"

#define VKS_USERPASS_NAME_MAX 128

vks_status vks_vault_userpass_login(const struct vks_vault_config *cfg, const char *mount, const char *username,
                                    const vks_secret *password, vks_secret *token, struct vks_err *err);

/* A username the userpass method takes: 1..VKS_USERPASS_NAME_MAX of [A-Za-z0-9._@-]. Pure. */
bool vks_vault_userpass_name_ok(const char *username);

#endif
