/* SPDX-License-Identifier: MIT */
/*
 * Cluster PKI: one cluster CA signs a certificate for the controller, for
 * each node and for each admin. A certificate names its holder: the subject
 * common name (CN) is the holder's name and the organizational unit (OU) is
 * its role. Peers check both, not just the chain (see fab/tls.h).
 *
 * Files in a PKI directory:
 *   ca.crt, ca.key                       the cluster CA
 *   controller.crt, controller.key       role controller (serverAuth)
 *   node-<name>.crt, node-<name>.key     role node (serverAuth + clientAuth:
 *                                        nodes also accept fabric sessions)
 *   admin-<name>.crt, admin-<name>.key   role admin (clientAuth)
 * Keys are EC P-256, PEM, written with mode 0600; certificates 0644.
 */
#ifndef FAB_PKI_H
#define FAB_PKI_H

#include <stddef.h>

#include <openssl/x509.h>

enum fab_role {
	FAB_ROLE_NONE = 0,
	FAB_ROLE_CONTROLLER = 1,
	FAB_ROLE_NODE = 2,
	FAB_ROLE_ADMIN = 3,
};

#define FAB_NAME_MAX 64 /* including the NUL */

/* Who a certificate belongs to. */
struct fab_ident {
	enum fab_role role;
	char name[FAB_NAME_MAX];
};

/* "controller", "node", "admin" ("none" for FAB_ROLE_NONE). */
const char *fab_role_name(enum fab_role role);
/* Returns 0 or -EINVAL. */
int fab_role_parse(const char *s, enum fab_role *out);

/*
 * Holder names: 1..63 characters of [a-z0-9._-], starting with a letter or a
 * digit. The same rule applies to node names everywhere (registration, CLI).
 * Returns 0 or -EINVAL.
 */
int fab_name_valid(const char *name);

/*
 * Writes the certificate and key paths of a holder in dir into crt and key
 * (each of size len). Returns 0, -EINVAL for a bad name or role, or
 * -ENAMETOOLONG.
 */
int fab_pki_paths(const char *dir, enum fab_role role, const char *name, char *crt, char *key,
		  size_t len);

/*
 * Creates dir (mode 0700) if needed and a new self-signed cluster CA in it
 * (CN = cluster_name, basicConstraints CA:TRUE, keyUsage keyCertSign|cRLSign),
 * valid for days. Returns 0, -EEXIST if dir already holds a CA (never
 * overwritten), or a negative errno (-EIO for an OpenSSL failure, logged).
 */
int fab_pki_init_ca(const char *dir, const char *cluster_name, int days);

/*
 * Issues a certificate for (role, name), signed by the CA in dir, valid for
 * days, with a fresh key; random 128-bit serial; subjectAltName DNS:<name>.
 * Returns 0, -EEXIST if that holder's files exist (never overwritten), -ENOENT
 * if dir has no CA, -EINVAL for a bad role or name, or a negative errno.
 */
int fab_pki_issue(const char *dir, enum fab_role role, const char *name, int days);

/*
 * Reads the holder of a certificate: CN -> name, OU -> role. Returns 0, or
 * -EINVAL when the certificate has no single valid CN, no known OU, or a name
 * that fab_name_valid() refuses.
 */
int fab_pki_cert_ident(X509 *cert, struct fab_ident *out);

#endif
