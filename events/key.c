/*
 * key.c - idempotency keys of events: what a valid key is, an event's digest (SHA-256 from
 * OpenSSL's libcrypto, never a hash of our own), and keys given from outside an event (the
 * Idempotency-Key header, a CloudEvent's source and id, checked here; body.c attaches them to
 * a batch). Pure: no I/O.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/err.h"
#include "events/internal.h"

bool
ev_key_derived(const char *key, size_t len)
{
    static const char *const prefixes[] = {SEGMENT_KEY_PREFIX, SEGMENT_TYPED_KEY_PREFIX,
                                           SEGMENT_KEY_HASH_PREFIX, SEGMENT_TYPED_KEY_HASH_PREFIX};

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);

        if (len >= n && memcmp(key, prefixes[i], n) == 0) {
            return true;
        }
    }
    return false;
}

/* ev_key_check's rules; derived: the server's own key, which may begin as ev_key_derived. */
static int
key_check(const char *key, size_t len, const char *what, bool derived, char err[EV_ERR_MAX])
{
    const unsigned char *u = (const unsigned char *)key;
    size_t i = 0;

    if (len == 0) {
        return ev_errf(err, "%s: must not be empty", what);
    }
    if (len > EV_KEY_MAX) {
        return ev_errf(err, "%s: longer than %d bytes (%zu)", what, EV_KEY_MAX, len);
    }
    while (i < len) {
        size_t n = ev_utf8_len(u + i, len - i);

        if (n == 0) {
            return ev_errf(err, "%s: invalid UTF-8 at byte %zu", what, i);
        }
        /* C0 controls, DEL, and C1 controls (U+0080-U+009F: 0xc2 0x80-0x9f). */
        if (u[i] < 0x20 || u[i] == 0x7f || (n == 2 && u[i] == 0xc2 && u[i + 1] < 0xa0)) {
            return ev_errf(err, "%s: control character at byte %zu", what, i);
        }
        i += n;
    }
    if (!derived && ev_key_derived(key, len)) {
        return ev_errf(err,
                       "%s: begins with \"%.*s\", which only the keys the server derives from "
                       "Segment messageIds use",
                       what, (int)((const char *)memchr(key, ':', len) - key) + 1, key);
    }
    return 0;
}

int
ev_key_check(const char *key, size_t len, const char *what, char err[EV_ERR_MAX])
{
    return key_check(key, len, what, false, err);
}

int
ev_key_check_derived(const char *key, size_t len, const char *what, char err[EV_ERR_MAX])
{
    return key_check(key, len, what, true, err);
}

/* SHA-256 fetched once: EVP_sha256() makes every EVP_Digest fetch it again, which costs
 * as much as hashing a small event. Never freed: the process holds it to the end. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void
sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void
ev_digest(const char *s, size_t len, uint8_t out[EV_DIGEST_LEN])
{
    unsigned int n = EV_DIGEST_LEN;
    const EVP_MD *md;

    pthread_once(&sha256_once, sha256_fetch);
    md = sha256_md != NULL ? sha256_md : EVP_sha256();

    while (len > 0 && strchr(" \t\r\n", s[0]) != NULL && s[0] != '\0') {
        s++;
        len--;
    }
    while (len > 0 && strchr(" \t\r\n", s[len - 1]) != NULL && s[len - 1] != '\0') {
        len--;
    }
    /* EVP_Digest with SHA-256 cannot fail short of memory exhaustion; then the digest is
     * all zeroes, which only makes a repeat a conflict (409), never a silent duplicate. */
    if (EVP_Digest(s, len, out, &n, md, NULL) != 1) {
        memset(out, 0, EV_DIGEST_LEN);
    }
}
