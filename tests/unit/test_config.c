/* Config trees: parsing with positions, extends, --set, typed getters,
 * unknown keys, YAML round trips. Data files live in tests/data/config/. */
#include "flash/flash.h"

#include <check.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DATA FLASH_SOURCE_DIR "/tests/data/config/"

static flash_cfg *load_ok(const char *name) {
    flash_error err = {0};
    flash_cfg *root = NULL;
    flash_status st = flash_cfg_load(name, &root, &err);
    ck_assert_msg(st == FLASH_OK, "loading %s: %s", name, err.msg);
    ck_assert_ptr_nonnull(root);
    return root;
}

static flash_cfg *parse_ok(const char *text) {
    flash_error err = {0};
    flash_cfg *root = NULL;
    flash_status st = flash_cfg_parse_string(text, "inline", &root, &err);
    ck_assert_msg(st == FLASH_OK, "parsing: %s", err.msg);
    return root;
}

/* Structural equality through the public API only: kinds, keys in order,
 * scalar texts. */
static int cfg_equal(const flash_cfg *a, const flash_cfg *b) {
    if (flash_cfg_kind(a) != flash_cfg_kind(b)) return 0;
    switch (flash_cfg_kind(a)) {
    case FLASH_CFG_NULL: return 1;
    case FLASH_CFG_SCALAR: return strcmp(flash_cfg_scalar(a), flash_cfg_scalar(b)) == 0;
    case FLASH_CFG_SEQ:
    case FLASH_CFG_MAP:
        if (flash_cfg_len(a) != flash_cfg_len(b)) return 0;
        for (size_t i = 0; i < flash_cfg_len(a); i++) {
            if (flash_cfg_kind(a) == FLASH_CFG_MAP && strcmp(flash_cfg_key_at(a, i), flash_cfg_key_at(b, i)) != 0)
                return 0;
            if (!cfg_equal(flash_cfg_at(a, i), flash_cfg_at(b, i))) return 0;
        }
        return 1;
    }
    return 0;
}

static void assert_at(const flash_cfg *root, const char *path, int line, int col) {
    const flash_cfg *n = flash_cfg_path(root, path);
    ck_assert_msg(n != NULL, "%s missing", path);
    ck_assert_msg(flash_cfg_line(n) == line && flash_cfg_col(n) == col, "%s at %d:%d, expected %d:%d", path,
                  flash_cfg_line(n), flash_cfg_col(n), line, col);
    ck_assert_str_eq(flash_cfg_keypath(n), path);
}

/* Runs a call that must fail and compares the whole message. */
#define EXPECT_ERR(call, text)                                                                                     \
    do {                                                                                                           \
        flash_error err_ = {0};                                                                                    \
        flash_error *err = &err_;                                                                                  \
        ck_assert_int_eq((call), FLASH_ERR_CONFIG);                                                                \
        ck_assert_int_eq(err_.status, FLASH_ERR_CONFIG);                                                           \
        ck_assert_str_eq(err_.msg, text);                                                                          \
    } while (0)

/* ---- parsing and positions --------------------------------------------- */

START_TEST(test_syntax_error) {
    flash_error err = {0};
    flash_cfg *root = (flash_cfg *)1;
    flash_status st = flash_cfg_load(DATA "syntax_error.yaml", &root, &err);
    ck_assert_int_eq(st, FLASH_ERR_CONFIG);
    ck_assert_ptr_null(root);
    /* libyaml stops at the second ':' of "  plugin: ddim: 3" (line 3, column 15). */
    ck_assert_msg(strncmp(err.msg, DATA "syntax_error.yaml:3:15: mapping values are not allowed",
                          strlen(DATA "syntax_error.yaml:3:15: mapping values are not allowed")) == 0,
                  "got: %s", err.msg);

    st = flash_cfg_parse_string("a: [1, 2\nb: 3\n", "inline.yaml", &root, &err);
    ck_assert_int_eq(st, FLASH_ERR_CONFIG);
    ck_assert_msg(strncmp(err.msg, "inline.yaml:", 12) == 0 && strstr(err.msg, "flow sequence"), "got: %s", err.msg);

    st = flash_cfg_parse_string("a:\n\tb: 1\n", "tab.yaml", &root, &err);
    ck_assert_int_eq(st, FLASH_ERR_CONFIG);
    ck_assert_msg(strncmp(err.msg, "tab.yaml:2:1: ", 14) == 0, "got: %s", err.msg);
}
END_TEST

START_TEST(test_duplicate_key) {
    flash_error err = {0};
    flash_cfg *root = NULL;
    ck_assert_int_eq(flash_cfg_load(DATA "duplicate_key.yaml", &root, &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, DATA "duplicate_key.yaml:4:3: model.channels: duplicate key 'channels' "
                                   "(first defined at line 3, column 3)");
    ck_assert_int_eq(flash_cfg_parse_string("a: 1\na: 2\n", "d", &root, &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "d:2:1: a: duplicate key 'a' (first defined at line 1, column 1)");
}
END_TEST

START_TEST(test_positions) {
    flash_cfg *root = load_ok(DATA "positions.yaml");
    ck_assert_int_eq(flash_cfg_kind(root), FLASH_CFG_MAP);
    ck_assert_str_eq(flash_cfg_keypath(root), "");
    assert_at(root, "model", 3, 3);
    assert_at(root, "model.plugin", 3, 11);
    assert_at(root, "model.channels", 4, 13);
    assert_at(root, "losses", 6, 3);
    assert_at(root, "losses[0]", 6, 5);
    assert_at(root, "losses[0].weight", 7, 13);
    assert_at(root, "losses[1]", 8, 5);
    assert_at(root, "losses[1].plugin", 8, 14);
    assert_at(root, "losses[1].weight", 8, 29);
    assert_at(root, "grid[1][0]", 9, 17);
    ck_assert_str_eq(flash_cfg_file(flash_cfg_path(root, "grid")), DATA "positions.yaml");

    char buf[512];
    ck_assert_str_eq(flash_cfg_where(flash_cfg_path(root, "losses[1].weight"), buf, sizeof buf),
                     DATA "positions.yaml:8:29");
    ck_assert_ptr_null(flash_cfg_path(root, "losses[2]"));
    ck_assert_ptr_null(flash_cfg_path(root, "model.nope"));
    ck_assert_ptr_null(flash_cfg_path(root, "model[0]"));
    ck_assert_ptr_null(flash_cfg_path(root, "model..plugin"));
    ck_assert_ptr_null(flash_cfg_path(root, "losses[x]"));
    ck_assert_ptr_eq(flash_cfg_path(root, ""), root);

    const flash_cfg *model = flash_cfg_get(root, "model");
    ck_assert_uint_eq(flash_cfg_len(model), 2);
    ck_assert_str_eq(flash_cfg_key_at(model, 1), "channels");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_at(model, 1)), "32");
    ck_assert_ptr_null(flash_cfg_key_at(model, 2));
    ck_assert_ptr_null(flash_cfg_scalar(model));
    ck_assert_ptr_eq(flash_cfg_path(model, "channels"), flash_cfg_at(model, 1));

    flash_error err = {0};
    flash_cfg_error(flash_cfg_path(root, "losses[1].weight"), &err, "weight %d is odd", 3);
    ck_assert_int_eq(err.status, FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, DATA "positions.yaml:8:29: losses[1].weight: weight 3 is odd");
    flash_cfg_free(root);
}
END_TEST

START_TEST(test_roots) {
    flash_cfg *root = load_ok(DATA "empty.yaml");
    ck_assert_int_eq(flash_cfg_kind(root), FLASH_CFG_MAP);
    ck_assert_uint_eq(flash_cfg_len(root), 0);
    flash_cfg_free(root);

    flash_error err = {0};
    ck_assert_int_eq(flash_cfg_load(DATA "scalar_root.yaml", &root, &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg,
                     DATA "scalar_root.yaml:1:1: the top level of a config must be a map, got 'just a string'");
    ck_assert_int_eq(flash_cfg_load(DATA "no_such_file.yaml", &root, &err), FLASH_ERR_CONFIG);
    ck_assert_msg(strstr(err.msg, "no_such_file.yaml: cannot open: No such file") != NULL, "got: %s", err.msg);
    ck_assert_int_eq(flash_cfg_parse_string("a: 1\n---\nb: 2\n", "two", &root, &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "two:2:1: a config file holds one YAML document, found a second one");

    flash_cfg_free(NULL);
    ck_assert_int_eq(flash_cfg_kind(NULL), FLASH_CFG_NULL);
    ck_assert_uint_eq(flash_cfg_len(NULL), 0);
    ck_assert_ptr_null(flash_cfg_get(NULL, "a"));
}
END_TEST

START_TEST(test_merge_keys) {
    flash_cfg *r = load_ok(DATA "merge_keys.yaml");
    const flash_cfg *fast = flash_cfg_get(r, "fast");
    ck_assert_uint_eq(flash_cfg_len(fast), 3);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(fast, "plugin")), "ddim");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(fast, "steps")), "2");
    ck_assert_int_eq(flash_cfg_line(flash_cfg_get(fast, "steps")), 8);
    ck_assert_str_eq(flash_cfg_keypath(flash_cfg_get(fast, "eta")), "fast.eta");
    const flash_cfg *guided = flash_cfg_get(r, "guided");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(guided, "steps")), "8");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(guided, "scale")), "3.0");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(guided, "plugin")), "ddim");
    ck_assert_ptr_null(flash_cfg_get(guided, "<<"));
    /* An anchor defined inside a merge key's value stays usable. */
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_path(r, "again.plugin")), "euler");
    ck_assert_str_eq(flash_cfg_keypath(flash_cfg_path(r, "again.steps")), "again.steps");
    /* An unknown key inside the shared block is reported where it is written. */
    static const char *const keys[] = {"steps", NULL};
    EXPECT_ERR(flash_cfg_check_keys(fast, "sampler 'ddim'", keys, err),
               DATA "merge_keys.yaml:5:3: fast.eta: sampler 'ddim' has no key 'eta' (known keys: steps)");
    flash_cfg_free(r);
    flash_error err = {0};
    ck_assert_int_eq(flash_cfg_parse_string("a: 1\nb: {<<: 3}\n", "m", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "m:2:5: b: '<<' merges maps (<<: *name or <<: [*a, *b]), got '3'");
    ck_assert_int_eq(flash_cfg_parse_string("a: {x: 1, \"<<\": 2}\n", "q", &r, &err), FLASH_OK);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_path(r, "a.<<")), "2");
    flash_cfg_free(r);
}
END_TEST

START_TEST(test_hostile_input) {
    flash_error err = {0};
    flash_cfg *r = (flash_cfg *)1;
    /* Deep nesting is refused, not a stack overflow. */
    char deep[2000];
    memset(deep, '[', 1000);
    memset(deep + 1000, ']', 999);
    deep[1999] = '\0';
    char *text = malloc(4000);
    ck_assert_ptr_nonnull(text);
    snprintf(text, 4000, "a: %s\n", deep);
    ck_assert_int_eq(flash_cfg_parse_string(text, "deep", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(err.msg, "nesting deeper than") != NULL, "got: %s", err.msg);
    free(text);
    /* Exponential alias expansion is cut off. */
    const char *laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                         "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                         "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                         "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    ck_assert_int_eq(flash_cfg_parse_string(laughs, "laughs", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_msg(strstr(err.msg, "once aliases are expanded") != NULL, "got: %s", err.msg);
    /* Few nodes but large ones: 8 scalars of 60 KB copied 8^4 times would
     * hold 16 GB. The byte budget stops it early, by bytes, not nodes. */
    {
        const size_t big = 60000;
        char *bomb = malloc(8 * (big + 16) + 512);
        ck_assert_ptr_nonnull(bomb);
        size_t len = (size_t)sprintf(bomb, "a0: &a0 [");
        for (int i = 0; i < 8; i++) {
            memset(bomb + len, 'v', big);
            len += big;
            len += (size_t)sprintf(bomb + len, "%s", i < 7 ? ", " : "]\n");
        }
        for (int j = 1; j < 6; j++)
            len += (size_t)sprintf(bomb + len, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", j, j,
                                   j - 1, j - 1, j - 1, j - 1, j - 1, j - 1, j - 1, j - 1);
        const double t0 = flash_now();
        ck_assert_int_eq(flash_cfg_parse_string(bomb, "bomb", &r, &err), FLASH_ERR_CONFIG);
        ck_assert_double_lt(flash_now() - t0, 1.0);
        ck_assert_msg(strstr(err.msg, "expands to more than 64 MiB") != NULL, "got: %s", err.msg);
        free(bomb);
    }
    /* Invalid UTF-8 is placed by line and column. */
    ck_assert_int_eq(flash_cfg_parse_string("a: 1\nb: \xc3\xa9\xff\n", "utf8", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "utf8:2:5: invalid leading UTF-8 octet");
    /* Non-scalar keys and unknown aliases. */
    ck_assert_int_eq(flash_cfg_parse_string("a:\n  ? [1]\n  : 2\n", "k", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "k:2:5: a: map keys must be plain strings, not maps or sequences");
    ck_assert_int_eq(flash_cfg_parse_string("a: *nope\n", "al", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "al:1:4: a: unknown alias '*nope'");
}
END_TEST

START_TEST(test_aliases) {
    flash_cfg *root = load_ok(DATA "aliases.yaml");
    const flash_cfg *steps = flash_cfg_path(root, "sampler.steps");
    ck_assert_ptr_nonnull(steps);
    ck_assert_str_eq(flash_cfg_scalar(steps), "4");
    ck_assert_str_eq(flash_cfg_keypath(steps), "sampler.steps");
    /* The copy is independent of the anchored original. */
    ck_assert_ptr_ne(steps, flash_cfg_path(root, "defaults.steps"));
    flash_cfg_free(root);
}
END_TEST

/* ---- typed getters ------------------------------------------------------ */

START_TEST(test_getters) {
    flash_cfg *r = load_ok(DATA "types.yaml");
    flash_error err = {0};
    long l;
    ck_assert_int_eq(flash_cfg_int(r, "int", 0, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, 42);
    ck_assert_int_eq(flash_cfg_int(r, "neg", 0, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, -7);
    ck_assert_int_eq(flash_cfg_int(r, "plus", 0, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, 5);
    ck_assert_int_eq(flash_cfg_int(r, "absent", -3, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, -3);

    double d;
    ck_assert_int_eq(flash_cfg_double(r, "small", 0, &d, &err), FLASH_OK);
    ck_assert(d == 1e-4);
    ck_assert_int_eq(flash_cfg_double(r, "half", 0, &d, &err), FLASH_OK);
    ck_assert(d == 0.5);
    ck_assert_int_eq(flash_cfg_double(r, "int", 0, &d, &err), FLASH_OK);
    ck_assert(d == 42.0);
    ck_assert_int_eq(flash_cfg_double(r, "absent", 2.5, &d, &err), FLASH_OK);
    ck_assert(d == 2.5);
    float f;
    ck_assert_int_eq(flash_cfg_float(r, "frac", 0, &f, &err), FLASH_OK);
    ck_assert(f == 3.5f);

    bool b = false;
    ck_assert_int_eq(flash_cfg_bool(r, "yes_", false, &b, &err), FLASH_OK);
    ck_assert(b);
    ck_assert_int_eq(flash_cfg_bool(r, "off_", true, &b, &err), FLASH_OK);
    ck_assert(!b);
    ck_assert_int_eq(flash_cfg_bool(r, "True_", false, &b, &err), FLASH_OK);
    ck_assert(b);
    ck_assert_int_eq(flash_cfg_bool(r, "absent", true, &b, &err), FLASH_OK);
    ck_assert(b);

    const char *s;
    ck_assert_int_eq(flash_cfg_str(r, "name", NULL, &s, &err), FLASH_OK);
    ck_assert_str_eq(s, "unet");
    ck_assert_int_eq(flash_cfg_str(r, "quoted", NULL, &s, &err), FLASH_OK);
    ck_assert_str_eq(s, "3");
    ck_assert_int_eq(flash_cfg_str(r, "absent", "dflt", &s, &err), FLASH_OK);
    ck_assert_str_eq(s, "dflt");

    static const char *const archs[] = {"mlp", "unet", "dit", NULL};
    int e;
    ck_assert_int_eq(flash_cfg_enum(r, "name", archs, 0, &e, &err), FLASH_OK);
    ck_assert_int_eq(e, 1);
    ck_assert_int_eq(flash_cfg_enum(r, "absent", archs, 2, &e, &err), FLASH_OK);
    ck_assert_int_eq(e, 2);

    double v[4];
    size_t n;
    ck_assert_int_eq(flash_cfg_doubles(r, "sigmas", v, 4, &n, &err), FLASH_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert(v[0] == 0.1 && v[1] == 1e-2 && v[2] == 3.0);
    ck_assert_int_eq(flash_cfg_doubles(r, "absent", v, 4, &n, &err), FLASH_OK);
    ck_assert_uint_eq(n, 0);
    long li[3];
    ck_assert_int_eq(flash_cfg_ints(r, "steps", li, 3, &n, &err), FLASH_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert(li[0] == 999 && li[1] == 750 && li[2] == -1);
    double m[6];
    size_t rows, cols;
    ck_assert_int_eq(flash_cfg_matrix(r, "matrix", m, 6, &rows, &cols, &err), FLASH_OK);
    ck_assert_uint_eq(rows, 2);
    ck_assert_uint_eq(cols, 3);
    for (int i = 0; i < 6; i++) ck_assert(m[i] == i + 1);

    /* A missing or null slot reads as all defaults. */
    ck_assert_int_eq(flash_cfg_int(NULL, "x", 9, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, 9);
    ck_assert_int_eq(flash_cfg_int(flash_cfg_get(r, "empty"), "x", 8, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, 8);
    flash_cfg_free(r);
}
END_TEST

START_TEST(test_getter_errors) {
    flash_cfg *r = load_ok(DATA "types.yaml");
    long l;
    double d;
    float f;
    bool b;
    const char *s;
    int e;
    size_t n, rows, cols;
    double v[8];
    long li[8];
#define T DATA "types.yaml:"
    EXPECT_ERR(flash_cfg_int(r, "word", 0, &l, err), T "6:7: word: expected an integer, got 'abc'");
    EXPECT_ERR(flash_cfg_int(r, "frac", 0, &l, err), T "5:7: frac: expected an integer, got '3.5'");
    EXPECT_ERR(flash_cfg_int(r, "small", 0, &l, err), T "8:8: small: expected an integer, got '1e-4'");
    EXPECT_ERR(flash_cfg_int(r, "big", 0, &l, err),
               T "4:6: big: integer '99999999999999999999' is out of range [-9223372036854775808, "
                 "9223372036854775807]");
    EXPECT_ERR(flash_cfg_int(r, "quoted", 0, &l, err), T "7:9: quoted: expected an integer, got the string '3'");
    EXPECT_ERR(flash_cfg_int(r, "empty", 0, &l, err), T "17:7: empty: expected an integer, got null");
    EXPECT_ERR(flash_cfg_int(r, "sub", 0, &l, err), T "24:3: sub: expected an integer, got a map");
    EXPECT_ERR(flash_cfg_double(r, "inf", 0, &d, err), T "10:6: inf: expected a number, got '.inf'");
    EXPECT_ERR(flash_cfg_double(r, "nan", 0, &d, err), T "11:6: nan: expected a number, got '.nan'");
    EXPECT_ERR(flash_cfg_double(r, "word", 0, &d, err), T "6:7: word: expected a number, got 'abc'");
    EXPECT_ERR(flash_cfg_double(r, "sigmas", 0, &d, err), T "18:9: sigmas: expected a number, got a sequence");
    ck_assert_int_eq(flash_cfg_float(r, "big", 0, &f, NULL), FLASH_OK);
    ck_assert(f == 1e20f);
    EXPECT_ERR(flash_cfg_float(r, "huge", 0, &f, err), T "25:7: huge: number '1e39' is out of range for a float");
    EXPECT_ERR(flash_cfg_double(r, "vast", 0, &d, err), T "26:7: vast: number '1e999' is out of range");
    EXPECT_ERR(flash_cfg_bool(r, "maybe", false, &b, err),
               T "15:8: maybe: expected a boolean (true/false), got 'maybe'");
    EXPECT_ERR(flash_cfg_str(r, "sub", NULL, &s, err), T "24:3: sub: expected a string, got a map");
    static const char *const archs[] = {"mlp", "unet", "dit", NULL};
    EXPECT_ERR(flash_cfg_enum(r, "word", archs, 0, &e, err),
               T "6:7: word: expected one of 'mlp', 'unet', 'dit', got 'abc'");
    static const char *const names[] = {"unit", "net", NULL};
    EXPECT_ERR(flash_cfg_enum(r, "name", names, 0, &e, err),
               T "16:7: name: expected one of 'unit', 'net', got 'unet' (did you mean 'unit'?)");
    EXPECT_ERR(flash_cfg_doubles(r, "badlist", v, 8, &n, err), T "20:17: badlist[2]: expected a number, got 'x'");
    EXPECT_ERR(flash_cfg_doubles(r, "sigmas", v, 2, &n, err), T "18:9: sigmas: has 3 items, at most 2 allowed");
    EXPECT_ERR(flash_cfg_doubles(r, "word", v, 8, &n, err),
               T "6:7: word: expected a sequence of numbers, got 'abc'");
    EXPECT_ERR(flash_cfg_ints(r, "sigmas", li, 8, &n, err), T "18:10: sigmas[0]: expected an integer, got '0.1'");
    EXPECT_ERR(flash_cfg_matrix(r, "ragged", v, 8, &rows, &cols, err),
               T "22:18: ragged[1]: row has 1 items, row 0 has 2");
    EXPECT_ERR(flash_cfg_matrix(r, "matrix", v, 5, &rows, &cols, err),
               T "21:9: matrix: has more than 5 numbers (2 rows of 3)");
    EXPECT_ERR(flash_cfg_matrix(r, "sigmas", v, 8, &rows, &cols, err),
               T "18:10: sigmas[0]: expected a row (a sequence of numbers), got '0.1'");
    EXPECT_ERR(flash_cfg_int(flash_cfg_get(r, "name"), "x", 0, &l, err),
               T "16:7: name: expected a map with key 'x', got 'unet'");
#undef T
    flash_cfg_free(r);
}
END_TEST

START_TEST(test_wrong_type_file) {
    flash_cfg *r = load_ok(DATA "wrong_type.yaml");
    long steps;
    EXPECT_ERR(flash_cfg_int(flash_cfg_get(r, "sampler"), "steps", 4, &steps, err),
               DATA "wrong_type.yaml:3:10: sampler.steps: expected an integer, got 'abc'");
    flash_cfg_free(r);
}
END_TEST

/* ---- unknown keys --------------------------------------------------------- */

START_TEST(test_unknown_key) {
    flash_cfg *r = load_ok(DATA "unknown_key.yaml");
    static const char *const ddim_keys[] = {"steps", "eta", NULL};
    EXPECT_ERR(flash_cfg_check_keys(flash_cfg_get(r, "sampler"), "sampler 'ddim'", ddim_keys, err),
               DATA "unknown_key.yaml:7:5: sampler.stesp: sampler 'ddim' has no key 'stesp' (did you mean 'steps'?)");
    static const char *const unet_keys[] = {"channels", "mults", NULL};
    flash_error err = {0};
    ck_assert_int_eq(flash_cfg_check_keys(flash_cfg_get(r, "model"), "model 'unet'", unet_keys, &err), FLASH_OK);
    static const char *const other[] = {"alpha", "beta", NULL};
    EXPECT_ERR(flash_cfg_check_keys(flash_cfg_get(r, "sampler"), "sampler 'x'", other, err),
               DATA "unknown_key.yaml:6:5: sampler.eta: sampler 'x' has no key 'eta' (did you mean 'beta'?)");
    /* "plugin" is always allowed. */
    static const char *const none[] = {NULL};
    ck_assert_int_eq(flash_cfg_check_keys(flash_cfg_get(r, "model"), "model 'unet'", none, &err), FLASH_OK);
    flash_cfg_free(r);
}
END_TEST

START_TEST(test_unknown_key_lists_known) {
    flash_cfg *r = parse_ok("sampler:\n  plugin: ddim\n  zzz: 1\n");
    static const char *const keys[] = {"steps", "eta", NULL};
    EXPECT_ERR(flash_cfg_check_keys(flash_cfg_get(r, "sampler"), "sampler 'ddim'", keys, err),
               "inline:3:3: sampler.zzz: sampler 'ddim' has no key 'zzz' (known keys: steps, eta)");
    EXPECT_ERR(flash_cfg_check_keys(flash_cfg_path(r, "sampler.plugin"), "sampler", keys, err),
               "inline:2:11: sampler.plugin: expected a map, got 'ddim'");
    static const char *const none[] = {NULL};
    EXPECT_ERR(flash_cfg_check_keys(flash_cfg_get(r, "sampler"), "sampler 'ddim'", none, err),
               "inline:3:3: sampler.zzz: sampler 'ddim' has no key 'zzz' (known keys: none besides plugin)");
    flash_error err = {0};
    ck_assert_int_eq(flash_cfg_check_keys(NULL, "sampler", keys, &err), FLASH_OK);
    flash_cfg_free(r);
}
END_TEST

START_TEST(test_did_you_mean) {
    static const char *const keys[] = {"steps", "eta", "learning_rate", "timesteps", "ema_decay", NULL};
    ck_assert_str_eq(flash_did_you_mean("stesp", keys), "steps");
    ck_assert_str_eq(flash_did_you_mean("step", keys), "steps");
    ck_assert_str_eq(flash_did_you_mean("beta", keys), "eta");
    ck_assert_str_eq(flash_did_you_mean("lerning_rat", keys), "learning_rate");
    ck_assert_str_eq(flash_did_you_mean("time_steps", keys), "timesteps");
    ck_assert_ptr_null(flash_did_you_mean("batch_size", keys));
    ck_assert_ptr_null(flash_did_you_mean("xyzzy", keys));
    ck_assert_ptr_null(flash_did_you_mean("steps", NULL));
    /* The limit is max(2, len/3): 12 letters allow 4 edits, not 5. */
    static const char *const longk[] = {"abcdefghijkl", NULL};
    ck_assert_str_eq(flash_did_you_mean("abcdefghWXYZ", longk), "abcdefghijkl");
    ck_assert_ptr_null(flash_did_you_mean("abcdefgVWXYZ", longk));
    /* Short words still get 2 edits. */
    static const char *const shortk[] = {"lr", NULL};
    ck_assert_str_eq(flash_did_you_mean("l", shortk), "lr");
    ck_assert_ptr_null(flash_did_you_mean("abc", shortk));
    /* Ties go to the first candidate. */
    static const char *const tie[] = {"cat", "car", NULL};
    ck_assert_str_eq(flash_did_you_mean("caz", tie), "cat");
}
END_TEST

/* ---- extends ---------------------------------------------------------------- */

START_TEST(test_extends_chain) {
    flash_cfg *r = load_ok(DATA "child.yaml");
    ck_assert_ptr_null(flash_cfg_get(r, "extends"));
    flash_error err = {0};
    const char *s;
    long l;
    ck_assert_int_eq(flash_cfg_str(r, "name", NULL, &s, &err), FLASH_OK);
    ck_assert_str_eq(s, "child");
    ck_assert_int_eq(flash_cfg_int(r, "seed", 0, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, 1);
    /* Maps merge over three files: plugin from base, channels from mid,
     * mults from child, dropout only in mid. */
    const flash_cfg *model = flash_cfg_get(r, "model");
    ck_assert_uint_eq(flash_cfg_len(model), 4);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(model, "plugin")), "unet");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(model, "channels")), "64");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(model, "dropout")), "0.1");
    long mults[4];
    size_t n;
    ck_assert_int_eq(flash_cfg_ints(model, "mults", mults, 4, &n, &err), FLASH_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(mults[0] == 1 && mults[1] == 2);
    /* Sequences replace. */
    ck_assert_int_eq(flash_cfg_ints(flash_cfg_get(r, "schedule"), "timesteps", mults, 4, &n, &err), FLASH_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(mults[0] == 999 && mults[1] == 500);
    ck_assert_uint_eq(flash_cfg_len(flash_cfg_get(r, "losses")), 2);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_path(r, "losses[1].plugin")), "lpips");

    /* Each node remembers the file that gave it. */
    ck_assert_str_eq(flash_cfg_file(flash_cfg_get(model, "plugin")), DATA "sub/../base.yaml");
    ck_assert_int_eq(flash_cfg_line(flash_cfg_get(model, "plugin")), 5);
    ck_assert_str_eq(flash_cfg_file(flash_cfg_get(model, "channels")), DATA "sub/mid.yaml");
    ck_assert_int_eq(flash_cfg_line(flash_cfg_get(model, "channels")), 4);
    ck_assert_str_eq(flash_cfg_file(flash_cfg_get(model, "mults")), DATA "child.yaml");
    ck_assert_str_eq(flash_cfg_file(flash_cfg_path(r, "schedule.plugin")), DATA "sub/../base.yaml");
    ck_assert_str_eq(flash_cfg_keypath(flash_cfg_path(r, "losses[1].weight")), "losses[1].weight");
    ck_assert_str_eq(flash_cfg_file(r), DATA "child.yaml");

    /* The key order is the base's, then keys new in children. */
    ck_assert_str_eq(flash_cfg_key_at(r, 0), "name");
    ck_assert_str_eq(flash_cfg_key_at(model, 3), "dropout");
    flash_cfg_free(r);
}
END_TEST

START_TEST(test_extends_list) {
    flash_cfg *r = load_ok(DATA "multi.yaml");
    flash_error err = {0};
    long l;
    ck_assert_int_eq(flash_cfg_int(r, "seed", 0, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, 7); /* extra.yaml comes after base.yaml */
    ck_assert_int_eq(flash_cfg_int(flash_cfg_get(r, "sampler"), "steps", 0, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, 2);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_path(r, "sampler.plugin")), "ddim");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_path(r, "model.plugin")), "unet");
    ck_assert_ptr_null(flash_cfg_get(r, "extends"));
    flash_cfg_free(r);
}
END_TEST

START_TEST(test_extends_missing) {
    flash_error err = {0};
    flash_cfg *r = NULL;
    ck_assert_int_eq(flash_cfg_load(DATA "extends_missing.yaml", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err.msg, DATA "extends_missing.yaml:2:10: extends: cannot read base config '" DATA
                                   "no_such_base.yaml': No such file or directory");
    ck_assert_int_eq(flash_cfg_parse_string("extends: [" DATA "base.yaml, nope.yaml]\n", "s", &r, &err),
                     FLASH_ERR_CONFIG);
    ck_assert_msg(strstr(err.msg, ": extends[1]: cannot read base config 'nope.yaml'") != NULL, "got: %s", err.msg);
    ck_assert_int_eq(flash_cfg_parse_string("extends: {a: 1}\n", "s", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "s:1:10: extends: expected a file name or a list of file names, got a map");
}
END_TEST

START_TEST(test_extends_bad_base) {
    /* An error inside a base names the base file and its own line. */
    flash_error err = {0};
    flash_cfg *r = NULL;
    ck_assert_int_eq(flash_cfg_load(DATA "extends_bad_base.yaml", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_ptr_null(r);
    ck_assert_msg(strncmp(err.msg, DATA "syntax_error.yaml:3:15: ", strlen(DATA "syntax_error.yaml:3:15: ")) == 0,
                  "got: %s", err.msg);
    /* A base that is a list, not a map. */
    ck_assert_int_eq(flash_cfg_parse_string("extends: " DATA "scalar_root.yaml\n", "s", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_msg(strstr(err.msg, "scalar_root.yaml:1:1: the top level of a config must be a map") != NULL, "got: %s",
                  err.msg);
}
END_TEST

/* `!replace` takes a map whole instead of merging it into the base's;
 * `key: !delete` removes the base's key; the tags are gone once loaded, and
 * a delete of a key the base lacks does nothing. */
START_TEST(test_extends_replace_delete) {
    flash_error err = {0};
    flash_cfg *r = NULL;
    ck_assert_msg(flash_cfg_parse_string("extends: " DATA "child.yaml\n"
                                         "model: !replace {plugin: mlp, hidden: 8}\n"
                                         "schedule: !delete\n"
                                         "nothing_there: !delete\n"
                                         "losses: !replace [{plugin: mse}]\n",
                                         "s", &r, &err) == FLASH_OK,
                  "%s", err.msg);
    const flash_cfg *model = flash_cfg_get(r, "model");
    ck_assert_uint_eq(flash_cfg_len(model), 2);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(model, "plugin")), "mlp");
    ck_assert_ptr_null(flash_cfg_get(model, "channels"));
    ck_assert_ptr_null(flash_cfg_get(r, "schedule"));
    ck_assert_ptr_null(flash_cfg_get(r, "nothing_there"));
    ck_assert_uint_eq(flash_cfg_len(flash_cfg_get(r, "losses")), 1);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(r, "name")), "child");
    /* printed, nothing of the tags is left */
    char *yaml = flash_cfg_to_yaml(r);
    ck_assert_ptr_nonnull(yaml);
    ck_assert_ptr_null(strstr(yaml, "!"));
    free(yaml);
    flash_cfg_free(r);
    /* nested: a key deep in a merged map */
    ck_assert_msg(flash_cfg_parse_string("extends: " DATA "child.yaml\nmodel:\n  dropout: !delete\n", "s", &r, &err) ==
                      FLASH_OK,
                  "%s", err.msg);
    ck_assert_ptr_null(flash_cfg_path(r, "model.dropout"));
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_path(r, "model.channels")), "64");
    flash_cfg_free(r);
    /* misuse is an error at its place */
    ck_assert_int_eq(flash_cfg_parse_string("a: !delete {b: 1}\n", "s", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "s:1:4: a: !delete takes no value: write `key: !delete`");
    ck_assert_int_eq(flash_cfg_parse_string("a: !drop 1\n", "s", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_msg(strstr(err.msg, "s:1:4: a: unknown tag '!drop'") != NULL, "got: %s", err.msg);
}
END_TEST

START_TEST(test_extends_from_string) {
    /* Text parsed from a string resolves bases against the current
     * directory. */
    char cwd[PATH_MAX];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(DATA "sub"), 0);
    flash_error err = {0};
    flash_cfg *r = NULL;
    flash_status st = flash_cfg_parse_string("extends: mid.yaml\nseed: 5\n", "cli", &r, &err);
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert_msg(st == FLASH_OK, "%s", err.msg);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(r, "name")), "mid");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(r, "seed")), "5");
    ck_assert_str_eq(flash_cfg_file(flash_cfg_get(r, "seed")), "cli");
    ck_assert_str_eq(flash_cfg_file(flash_cfg_get(r, "name")), "mid.yaml");
    ck_assert_str_eq(flash_cfg_file(flash_cfg_path(r, "model.plugin")), "../base.yaml");
    flash_cfg_free(r);
}
END_TEST

START_TEST(test_extends_cycle) {
    flash_error err = {0};
    flash_cfg *r = NULL;
    ck_assert_int_eq(flash_cfg_load(DATA "cycle_a.yaml", &r, &err), FLASH_ERR_CONFIG);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err.msg, DATA "cycle_b.yaml:1:10: extends: circular extends: " DATA "cycle_a.yaml -> " DATA
                                   "cycle_b.yaml -> " DATA "cycle_a.yaml");
}
END_TEST

/* ---- --set -------------------------------------------------------------------- */

START_TEST(test_set) {
    flash_cfg *r = load_ok(DATA "child.yaml");
    flash_error err = {0};
    long l;
    /* An existing nested key. */
    ck_assert_int_eq(flash_cfg_set(r, "model.channels=128", &err), FLASH_OK);
    ck_assert_int_eq(flash_cfg_int(flash_cfg_get(r, "model"), "channels", 0, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, 128);
    const flash_cfg *ch = flash_cfg_path(r, "model.channels");
    ck_assert_str_eq(flash_cfg_file(ch), "--set");
    ck_assert_str_eq(flash_cfg_keypath(ch), "model.channels");
    ck_assert_uint_eq(flash_cfg_len(flash_cfg_get(r, "model")), 4);
    /* A new key in new maps, with a flow value. */
    ck_assert_int_eq(flash_cfg_set(r, "sampler.guidance.scale=[1.5, 2]", &err), FLASH_OK);
    double v[4];
    size_t n;
    ck_assert_int_eq(flash_cfg_doubles(flash_cfg_path(r, "sampler.guidance"), "scale", v, 4, &n, &err), FLASH_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert(v[0] == 1.5 && v[1] == 2.0);
    ck_assert_str_eq(flash_cfg_keypath(flash_cfg_path(r, "sampler.guidance.scale[1]")), "sampler.guidance.scale[1]");
    /* A list replaces a list; a map value replaces a scalar. */
    ck_assert_int_eq(flash_cfg_set(r, "schedule.timesteps=[999, 750, 250]", &err), FLASH_OK);
    ck_assert_uint_eq(flash_cfg_len(flash_cfg_path(r, "schedule.timesteps")), 3);
    ck_assert_int_eq(flash_cfg_set(r, "name={plugin: x, k: [1]}", &err), FLASH_OK);
    ck_assert_int_eq(flash_cfg_kind(flash_cfg_get(r, "name")), FLASH_CFG_MAP);
    ck_assert_str_eq(flash_cfg_keypath(flash_cfg_path(r, "name.k[0]")), "name.k[0]");
    /* An item of a list of components. */
    ck_assert_int_eq(flash_cfg_set(r, "losses[1].weight=0.75", &err), FLASH_OK);
    double w;
    ck_assert_int_eq(flash_cfg_double(flash_cfg_path(r, "losses[1]"), "weight", 0, &w, &err), FLASH_OK);
    ck_assert(w == 0.75);
    ck_assert_int_eq(flash_cfg_set(r, "schedule.timesteps[0]=900", &err), FLASH_OK);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_path(r, "schedule.timesteps[0]")), "900");
    /* Empty value is null; a string with '=' keeps everything after the first. */
    ck_assert_int_eq(flash_cfg_set(r, "note=a=b", &err), FLASH_OK);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(r, "note")), "a=b");
    ck_assert_int_eq(flash_cfg_set(r, "seed=", &err), FLASH_OK);
    ck_assert_int_eq(flash_cfg_kind(flash_cfg_get(r, "seed")), FLASH_CFG_NULL);

    /* Errors. */
    ck_assert_int_eq(flash_cfg_set(r, "model.channels=abc", &err), FLASH_OK);
    EXPECT_ERR(flash_cfg_int(flash_cfg_get(r, "model"), "channels", 0, &l, err),
               "--set: model.channels: expected an integer, got 'abc'");
    ck_assert_int_eq(flash_cfg_set(r, "model.channels", &err), FLASH_ERR_USAGE);
    ck_assert_str_eq(err.msg, "--set 'model.channels': expected KEY=VALUE (e.g. sampler.steps=3)");
    ck_assert_int_eq(flash_cfg_set(r, "=3", &err), FLASH_ERR_USAGE);
    ck_assert_int_eq(flash_cfg_set(r, "a..b=3", &err), FLASH_ERR_USAGE);
    ck_assert_int_eq(flash_cfg_set(r, "model.channels=[1, 2", &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "--set model.channels: bad YAML value '[1, 2' at the end: did not find expected ',' "
                              "or ']' (while parsing a flow sequence at line 1, column 1)");
    ck_assert_int_eq(flash_cfg_set(r, "a=x: y: z", &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "--set a: bad YAML value 'x: y: z' at column 5: mapping values are not allowed in this "
                              "context");
    ck_assert_int_eq(flash_cfg_set(r, "a=\xff", &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, "--set a: bad YAML value '\xff' at column 1: invalid leading UTF-8 octet");
    ck_assert_int_eq(flash_cfg_set(r, "model.plugin.depth=3", &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, DATA "sub/../base.yaml:5:11: model.plugin: --set model.plugin.depth needs a map here, "
                                   "got 'unet'");
    ck_assert_int_eq(flash_cfg_set(r, "losses[5].weight=1", &err), FLASH_ERR_CONFIG);
    ck_assert_str_eq(err.msg, DATA "child.yaml:8:3: losses: --set losses[5].weight: index 5 is out of range (2 items)");
    ck_assert_int_eq(flash_cfg_set(r, "model[0]=1", &err), FLASH_ERR_CONFIG);
    ck_assert_msg(strstr(err.msg, "model: --set model[0] needs a sequence here, got a map") != NULL, "got: %s",
                  err.msg);
    flash_cfg_free(r);
}
END_TEST

/* ---- building, cloning, emitting ------------------------------------------ */

/* A --set key is text a YAML reader accepts: UTF-8 without control
 * characters (a fuzzer found one that printed as YAML no reader takes). */
START_TEST(test_set_key_text) {
    flash_cfg *r = parse_ok("a: 1\n");
    flash_error err = {0};
    const char *bad[] = {"a\xf6\x8c.b=1", "a\nb=1", "x\x01=2", "\xc0\xaf=1", "\xed\xa0\x80=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(flash_cfg_set(r, bad[i], &err), FLASH_ERR_USAGE);
        ck_assert_msg(strstr(err.msg, "UTF-8 text without control characters") != NULL, "%s", err.msg);
    }
    /* extends is composition at load: a loaded tree has none (fuzz_config:
     * a set one printed as YAML that loads a base when read back) */
    ck_assert_int_eq(flash_cfg_set(r, "extends=l", &err), FLASH_ERR_USAGE);
    ck_assert_msg(strstr(err.msg, "bases are merged when a file loads") != NULL, "%s", err.msg);
    /* no deeper than a file may nest (fuzz_config: 300 levels set, printed,
     * then refused on reading back) */
    char deep[1024] = "x";
    for (int i = 0; i < 300; i++) strcat(deep, ".x");
    strcat(deep, "=1");
    ck_assert_int_eq(flash_cfg_set(r, deep, &err), FLASH_ERR_USAGE);
    ck_assert_msg(strstr(err.msg, "nests deeper than 256 levels") != NULL, "%s", err.msg);
    ck_assert_int_eq(flash_cfg_set(r, "caf\xc3\xa9.b=2", &err), FLASH_OK);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_path(r, "caf\xc3\xa9.b")), "2");
    flash_cfg_free(r);
}
END_TEST

START_TEST(test_build_and_clone) {
    flash_error err = {0};
    flash_cfg *m = flash_cfg_new_map("built");
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(flash_cfg_put(m, "steps", "4", &err), FLASH_OK);
    ck_assert_int_eq(flash_cfg_put(m, "title", "a: b # c", &err), FLASH_OK);
    ck_assert_int_eq(flash_cfg_put(m, "steps", "8", &err), FLASH_OK);
    ck_assert_uint_eq(flash_cfg_len(m), 2);
    long l;
    ck_assert_int_eq(flash_cfg_int(m, "steps", 0, &l, &err), FLASH_OK);
    ck_assert_int_eq(l, 8);
    ck_assert_str_eq(flash_cfg_keypath(flash_cfg_get(m, "steps")), "steps");

    flash_cfg *c = flash_cfg_clone(m);
    ck_assert(cfg_equal(m, c));
    ck_assert_int_eq(flash_cfg_put(c, "steps", "2", &err), FLASH_OK);
    ck_assert(!cfg_equal(m, c));
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(m, "steps")), "8");

    char *y = flash_cfg_to_yaml(m);
    ck_assert_ptr_nonnull(y);
    flash_cfg *back = parse_ok(y);
    ck_assert(cfg_equal(m, back));
    free(y);
    flash_cfg_free(back);
    flash_cfg_free(c);
    flash_cfg_free(m);
    ck_assert_ptr_null(flash_cfg_clone(NULL));

    /* A tree built in code has no file: errors name just the key. */
    flash_cfg *anon = flash_cfg_new_map(NULL);
    ck_assert_int_eq(flash_cfg_put(anon, "steps", "x", &err), FLASH_OK);
    EXPECT_ERR(flash_cfg_int(anon, "steps", 0, &l, err), "steps: expected an integer, got 'x'");
    flash_cfg_free(anon);
}
END_TEST

START_TEST(test_roundtrip) {
    static const char *const files[] = {"roundtrip.yaml", "child.yaml", "positions.yaml", "types.yaml", NULL};
    for (int i = 0; files[i]; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, DATA "%s", files[i]);
        flash_cfg *a = load_ok(path);
        char *y = flash_cfg_to_yaml(a);
        ck_assert_ptr_nonnull(y);
        ck_assert_msg(strstr(y, "extends") == NULL, "%s", y);
        flash_cfg *b = parse_ok(y);
        ck_assert_msg(cfg_equal(a, b), "%s did not round-trip:\n%s", files[i], y);
        /* Emitting is deterministic: the second text equals the first. */
        char *y2 = flash_cfg_to_yaml(b);
        ck_assert_str_eq(y, y2);
        free(y);
        free(y2);
        flash_cfg_free(a);
        flash_cfg_free(b);
    }
}
END_TEST

START_TEST(test_roundtrip_types) {
    /* Strings that look like other types stay strings; the getters see the
     * difference. */
    flash_cfg *a = load_ok(DATA "roundtrip.yaml");
    char *y = flash_cfg_to_yaml(a);
    flash_cfg *b = parse_ok(y);
    flash_error err = {0};
    long l;
    bool flag;
    ck_assert_int_eq(flash_cfg_int(b, "int", 0, &l, &err), FLASH_OK);
    ck_assert_int_eq(flash_cfg_int(b, "quoted_int", 0, &l, &err), FLASH_ERR_CONFIG);
    ck_assert_int_eq(flash_cfg_bool(b, "quoted_bool", false, &flag, &err), FLASH_ERR_CONFIG);
    ck_assert_int_eq(flash_cfg_kind(flash_cfg_get(b, "quoted_null")), FLASH_CFG_SCALAR);
    ck_assert_int_eq(flash_cfg_kind(flash_cfg_get(b, "quoted_empty")), FLASH_CFG_SCALAR);
    ck_assert_int_eq(flash_cfg_kind(flash_cfg_get(b, "tilde_str")), FLASH_CFG_SCALAR);
    ck_assert_int_eq(flash_cfg_kind(flash_cfg_get(b, "nothing")), FLASH_CFG_NULL);
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(b, "multi")), "line one\nline two");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(b, "unicode")), "café ∑");
    ck_assert_str_eq(flash_cfg_scalar(flash_cfg_get(b, "null")), "key named null");
    ck_assert_int_eq(flash_cfg_bool(flash_cfg_get(b, "flags"), "fast", true, &flag, &err), FLASH_OK);
    ck_assert(!flag);
    /* Block style: nested maps are indented, not written in braces. */
    ck_assert_msg(strstr(y, "\nnested:\n  list:\n") != NULL, "%s", y);
    ck_assert_msg(strstr(y, "flags:\n  dry: true\n") != NULL, "%s", y);
    free(y);
    flash_cfg_free(a);
    flash_cfg_free(b);
}
END_TEST

/* Printing is idempotent: print, parse, print gives the same bytes, for
 * every config in configs/ and for generated scalars of every shape that
 * needs quoting (`2:0` once printed as '2:0', then as "2:0"). */
static void check_idempotent(const flash_cfg *a, const char *what) {
    char *once = flash_cfg_to_yaml(a);
    ck_assert_ptr_nonnull(once);
    flash_cfg *b = parse_ok(once);
    char *twice = flash_cfg_to_yaml(b);
    ck_assert_msg(twice && strcmp(once, twice) == 0, "%s: printed\n%s\nthen\n%s", what, once, twice ? twice : "(null)");
    free(once);
    free(twice);
    flash_cfg_free(b);
}

static void idempotent_dir(const char *dir, int *count) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len = strlen(e->d_name);
        if (e->d_type == DT_DIR) {
            idempotent_dir(path, count);
        } else if (len > 5 && !strcmp(e->d_name + len - 5, ".yaml")) {
            flash_cfg *a = load_ok(path);
            check_idempotent(a, path);
            flash_cfg_free(a);
            ++*count;
        }
    }
    closedir(d);
}

START_TEST(test_print_idempotent) {
    int count = 0;
    idempotent_dir(FLASH_SOURCE_DIR "/configs", &count);
    ck_assert_int_ge(count, 20);
    /* generated: every scalar of a set that YAML reads in different ways,
     * plain and quoted, in block and flow lists and as map values */
    static const char *const texts[] = {"2:0", "1:2:3", "a: b", "#x", "x #y", "- a", "@a", "[a]", "{a}", "!x",
                                        "%x", "*a", "&a", "|", ">", "'", "\"", "yes", "No", "on", "null", "~",
                                        "", "1e3", "0x1F", "0o7", ".inf", "-.NaN", "3.0", "+1", "1_000", "a\tb",
                                        " lead", "trail ", "caf\xc3\xa9", "x: [y]", "?", ",", "a,b", "-", "--"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (int form = 0; form < 4; form++) {
            char yaml[256], q[64];
            /* the text as a quoted YAML string, escaped for double quotes */
            size_t k = 0;
            for (const char *c = texts[i]; *c && k + 3 < sizeof q; c++) {
                if (*c == '"' || *c == '\\') q[k++] = '\\';
                if (*c == '\t') {
                    q[k++] = '\\';
                    q[k++] = 't';
                    continue;
                }
                q[k++] = *c;
            }
            q[k] = 0;
            if (form == 0) snprintf(yaml, sizeof yaml, "v: \"%s\"\n", q);
            if (form == 1) snprintf(yaml, sizeof yaml, "v: [\"%s\", x]\n", q);
            if (form == 2) snprintf(yaml, sizeof yaml, "v:\n  - \"%s\"\n", q);
            if (form == 3) snprintf(yaml, sizeof yaml, "\"%s\": 1\n", q);
            flash_cfg *a = parse_ok(yaml);
            check_idempotent(a, yaml);
            flash_cfg_free(a);
            /* the same text plain, where YAML reads it plain at all */
            flash_error err = {0};
            snprintf(yaml, sizeof yaml, "v: [%s]\n", texts[i]);
            if (flash_cfg_parse_string(yaml, "plain", &a, &err) == FLASH_OK) {
                check_idempotent(a, yaml);
                flash_cfg_free(a);
            }
        }
    }
}
END_TEST

START_TEST(test_write) {
    char dir[] = "/tmp/flash_test_config_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/resolved.yaml", dir);
    flash_cfg *a = load_ok(DATA "child.yaml");
    flash_error err = {0};
    ck_assert_int_eq(flash_cfg_set(a, "sampler.steps=3", &err), FLASH_OK);
    ck_assert_int_eq(flash_cfg_write(a, path, &err), FLASH_OK);
    /* Overwrite: the second write replaces the first whole. */
    ck_assert_int_eq(flash_cfg_write(a, path, &err), FLASH_OK);
    flash_cfg *b = load_ok(path);
    ck_assert(cfg_equal(a, b));
    ck_assert_str_eq(flash_cfg_file(flash_cfg_get(b, "sampler")), path);
    /* Nothing but the final file is left in the directory. */
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) count++;
    closedir(d);
    ck_assert_int_eq(count, 1);
    snprintf(path, sizeof path, "%s/missing_dir/x.yaml", dir);
    ck_assert_int_ne(flash_cfg_write(a, path, &err), FLASH_OK);
    /* Text the emitter refuses is an error, not a truncated file. */
    flash_cfg *bad = flash_cfg_new_map("built");
    ck_assert_int_eq(flash_cfg_put(bad, "k", "\xff\xfe", &err), FLASH_OK);
    ck_assert_ptr_null(flash_cfg_to_yaml(bad));
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    ck_assert_int_eq(flash_cfg_write(bad, path, &err), FLASH_ERR_RUNTIME);
    ck_assert_int_ne(access(path, F_OK), 0);
    flash_cfg_free(bad);
    snprintf(path, sizeof path, "%s/resolved.yaml", dir);
    unlink(path);
    rmdir(dir);
    flash_cfg_free(a);
    flash_cfg_free(b);
}
END_TEST

/* An assignment written in a file (a sweep's `set:`) is located there: its
 * relative path names a file beside that file, from any working directory,
 * and its errors name the file's line; a command-line --set stays relative
 * to the working directory. */
START_TEST(test_set_from_file) {
    char dir[] = "/tmp/flash_test_setfrom_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char sweep[PATH_MAX], weights[PATH_MAX], got[PATH_MAX];
    snprintf(sweep, sizeof sweep, "%s/sweep.yaml", dir);
    snprintf(weights, sizeof weights, "%s/w.bin", dir);
    FILE *f = fopen(sweep, "w");
    ck_assert_ptr_nonnull(f);
    fputs("# a sweep\nset:\n  - teacher_checkpoint=w.bin\n", f);
    fclose(f);
    f = fopen(weights, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    flash_cfg *sw = load_ok(sweep), *cfg = flash_cfg_new_map("run"), *cli = flash_cfg_new_map("run");
    const flash_cfg *item = flash_cfg_at(flash_cfg_get(sw, "set"), 0);
    flash_error err = {0};
    ck_assert_int_eq(flash_cfg_set_from(cfg, flash_cfg_scalar(item), item, &err), FLASH_OK);
    const flash_cfg *v = flash_cfg_get(cfg, "teacher_checkpoint");
    ck_assert_str_eq(flash_cfg_file(v), sweep);
    ck_assert_int_eq(flash_cfg_line(v), 3);
    ck_assert(flash_cfg_resolve_path(v, flash_cfg_scalar(v), got, sizeof got));
    ck_assert_str_eq(got, weights);
    ck_assert_int_eq(flash_cfg_set(cli, "teacher_checkpoint=w.bin", &err), FLASH_OK);
    v = flash_cfg_get(cli, "teacher_checkpoint");
    ck_assert(flash_cfg_resolve_path(v, flash_cfg_scalar(v), got, sizeof got));
    ck_assert_str_eq(got, "w.bin");
    flash_cfg_free(sw);
    flash_cfg_free(cfg);
    flash_cfg_free(cli);
    unlink(weights);
    unlink(sweep);
    rmdir(dir);
}
END_TEST

static Suite *config_suite(void) {
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_syntax_error);
    tcase_add_test(tc, test_duplicate_key);
    tcase_add_test(tc, test_positions);
    tcase_add_test(tc, test_roots);
    tcase_add_test(tc, test_aliases);
    tcase_add_test(tc, test_hostile_input);
    tcase_add_test(tc, test_merge_keys);
    suite_add_tcase(s, tc);
    tc = tcase_create("getters");
    tcase_add_test(tc, test_getters);
    tcase_add_test(tc, test_getter_errors);
    tcase_add_test(tc, test_wrong_type_file);
    tcase_add_test(tc, test_unknown_key);
    tcase_add_test(tc, test_unknown_key_lists_known);
    tcase_add_test(tc, test_did_you_mean);
    suite_add_tcase(s, tc);
    tc = tcase_create("compose");
    tcase_add_test(tc, test_extends_chain);
    tcase_add_test(tc, test_extends_list);
    tcase_add_test(tc, test_extends_missing);
    tcase_add_test(tc, test_extends_cycle);
    tcase_add_test(tc, test_extends_bad_base);
    tcase_add_test(tc, test_extends_from_string);
    tcase_add_test(tc, test_extends_replace_delete);
    tcase_add_test(tc, test_set);
    suite_add_tcase(s, tc);
    tc = tcase_create("emit");
    tcase_add_test(tc, test_build_and_clone);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_roundtrip_types);
    tcase_add_test(tc, test_write);
    tcase_add_test(tc, test_set_from_file);
    tcase_add_test(tc, test_print_idempotent);
    tcase_add_test(tc, test_set_key_text);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
