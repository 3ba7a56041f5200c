/*
 * openssl3.c - datapipe-tls-compat.so, a shim with the soname "libssl.so".
 * Debian 12's civetweb 1.15 loads OpenSSL with dlopen("libssl.so") and looks
 * up SSL_get_peer_certificate, which OpenSSL 3 only has as a macro; without
 * it civetweb's TLS set-up fails (or crashes). The server loads this shim
 * first, so civetweb's dlopen finds it and its lookups fall through to
 * libssl.so.3 for every other symbol. Never used without a TLS port.
 */
#include <openssl/ssl.h>

#undef SSL_get_peer_certificate

X509 *SSL_get_peer_certificate(const SSL *s);

X509 *
SSL_get_peer_certificate(const SSL *s)
{
    return SSL_get1_peer_certificate(s);
}
