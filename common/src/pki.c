// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "fab/log.h"
#include "fab/pki.h"

/* Certificates start this far in the past so peers with slow clocks accept them. */
#define PKI_SKEW_SEC (5 * 60)

static const char *const role_names[] = {
	[FAB_ROLE_NONE] = "none",
	[FAB_ROLE_CONTROLLER] = "controller",
	[FAB_ROLE_NODE] = "node",
	[FAB_ROLE_ADMIN] = "admin",
};

/* What each role may do in a TLS handshake; libssl checks it against the EKU. */
static const char *const role_eku[] = {
	[FAB_ROLE_CONTROLLER] = "serverAuth",
	[FAB_ROLE_NODE] = "serverAuth,clientAuth",
	[FAB_ROLE_ADMIN] = "clientAuth",
};

struct pki_ext {
	int nid;
	const char *value;
};

static int role_valid(enum fab_role role)
{
	return role > FAB_ROLE_NONE && role <= FAB_ROLE_ADMIN;
}

/* Logs what failed with the drained OpenSSL error queue, so that stale errors
 * never end up attached to a later, unrelated failure. */
__attribute__((format(printf, 1, 2))) static void pki_ossl_err(const char *fmt, ...)
{
	char what[256], errs[512] = "", one[256];
	unsigned long e;
	size_t off = 0;
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, one, sizeof(one));
		n = snprintf(errs + off, sizeof(errs) - off, "%s%s", off ? "; " : "", one);
		if (n < 0 || (size_t)n >= sizeof(errs) - off)
			off = sizeof(errs) - 1;
		else
			off += (size_t)n;
	}
	fab_err("pki: %s: %s", what, off ? errs : "unknown OpenSSL error");
}

const char *fab_role_name(enum fab_role role)
{
	return role_valid(role) ? role_names[role] : role_names[FAB_ROLE_NONE];
}

int fab_role_parse(const char *s, enum fab_role *out)
{
	/* "none" is not a role anyone can hold, so it does not parse. */
	for (int r = FAB_ROLE_CONTROLLER; s && r <= FAB_ROLE_ADMIN; r++) {
		if (!strcmp(s, role_names[r])) {
			*out = (enum fab_role)r;
			return 0;
		}
	}
	return -EINVAL;
}

int fab_name_valid(const char *name)
{
	size_t i;

	if (!name || !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
		return -EINVAL;
	for (i = 0; name[i]; i++) {
		char c = name[i];

		if (i >= FAB_NAME_MAX - 1)
			return -EINVAL;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return -EINVAL;
	}
	return 0;
}

static int path_fmt(char *buf, size_t len, const char *dir, const char *stem, const char *ext)
{
	int n = snprintf(buf, len, "%s/%s.%s", dir, stem, ext);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int fab_pki_paths(const char *dir, enum fab_role role, const char *name, char *crt, char *key,
		  size_t len)
{
	char stem[FAB_NAME_MAX + 16];
	int err;

	if (!dir || !role_valid(role) || fab_name_valid(name))
		return -EINVAL;
	/* There is one controller per cluster: its files do not carry its name. */
	if (role == FAB_ROLE_CONTROLLER)
		snprintf(stem, sizeof(stem), "controller");
	else
		snprintf(stem, sizeof(stem), "%s-%s", role_names[role], name);
	err = path_fmt(crt, len, dir, stem, "crt");
	return err ? err : path_fmt(key, len, dir, stem, "key");
}

/* 0 if nothing is at path, -EEXIST if anything is (a dangling symlink too,
 * since O_EXCL would refuse it), or another negative errno. */
static int path_free(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0)
		return -EEXIST;
	return errno == ENOENT ? 0 : -errno;
}

/*
 * Writes cert or key as PEM to a new file at path with exactly mode (fchmod,
 * because umask only ever removes bits). O_EXCL means an existing file is
 * never touched; whatever this call created is removed again on any error, so
 * a caller never finds a truncated key or certificate.
 */
static int pem_write(const char *path, mode_t mode, X509 *cert, EVP_PKEY *key)
{
	BIO *bio = NULL;
	FILE *fp;
	int fd, err = 0;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode) < 0 || !(fp = fdopen(fd, "w"))) {
		err = -errno;
		close(fd);
		goto out_unlink;
	}
	bio = BIO_new_fp(fp, BIO_NOCLOSE);
	if (!bio || !(cert ? PEM_write_bio_X509(bio, cert)
			   : PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))) {
		pki_ossl_err("writing %s", path);
		err = -EIO;
	}
	BIO_free(bio);
	/* A key that vanishes in a crash would leave its certificate useless. */
	if (!err && (fflush(fp) == EOF || fsync(fileno(fp)) < 0))
		err = -errno;
	if (fclose(fp) == EOF && !err)
		err = -errno;
out_unlink:
	if (err)
		unlink(path);
	return err;
}

/* Our keys are never encrypted; refuse rather than let OpenSSL prompt on a tty. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/* Reads a certificate (cert != NULL) or a private key from a PEM file. */
static int pem_read(const char *path, X509 **cert, EVP_PKEY **key)
{
	FILE *fp = fopen(path, "re");
	int ok;

	if (!fp)
		return -errno;
	if (cert)
		ok = (*cert = PEM_read_X509(fp, NULL, no_passphrase, NULL)) != NULL;
	else
		ok = (*key = PEM_read_PrivateKey(fp, NULL, no_passphrase, NULL)) != NULL;
	fclose(fp);
	if (!ok) {
		pki_ossl_err("reading %s", path);
		return -EINVAL;
	}
	return 0;
}

static int key_new(EVP_PKEY **out)
{
	*out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!*out) {
		pki_ossl_err("generating an EC P-256 key");
		return -EIO;
	}
	return 0;
}

/*
 * Builds a certificate for key with subject, signed by sign_key. issuer is the
 * CA certificate, or NULL for a self-signed one; the extension values are
 * resolved against it (authorityKeyIdentifier copies its key identifier).
 */
static int cert_new(EVP_PKEY *key, X509_NAME *subject, X509 *issuer, EVP_PKEY *sign_key, int days,
		    const struct pki_ext *ext, size_t n_ext, X509 **out)
{
	unsigned char serial[16];
	char subj[256];
	time_t now = time(NULL);
	X509_EXTENSION *ex;
	X509V3_CTX v3;
	BIGNUM *bn = NULL;
	X509 *x;

	/* 128 random bits with the top one cleared, so the DER INTEGER stays
	 * positive in 16 octets; the next one set so it can never be zero. */
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		goto fail;
	serial[0] = (serial[0] & 0x7f) | 0x40;

	x = X509_new();
	if (!x)
		goto fail;
	if (!X509_set_version(x, X509_VERSION_3) ||
	    !(bn = BN_bin2bn(serial, sizeof(serial), NULL)) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !X509_set_subject_name(x, subject) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x)) ||
	    !X509_time_adj_ex(X509_getm_notBefore(x), 0, -PKI_SKEW_SEC, &now) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, &now) || !X509_set_pubkey(x, key))
		goto fail_x;

	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	for (size_t i = 0; i < n_ext; i++) {
		ex = X509V3_EXT_conf_nid(NULL, &v3, ext[i].nid, ext[i].value);
		if (!ex || !X509_add_ext(x, ex, -1)) {
			X509_EXTENSION_free(ex);
			goto fail_x;
		}
		X509_EXTENSION_free(ex);
	}
	if (!X509_sign(x, sign_key, EVP_sha256()))
		goto fail_x;
	BN_free(bn);
	*out = x;
	return 0;

fail_x:
	BN_free(bn);
	X509_free(x);
fail:
	pki_ossl_err("building the certificate of %s",
		     X509_NAME_oneline(subject, subj, sizeof(subj)));
	return -EIO;
}

/* A subject of an OU (NULL for none) and a CN. */
static int name_new(const char *ou, const char *cn, X509_NAME **out)
{
	X509_NAME *nm = X509_NAME_new();

	if (!nm ||
	    (ou && !X509_NAME_add_entry_by_NID(nm, NID_organizationalUnitName, MBSTRING_UTF8,
					       (const unsigned char *)ou, -1, -1, 0)) ||
	    !X509_NAME_add_entry_by_NID(nm, NID_commonName, MBSTRING_UTF8,
					(const unsigned char *)cn, -1, -1, 0)) {
		pki_ossl_err("building the subject CN=%s", cn);
		X509_NAME_free(nm);
		return -EIO;
	}
	*out = nm;
	return 0;
}

/* Writes key then certificate; a key whose certificate could not be written is
 * removed again, so a holder has both files or neither. */
static int pair_write(const char *crt_path, const char *key_path, X509 *cert, EVP_PKEY *key)
{
	int err = pem_write(key_path, 0600, NULL, key);

	if (err)
		return err;
	err = pem_write(crt_path, 0644, cert, NULL);
	if (err)
		unlink(key_path);
	return err;
}

int fab_pki_init_ca(const char *dir, const char *cluster_name, int days)
{
	static const struct pki_ext ext[] = {
		{ NID_basic_constraints, "critical,CA:TRUE" },
		{ NID_key_usage, "critical,keyCertSign,cRLSign" },
		{ NID_subject_key_identifier, "hash" },
	};
	char crt[PATH_MAX], key_path[PATH_MAX];
	X509_NAME *subject = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int err;

	if (!dir || !cluster_name || !cluster_name[0] || strlen(cluster_name) >= FAB_NAME_MAX ||
	    days < 1)
		return -EINVAL;
	err = path_fmt(crt, sizeof(crt), dir, "ca", "crt");
	if (!err)
		err = path_fmt(key_path, sizeof(key_path), dir, "ca", "key");
	if (err)
		return err;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	/* Cheap refusal before generating anything; O_EXCL still settles races. */
	err = path_free(crt);
	if (!err)
		err = path_free(key_path);
	if (err)
		return err;

	ERR_clear_error();
	err = key_new(&key);
	if (err)
		return err;
	err = name_new(NULL, cluster_name, &subject);
	if (err)
		goto out_key;
	err = cert_new(key, subject, NULL, key, days, ext, sizeof(ext) / sizeof(ext[0]), &cert);
	if (err)
		goto out_subject;
	err = pair_write(crt, key_path, cert, key);

	X509_free(cert);
out_subject:
	X509_NAME_free(subject);
out_key:
	EVP_PKEY_free(key);
	return err;
}

int fab_pki_issue(const char *dir, enum fab_role role, const char *name, int days)
{
	char ca_crt[PATH_MAX], ca_key_path[PATH_MAX], crt[PATH_MAX], key_path[PATH_MAX];
	char san[FAB_NAME_MAX + 8];
	/* Built before role is checked, hence the guarded index. */
	const struct pki_ext ext[] = {
		{ NID_basic_constraints, "critical,CA:FALSE" },
		{ NID_key_usage, "critical,digitalSignature" },
		{ NID_ext_key_usage, role_valid(role) ? role_eku[role] : NULL },
		{ NID_subject_alt_name, san },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
	};
	X509 *ca = NULL, *cert = NULL;
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509_NAME *subject = NULL;
	int err;

	if (days < 1)
		return -EINVAL;
	err = fab_pki_paths(dir, role, name, crt, key_path, sizeof(crt));
	if (err)
		return err;
	err = path_fmt(ca_crt, sizeof(ca_crt), dir, "ca", "crt");
	if (!err)
		err = path_fmt(ca_key_path, sizeof(ca_key_path), dir, "ca", "key");
	if (err)
		return err;
	snprintf(san, sizeof(san), "DNS:%s", name);

	ERR_clear_error();
	err = pem_read(ca_crt, &ca, NULL);
	if (err)
		return err;
	err = pem_read(ca_key_path, NULL, &ca_key);
	if (err)
		goto out_ca;
	if (X509_check_private_key(ca, ca_key) != 1) {
		pki_ossl_err("%s does not belong to %s", ca_key_path, ca_crt);
		err = -EINVAL;
		goto out_ca_key;
	}
	err = path_free(crt);
	if (!err)
		err = path_free(key_path);
	if (err)
		goto out_ca_key;

	err = key_new(&key);
	if (err)
		goto out_ca_key;
	err = name_new(role_names[role], name, &subject);
	if (err)
		goto out_key;
	err = cert_new(key, subject, ca, ca_key, days, ext, sizeof(ext) / sizeof(ext[0]), &cert);
	if (err)
		goto out_subject;
	err = pair_write(crt, key_path, cert, key);

	X509_free(cert);
out_subject:
	X509_NAME_free(subject);
out_key:
	EVP_PKEY_free(key);
out_ca_key:
	EVP_PKEY_free(ca_key);
out_ca:
	X509_free(ca);
	return err;
}

/* Copies the one entry of nid in nm, as UTF-8, into buf. -EINVAL if there is
 * not exactly one, or it does not fit, or it hides a NUL. */
static int name_entry(const X509_NAME *nm, int nid, char *buf, size_t len)
{
	unsigned char *utf8;
	int i, n;

	i = X509_NAME_get_index_by_NID(nm, nid, -1);
	if (i < 0 || X509_NAME_get_index_by_NID(nm, nid, i) >= 0)
		return -EINVAL;
	n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)));
	if (n < 0) {
		/* Malformed peer data, not our failure: nothing worth logging. */
		ERR_clear_error();
		return -EINVAL;
	}
	if ((size_t)n >= len || memchr(utf8, '\0', (size_t)n)) {
		OPENSSL_free(utf8);
		return -EINVAL;
	}
	memcpy(buf, utf8, (size_t)n);
	buf[n] = '\0';
	OPENSSL_free(utf8);
	return 0;
}

int fab_pki_cert_ident(X509 *cert, struct fab_ident *out)
{
	const X509_NAME *nm;
	struct fab_ident id;
	char ou[16];

	if (!cert || !(nm = X509_get_subject_name(cert)))
		return -EINVAL;
	if (name_entry(nm, NID_commonName, id.name, sizeof(id.name)) || fab_name_valid(id.name) ||
	    name_entry(nm, NID_organizationalUnitName, ou, sizeof(ou)) ||
	    fab_role_parse(ou, &id.role))
		return -EINVAL;
	*out = id;
	return 0;
}
