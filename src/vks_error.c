#include "vks_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const codes[VKS_STATUS_COUNT] = {
    [VKS_OK] = "ok",
    [VKS_E_BAD_KEYSOURCE] = "bad_keysource",
    [VKS_E_NOT_FOUND] = "not_found",
    [VKS_E_DELETED] = "deleted",
    [VKS_E_DESTROYED] = "destroyed",
    [VKS_E_MISSING_KEY] = "missing_key",
    [VKS_E_PERMISSION_DENIED] = "permission_denied",
    [VKS_E_AUTH_FAILED] = "auth_failed",
    [VKS_E_SEALED] = "sealed",
    [VKS_E_UNAVAILABLE] = "unavailable",
    [VKS_E_TIMEOUT] = "timeout",
    [VKS_E_TLS] = "tls",
    [VKS_E_BAD_RESPONSE] = "bad_response",
    [VKS_E_DECRYPT_FAILED] = "decrypt_failed",
    [VKS_E_NOT_ENCRYPTED] = "not_encrypted",
    [VKS_E_FILE_ERROR] = "file_error",
    [VKS_E_RESTRICTED] = "restricted",
    [VKS_E_AUDIT_UNAVAILABLE] = "audit_unavailable",
    [VKS_E_LOCKED_MEMORY] = "locked_memory",
    [VKS_E_REVOKED] = "revoked",
    [VKS_E_INVALID_ARG] = "invalid_argument",
    [VKS_E_CONFIG] = "config",
    [VKS_E_NOMEM] = "out_of_memory",
    [VKS_E_INTERNAL] = "internal",
    [VKS_E_NOT_CACHED] = "not_cached",
    [VKS_E_INVALID_INPUT] = "invalid_input",
    [VKS_E_EXISTS] = "exists",
    [VKS_E_CONFLICT] = "conflict",
    [VKS_E_REJECTED] = "rejected",
};

const char *vks_status_code(vks_status s)
{
    if ((unsigned)s >= VKS_STATUS_COUNT || codes[s] == NULL)
        return "internal";
    return codes[s];
}

vks_status vks_status_from_code(const char *code)
{
    if (code == NULL)
        return VKS_STATUS_COUNT;
    for (int i = 0; i < VKS_STATUS_COUNT; i++)
        if (codes[i] != NULL && strcmp(codes[i], code) == 0)
            return (vks_status)i;
    return VKS_STATUS_COUNT;
}

vks_status vks_err_set(struct vks_err *err, vks_status status, const char *fmt, ...)
{
    if (err != NULL) {
        err->status = status;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        if (n < 0)
            err->msg[0] = '\0';
    }
    return status;
}

void vks_err_clear(struct vks_err *err)
{
    if (err != NULL) {
        err->status = VKS_OK;
        err->msg[0] = '\0';
    }
}
