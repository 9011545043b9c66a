/* vks_redact: every credential-bearing part of a URL is replaced, alone and inside text. */
#include <criterion/criterion.h>
#include <string.h>

#include "vks_redact.h"

static const char *url(const char *in)
{
    static char buf[512];
    size_t need = vks_redact_url(in, strlen(in), buf, sizeof buf);
    cr_assert_eq(need, strlen(buf), "returned length matches for %s", buf);
    return buf;
}

static const char *text(const char *in, size_t len)
{
    static char buf[1024];
    vks_redact_text(in, len, buf, sizeof buf);
    return buf;
}

Test(redact, user_info_in_every_form)
{
    cr_assert_str_eq(url("https://user:pw-REDACT-1@vault.example:8200/v1"), "https://<redacted>@vault.example:8200/v1");
    cr_assert_str_eq(url("https://token-only@vault.example"), "https://<redacted>@vault.example");
    cr_assert_str_eq(url("http://a:b@c@127.0.0.1:8200"), "http://<redacted>@127.0.0.1:8200"); /* '@' in the password */
    cr_assert_str_eq(url("https://u:p@[::1]:8200/x"), "https://<redacted>@[::1]:8200/x");
    cr_assert_str_eq(url("user:pw@vault.example:8200"), "<redacted>@vault.example:8200"); /* no scheme */
    cr_assert_str_eq(url("HTTPS://U:P@H"), "HTTPS://<redacted>@H");
}

Test(redact, query_and_fragment)
{
    cr_assert_str_eq(url("https://vault.example/v1/x?token=tok-REDACT-2&a=b"), "https://vault.example/v1/x?<redacted>");
    cr_assert_str_eq(url("https://vault.example/#access_token=t"), "https://vault.example/#<redacted>");
    cr_assert_str_eq(url("https://u:p@h/p?q#f"), "https://<redacted>@h/p?<redacted>#<redacted>");
    cr_assert_str_eq(url("https://h?q@x"), "https://h?<redacted>"); /* '@' after the authority is query */
}

Test(redact, plain_addresses_unchanged)
{
    cr_assert_str_eq(url("https://vault.example:8200"), "https://vault.example:8200");
    cr_assert_str_eq(url("http://127.0.0.1:8200/v1/secret/data/a@b"), "http://127.0.0.1:8200/v1/secret/data/a@b");
    cr_assert_str_eq(url(""), "");
}

Test(redact, control_bytes_and_nul_never_printed)
{
    const char in[] = "https://h/a\0b\nc";
    char buf[64];
    vks_redact_url(in, sizeof in - 1, buf, sizeof buf);
    cr_assert_str_eq(buf, "https://h/a?b?c");
}

Test(redact, text_with_several_urls)
{
    const char *in = "policy error: cannot reach https://admin:pw-REDACT-3@vault.example:8200/v1?x=1 "
                     "nor \"http://u@127.0.0.1:8200\", see http://docs.example/a.";
    cr_assert_str_eq(text(in, strlen(in)),
                     "policy error: cannot reach https://<redacted>@vault.example:8200/v1?<redacted> "
                     "nor \"http://<redacted>@127.0.0.1:8200\", see http://docs.example/a.");
    const char *kv = "{ vault_address = \"https://u:p@v:1\", vault_path = \"smtp-auth/a\" }";
    cr_assert_str_eq(text(kv, strlen(kv)), "{ vault_address = \"https://<redacted>@v:1\", vault_path = \"smtp-auth/a\" }");
    const char *odd = "at ://u:p@h and x://y z";
    cr_assert_str_eq(text(odd, strlen(odd)), "at ://<redacted>@h and x://y z");
    const char *lines = "line 1\n\tline 2 ftp://a:b@c\n";
    cr_assert_str_eq(text(lines, strlen(lines)), "line 1\n\tline 2 ftp://<redacted>@c\n");
}

Test(redact, snprintf_like_sizes_and_truncation)
{
    const char *in = "see https://u:p@h/x?y";
    size_t need = vks_redact_text(in, strlen(in), NULL, 0);
    cr_assert_eq(need, strlen("see https://<redacted>@h/x?<redacted>"));
    char small[12];
    cr_assert_eq(vks_redact_text(in, strlen(in), small, sizeof small), need);
    cr_assert_str_eq(small, "see https:/");
    char one[1];
    cr_assert_eq(vks_redact_url("https://u:p@h", 13, one, 1), strlen("https://<redacted>@h"));
    cr_assert_str_eq(one, "");
    /* a truncated result never ends inside the user info: it was never copied */
    char mid[20];
    vks_redact_url("https://user:secretsecret@h", 27, mid, sizeof mid);
    cr_assert_null(strstr(mid, "secret"));
}
