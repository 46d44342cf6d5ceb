// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "fab/log.h"
#include "fab/pki.h"

#define DAYS 30

/* Two fresh directories per test, removed even when the test fails. */
struct tmp {
	char a[PATH_MAX], b[PATH_MAX];
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int tmp_setup(void **state)
{
	static struct tmp t;
	const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	snprintf(t.a, sizeof(t.a), "%s/fab-pki-XXXXXX", base);
	snprintf(t.b, sizeof(t.b), "%s/fab-pki-XXXXXX", base);
	if (!mkdtemp(t.a))
		return -1;
	if (!mkdtemp(t.b)) {
		rmdir(t.a);
		return -1;
	}
	*state = &t;
	return 0;
}

static int tmp_teardown(void **state)
{
	const struct tmp *t = *state;
	int rc = nftw(t->a, rm_one, 8, FTW_DEPTH | FTW_PHYS);

	return nftw(t->b, rm_one, 8, FTW_DEPTH | FTW_PHYS) | rc;
}

static void path_in(char *buf, const char *dir, const char *file)
{
	assert_true(snprintf(buf, PATH_MAX, "%s/%s", dir, file) < PATH_MAX);
}

static mode_t file_mode(const char *dir, const char *file)
{
	char path[PATH_MAX];
	struct stat st;

	path_in(path, dir, file);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	return st.st_mode & 07777;
}

static int file_exists(const char *dir, const char *file)
{
	char path[PATH_MAX];

	path_in(path, dir, file);
	return access(path, F_OK) == 0;
}

/* Whole file into a malloc'ed buffer; *len gets its size. */
static char *slurp(const char *dir, const char *file, size_t *len)
{
	char path[PATH_MAX], *buf;
	FILE *fp;
	long n;

	path_in(path, dir, file);
	fp = fopen(path, "rb");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n > 0);
	rewind(fp);
	buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

/* Entries in dir other than "." and "..". */
static int count_entries(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

static X509 *cert_load(const char *dir, const char *file)
{
	char path[PATH_MAX];
	X509 *cert;
	FILE *fp;

	path_in(path, dir, file);
	fp = fopen(path, "r");
	assert_non_null(fp);
	cert = PEM_read_X509(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(cert);
	return cert;
}

static EVP_PKEY *key_load(const char *dir, const char *file)
{
	char path[PATH_MAX];
	EVP_PKEY *key;
	FILE *fp;

	path_in(path, dir, file);
	fp = fopen(path, "r");
	assert_non_null(fp);
	key = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	assert_non_null(key);
	return key;
}

/* X509_verify_cert of dir/file against ca_dir/ca.crt as the only trust anchor,
 * in strict mode so that RFC 5280 profile slips show up too. */
static int verify(const char *ca_dir, const char *dir, const char *file)
{
	char ca[PATH_MAX];
	X509_STORE *store;
	X509_STORE_CTX *ctx;
	X509 *cert;
	int rc;

	path_in(ca, ca_dir, "ca.crt");
	store = X509_STORE_new();
	assert_non_null(store);
	assert_int_equal(X509_STORE_load_file(store, ca), 1);
	X509_STORE_set_flags(store, X509_V_FLAG_X509_STRICT);
	cert = cert_load(dir, file);
	ctx = X509_STORE_CTX_new();
	assert_non_null(ctx);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, cert, NULL), 1);
	rc = X509_verify_cert(ctx);
	X509_STORE_CTX_free(ctx);
	X509_free(cert);
	X509_STORE_free(store);
	return rc;
}

static void test_role_names(void **state)
{
	enum fab_role r;

	for (int i = FAB_ROLE_CONTROLLER; i <= FAB_ROLE_ADMIN; i++) {
		assert_int_equal(fab_role_parse(fab_role_name((enum fab_role)i), &r), 0);
		assert_int_equal(r, i);
	}
	assert_string_equal(fab_role_name(FAB_ROLE_CONTROLLER), "controller");
	assert_string_equal(fab_role_name(FAB_ROLE_NODE), "node");
	assert_string_equal(fab_role_name(FAB_ROLE_ADMIN), "admin");
	assert_string_equal(fab_role_name(FAB_ROLE_NONE), "none");
	assert_string_equal(fab_role_name((enum fab_role)42), "none");
	assert_int_equal(fab_role_parse("none", &r), -EINVAL);
	assert_int_equal(fab_role_parse("Node", &r), -EINVAL);
	assert_int_equal(fab_role_parse("", &r), -EINVAL);
}

static void test_name_valid(void **state)
{
	static const char *const good[] = { "a", "0", "n1", "node-1.rack_2", "a..", "9-" };
	static const char *const bad[] = { "",	 "UPPER", "nodeA", "-lead",    ".x",
					   "_x", "a/b",	  "a b",   "n\xc3\xa9" };
	char name[FAB_NAME_MAX + 1];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(fab_name_valid(good[i]), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(fab_name_valid(bad[i]), -EINVAL);
	assert_int_equal(fab_name_valid(NULL), -EINVAL);
	memset(name, 'a', FAB_NAME_MAX - 1);
	name[FAB_NAME_MAX - 1] = '\0';
	assert_int_equal(fab_name_valid(name), 0);
	name[FAB_NAME_MAX - 1] = 'a';
	name[FAB_NAME_MAX] = '\0';
	assert_int_equal(fab_name_valid(name), -EINVAL);
}

static void test_paths(void **state)
{
	char crt[PATH_MAX], key[PATH_MAX];

	assert_int_equal(
		fab_pki_paths("/etc/fab", FAB_ROLE_CONTROLLER, "ctl", crt, key, sizeof(crt)), 0);
	assert_string_equal(crt, "/etc/fab/controller.crt");
	assert_string_equal(key, "/etc/fab/controller.key");
	assert_int_equal(fab_pki_paths("/etc/fab", FAB_ROLE_NODE, "n1", crt, key, sizeof(crt)), 0);
	assert_string_equal(crt, "/etc/fab/node-n1.crt");
	assert_string_equal(key, "/etc/fab/node-n1.key");
	assert_int_equal(fab_pki_paths("d", FAB_ROLE_ADMIN, "alice", crt, key, sizeof(crt)), 0);
	assert_string_equal(crt, "d/admin-alice.crt");
	assert_string_equal(key, "d/admin-alice.key");

	assert_int_equal(fab_pki_paths("d", FAB_ROLE_NONE, "n1", crt, key, sizeof(crt)), -EINVAL);
	assert_int_equal(fab_pki_paths("d", (enum fab_role)9, "n1", crt, key, sizeof(crt)),
			 -EINVAL);
	assert_int_equal(fab_pki_paths("d", FAB_ROLE_NODE, "N1", crt, key, sizeof(crt)), -EINVAL);
	/* "d/node-n1.crt" is 13 characters: room for the .crt but not the NUL. */
	assert_int_equal(fab_pki_paths("d", FAB_ROLE_NODE, "n1", crt, key, 13), -ENAMETOOLONG);
	assert_int_equal(fab_pki_paths("d", FAB_ROLE_NODE, "n1", crt, key, 14), 0);
}

static void test_init_ca(void **state)
{
	const char *base = ((const struct tmp *)*state)->a;
	char dir[PATH_MAX], path[PATH_MAX];
	size_t len1, len2;
	char *before, *after;
	struct stat st;
	mode_t old;
	X509 *ca;
	char cn[FAB_NAME_MAX];

	/* The CA directory itself does not exist yet. */
	path_in(dir, base, "pki");
	/* A restrictive umask must not strip 0644 from the certificate. */
	old = umask(077);
	assert_int_equal(fab_pki_init_ca(dir, "prod-east", DAYS), 0);
	umask(old);
	assert_int_equal(stat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(file_mode(dir, "ca.key"), 0600);
	assert_int_equal(file_mode(dir, "ca.crt"), 0644);

	ca = cert_load(dir, "ca.crt");
	assert_int_equal(X509_check_ca(ca), 1);
	assert_int_equal(X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn,
						   sizeof(cn)),
			 9);
	assert_string_equal(cn, "prod-east");
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(ca), X509_get_issuer_name(ca)), 0);
	assert_true(X509_get_extension_flags(ca) & EXFLAG_SS);
	assert_true(X509_get_key_usage(ca) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
	assert_non_null(X509_get0_subject_key_id(ca));
	X509_free(ca);
	assert_int_equal(verify(dir, dir, "ca.crt"), 1);

	before = slurp(dir, "ca.crt", &len1);
	assert_int_equal(fab_pki_init_ca(dir, "prod-east", DAYS), -EEXIST);
	assert_int_equal(fab_pki_init_ca(dir, "other", DAYS), -EEXIST);
	after = slurp(dir, "ca.crt", &len2);
	assert_int_equal(len1, len2);
	assert_memory_equal(before, after, len1);
	free(before);
	free(after);
	assert_int_equal(file_mode(dir, "ca.key"), 0600);

	/* Only the key left: still a CA here, still never overwritten. */
	path_in(path, dir, "ca.crt");
	assert_int_equal(unlink(path), 0);
	assert_int_equal(fab_pki_init_ca(dir, "prod-east", DAYS), -EEXIST);
	assert_false(file_exists(dir, "ca.crt"));

	assert_int_equal(fab_pki_init_ca(dir, "", DAYS), -EINVAL);
	assert_int_equal(fab_pki_init_ca(dir, "x", 0), -EINVAL);
}

struct holder {
	enum fab_role role;
	const char *name, *crt, *key;
	int server, client;
};

static const struct holder holders[] = {
	{ FAB_ROLE_CONTROLLER, "ctl-0", "controller.crt", "controller.key", 1, 0 },
	{ FAB_ROLE_NODE, "n1", "node-n1.crt", "node-n1.key", 1, 1 },
	{ FAB_ROLE_ADMIN, "alice", "admin-alice.crt", "admin-alice.key", 0, 1 },
};

static void test_issue(void **state)
{
	const char *dir = ((const struct tmp *)*state)->a;
	struct fab_ident id;

	assert_int_equal(fab_pki_init_ca(dir, "c1", DAYS), 0);
	for (size_t i = 0; i < sizeof(holders) / sizeof(holders[0]); i++) {
		const struct holder *h = &holders[i];
		GENERAL_NAMES *sans;
		EVP_PKEY *key;
		X509 *cert;

		assert_int_equal(fab_pki_issue(dir, h->role, h->name, DAYS), 0);
		assert_int_equal(file_mode(dir, h->key), 0600);
		assert_int_equal(file_mode(dir, h->crt), 0644);
		assert_int_equal(verify(dir, dir, h->crt), 1);

		cert = cert_load(dir, h->crt);
		key = key_load(dir, h->key);
		assert_int_equal(X509_check_private_key(cert, key), 1);
		assert_int_equal(fab_pki_cert_ident(cert, &id), 0);
		assert_int_equal(id.role, h->role);
		assert_string_equal(id.name, h->name);
		assert_int_equal(X509_check_ca(cert), 0);
		assert_int_equal(X509_check_purpose(cert, X509_PURPOSE_SSL_SERVER, 0), h->server);
		assert_int_equal(X509_check_purpose(cert, X509_PURPOSE_SSL_CLIENT, 0), h->client);
		assert_int_equal(X509_check_host(cert, h->name, 0, 0, NULL), 1);
		sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
		assert_int_equal(sk_GENERAL_NAME_num(sans), 1);
		GENERAL_NAMES_free(sans);
		assert_non_null(X509_get0_authority_key_id(cert));
		X509_free(cert);
		EVP_PKEY_free(key);

		assert_int_equal(fab_pki_issue(dir, h->role, h->name, DAYS), -EEXIST);
	}
	/* A second controller name maps to the same files: refused, not replaced. */
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_CONTROLLER, "ctl-1", DAYS), -EEXIST);
}

static void test_issue_twice_keeps_files(void **state)
{
	const char *dir = ((const struct tmp *)*state)->a;
	char path[PATH_MAX], *crt1, *key1, *crt2, *key2;
	size_t lc1, lk1, lc2, lk2;

	assert_int_equal(fab_pki_init_ca(dir, "c1", DAYS), 0);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, "n1", DAYS), 0);
	crt1 = slurp(dir, "node-n1.crt", &lc1);
	key1 = slurp(dir, "node-n1.key", &lk1);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, "n1", DAYS), -EEXIST);
	crt2 = slurp(dir, "node-n1.crt", &lc2);
	key2 = slurp(dir, "node-n1.key", &lk2);
	assert_int_equal(lc1, lc2);
	assert_int_equal(lk1, lk2);
	assert_memory_equal(crt1, crt2, lc1);
	assert_memory_equal(key1, key2, lk1);
	free(crt1);
	free(key1);
	free(crt2);
	free(key2);

	/* Half a pair counts as taken too. */
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_ADMIN, "bob", DAYS), 0);
	path_in(path, dir, "admin-bob.crt");
	assert_int_equal(unlink(path), 0);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_ADMIN, "bob", DAYS), -EEXIST);
	assert_false(file_exists(dir, "admin-bob.crt"));
}

static void test_issue_bad_args(void **state)
{
	static const char *const bad[] = { "", "UPPER", "-lead", "a/b", "../x", NULL };
	const char *dir = ((const struct tmp *)*state)->a;
	char long_name[FAB_NAME_MAX + 1];

	assert_int_equal(fab_pki_init_ca(dir, "c1", DAYS), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, bad[i], DAYS), -EINVAL);
		assert_int_equal(fab_pki_issue(dir, FAB_ROLE_CONTROLLER, bad[i], DAYS), -EINVAL);
	}
	memset(long_name, 'a', FAB_NAME_MAX);
	long_name[FAB_NAME_MAX] = '\0';
	assert_int_equal(strlen(long_name), 64);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, long_name, DAYS), -EINVAL);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NONE, "n1", DAYS), -EINVAL);
	assert_int_equal(fab_pki_issue(dir, (enum fab_role)7, "n1", DAYS), -EINVAL);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, "n1", 0), -EINVAL);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, "n1", -1), -EINVAL);
	/* Nothing but the CA was created. */
	assert_int_equal(count_entries(dir), 2);
	assert_false(file_exists(dir, "node-n1.key"));

	/* 63 characters is the longest name. */
	long_name[FAB_NAME_MAX - 1] = '\0';
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, long_name, DAYS), 0);
}

static void test_issue_without_ca(void **state)
{
	const char *dir = ((const struct tmp *)*state)->a;
	char missing[PATH_MAX];

	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, "n1", DAYS), -ENOENT);
	assert_false(file_exists(dir, "node-n1.key"));
	path_in(missing, dir, "nowhere");
	assert_int_equal(fab_pki_issue(missing, FAB_ROLE_NODE, "n1", DAYS), -ENOENT);

	/* A certificate without its key is no CA either. */
	assert_int_equal(fab_pki_init_ca(dir, "c1", DAYS), 0);
	path_in(missing, dir, "ca.key");
	assert_int_equal(unlink(missing), 0);
	assert_int_equal(fab_pki_issue(dir, FAB_ROLE_NODE, "n1", DAYS), -ENOENT);
	assert_false(file_exists(dir, "node-n1.key"));
}

static void test_foreign_ca(void **state)
{
	const char *a = ((const struct tmp *)*state)->a, *b = ((const struct tmp *)*state)->b;
	char from[PATH_MAX], to[PATH_MAX];

	/* Same cluster name on purpose: only the key may decide. */
	assert_int_equal(fab_pki_init_ca(a, "c1", DAYS), 0);
	assert_int_equal(fab_pki_init_ca(b, "c1", DAYS), 0);
	assert_int_equal(fab_pki_issue(a, FAB_ROLE_NODE, "n1", DAYS), 0);
	assert_int_equal(fab_pki_issue(b, FAB_ROLE_NODE, "n1", DAYS), 0);
	assert_int_equal(verify(a, a, "node-n1.crt"), 1);
	assert_int_equal(verify(b, b, "node-n1.crt"), 1);
	assert_int_not_equal(verify(a, b, "node-n1.crt"), 1);
	assert_int_not_equal(verify(b, a, "node-n1.crt"), 1);

	/* A CA key that does not belong to ca.crt is refused, nothing issued. */
	path_in(from, b, "ca.key");
	path_in(to, a, "ca.key");
	assert_int_equal(rename(from, to), 0);
	assert_int_equal(fab_pki_issue(a, FAB_ROLE_NODE, "n2", DAYS), -EINVAL);
	assert_false(file_exists(a, "node-n2.key"));
}

/* A bare certificate with the given subject entries, for fab_pki_cert_ident. */
static X509 *cert_with(const char *const *cn, const char *const *ou)
{
	X509 *x = X509_new();
	X509_NAME *nm = X509_get_subject_name(x);

	for (; ou && *ou; ou++)
		assert_int_equal(X509_NAME_add_entry_by_txt(nm, "OU", MBSTRING_UTF8,
							    (const unsigned char *)*ou, -1, -1, 0),
				 1);
	for (; cn && *cn; cn++)
		assert_int_equal(X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8,
							    (const unsigned char *)*cn, -1, -1, 0),
				 1);
	return x;
}

static void test_cert_ident_rejects(void **state)
{
	static const struct {
		const char *cn[3], *ou[3];
		int rc;
	} cases[] = {
		{ { "n1" }, { "node" }, 0 },
		{ { "n1" }, { "admin" }, 0 },
		{ { "n1" }, { 0 }, -EINVAL },
		{ { 0 }, { "node" }, -EINVAL },
		{ { "n1", "n2" }, { "node" }, -EINVAL },
		{ { "n1" }, { "node", "admin" }, -EINVAL },
		{ { "n1" }, { "none" }, -EINVAL },
		{ { "n1" }, { "root" }, -EINVAL },
		{ { "N1" }, { "node" }, -EINVAL },
		{ { "-n1" }, { "node" }, -EINVAL },
		{ { "n\xc3\xa9" }, { "node" }, -EINVAL },
	};
	struct fab_ident id = { FAB_ROLE_NONE, "untouched" };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		X509 *x = cert_with(cases[i].cn, cases[i].ou);

		assert_int_equal(fab_pki_cert_ident(x, &id), cases[i].rc);
		X509_free(x);
		if (!cases[i].rc)
			assert_string_equal(id.name, "n1");
	}
	assert_int_equal(fab_pki_cert_ident(NULL, &id), -EINVAL);
}

static void test_cert_ident_of_ca(void **state)
{
	struct fab_ident id = { FAB_ROLE_NODE, "keep" };
	const char *dir = ((const struct tmp *)*state)->a;
	X509 *ca;

	assert_int_equal(fab_pki_init_ca(dir, "c1", DAYS), 0);
	ca = cert_load(dir, "ca.crt");
	/* The CA names no holder, and a failed call leaves *out alone. */
	assert_int_equal(fab_pki_cert_ident(ca, &id), -EINVAL);
	assert_int_equal(id.role, FAB_ROLE_NODE);
	assert_string_equal(id.name, "keep");
	X509_free(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_role_names),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_paths),
		cmocka_unit_test_setup_teardown(test_init_ca, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_issue, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_issue_twice_keeps_files, tmp_setup,
						tmp_teardown),
		cmocka_unit_test_setup_teardown(test_issue_bad_args, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_issue_without_ca, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_foreign_ca, tmp_setup, tmp_teardown),
		cmocka_unit_test(test_cert_ident_rejects),
		cmocka_unit_test_setup_teardown(test_cert_ident_of_ca, tmp_setup, tmp_teardown),
	};

	/* Some refusals under test log an error line; that is expected. */
	fab_log_init("test_pki", FAB_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
