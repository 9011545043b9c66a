/*
 * vks-agent inbound: the verify endpoint on the [vault_api] listener (placeholder until wired).
 */
#include <stdlib.h>

#include "inbound_int.h"

void ag_inbound_http_job_done(struct in_job *j);

void ag_inbound_http_job_done(struct in_job *j)
{
    vks_secret_free(&j->pw);
    free(j);
}
