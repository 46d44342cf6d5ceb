// SPDX-License-Identifier: MIT
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "fab/log.h"
#include "fab/tls.h"

char *fab_tls_errors(char *buf, size_t len)
{
	size_t off = 0;
	unsigned long e;

	if (len)
		buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[256];
		int n;

		ERR_error_string_n(e, one, sizeof(one));
		n = snprintf(buf + off, len - off, "%s%s", off ? "; " : "", one);
		if (n < 0 || (size_t)n >= len - off)
			off = len ? len - 1 : 0;
		else
			off += (size_t)n;
	}
	return buf;
}

int fab_tls_ctx_new_files(const char *ca, const char *crt, const char *key, int server,
			  SSL_CTX **out)
{
	const char *const files[] = { ca, crt, key };
	char errs[512];
	SSL_CTX *ctx;

	for (size_t i = 0; i < 3; i++) {
		if (access(files[i], R_OK) != 0) {
			int e = errno;

			fab_err("tls: cannot read %s: %s", files[i], strerror(e));
			return e == ENOENT ? -ENOENT : -EINVAL;
		}
	}

	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		fab_err("tls: SSL_CTX_new: %s", fab_tls_errors(errs, sizeof(errs)));
		return -EIO;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
		goto fail_ssl;
	/* Trust the cluster CA and nothing else: no system store. */
	if (!SSL_CTX_load_verify_locations(ctx, ca, NULL))
		goto fail_files;
	if (SSL_CTX_use_certificate_chain_file(ctx, crt) != 1)
		goto fail_files;
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		goto fail_files;
	if (SSL_CTX_check_private_key(ctx) != 1)
		goto fail_files;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(ctx, 2);
	/* Our writes come from a queue whose buffer may move between retries. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* Session tickets buy nothing for long-lived connections. A peer that
	 * dies without close_notify is an EOF, not a protocol error: frames
	 * carry their own length, so truncation is still detected. */
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	*out = ctx;
	return 0;

fail_files:
	fab_err("tls: loading %s, %s, %s: %s", ca, crt, key, fab_tls_errors(errs, sizeof(errs)));
	SSL_CTX_free(ctx);
	return -EINVAL;
fail_ssl:
	fab_err("tls: configuring context: %s", fab_tls_errors(errs, sizeof(errs)));
	SSL_CTX_free(ctx);
	return -EIO;
}

int fab_tls_ctx_new(const char *dir, enum fab_role role, const char *name, int server,
		    SSL_CTX **out)
{
	char ca[PATH_MAX], crt[PATH_MAX], key[PATH_MAX];
	int rc;

	if (snprintf(ca, sizeof(ca), "%s/ca.crt", dir) >= (int)sizeof(ca))
		return -ENAMETOOLONG;
	rc = fab_pki_paths(dir, role, name, crt, key, sizeof(crt));
	if (rc)
		return rc;
	return fab_tls_ctx_new_files(ca, crt, key, server, out);
}

int fab_tls_peer_ident(SSL *ssl, struct fab_ident *out)
{
	X509 *peer;
	int rc;

	if (SSL_get_verify_result(ssl) != X509_V_OK)
		return -EACCES;
	peer = SSL_get1_peer_certificate(ssl);
	if (!peer)
		return -EACCES;
	rc = fab_pki_cert_ident(peer, out);
	X509_free(peer);
	return rc;
}

int fab_ident_check(const struct fab_ident *id, unsigned role_mask, const char *name)
{
	if (id->role == FAB_ROLE_NONE || !(role_mask & FAB_ROLE_BIT(id->role)))
		return -EACCES;
	if (name && strcmp(name, id->name) != 0)
		return -EACCES;
	return 0;
}
