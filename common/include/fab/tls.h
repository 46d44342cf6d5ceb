/* SPDX-License-Identifier: MIT */
/*
 * TLS contexts for the cluster: TLS 1.3 only, mutual authentication against
 * the cluster CA, and the peer's identity (role and name from its
 * certificate, see fab/pki.h) checked after the chain. Both ends of every
 * connection present a certificate.
 */
#ifndef FAB_TLS_H
#define FAB_TLS_H

#include <openssl/ssl.h>

#include "fab/pki.h"

/* Role masks for fab_ident_check(). */
#define FAB_ROLE_BIT(r) (1u << (r))

/*
 * Creates an SSL_CTX for the holder (role, name) of the PKI in dir: trusts
 * only dir/ca.crt, presents the holder's certificate and key, TLS 1.3 only,
 * peer certificate required in both directions (a server refuses a client
 * with none). Returns 0 with *out owned by the caller (SSL_CTX_free), or
 * -ENOENT (a file is missing), -EINVAL (files unreadable, key mismatch),
 * -EIO; the reason is logged.
 */
int fab_tls_ctx_new(const char *dir, enum fab_role role, const char *name, int server,
		    SSL_CTX **out);

/* The same from explicit file paths. */
int fab_tls_ctx_new_files(const char *ca, const char *crt, const char *key, int server,
			  SSL_CTX **out);

/*
 * After a completed handshake: the identity in the peer's verified
 * certificate. Returns 0, -EACCES if the chain was not verified or there is
 * no peer certificate, -EINVAL if the certificate names no valid holder.
 */
int fab_tls_peer_ident(SSL *ssl, struct fab_ident *out);

/*
 * Checks an identity against a policy: its role must be in role_mask
 * (FAB_ROLE_BIT()s) and, if name is not NULL, its name must equal name.
 * Returns 0 or -EACCES.
 */
int fab_ident_check(const struct fab_ident *id, unsigned role_mask, const char *name);

/* Appends OpenSSL's queued errors to buf as "; "-separated text and clears
 * the queue. Returns buf. */
char *fab_tls_errors(char *buf, size_t len);

#endif
