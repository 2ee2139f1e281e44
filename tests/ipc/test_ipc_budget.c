/* test_ipc_budget.c: the memory and power budget strings, edge by edge. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "budget.h"

static uint64_t mem(const char *s)
{
    uint64_t v = 0;
    qi_error e;
    if (qi_parse_memory(s, strlen(s), "memory", &v, &e) != QI_OK)
        fail_msg("refused \"%s\": %s", s, e.msg);
    return v;
}

static void mem_bad(const char *s, size_t len)
{
    uint64_t v = 12345;
    qi_error e;
    if (qi_parse_memory(s, len, "memory", &v, &e) != QI_ERR_INVALID_ARGUMENT)
        fail_msg("accepted \"%.*s\"", (int)len, s);
    assert_int_equal(v, 12345); /* untouched */
    assert_string_equal(e.field, "memory");
    assert_true(strncmp(e.msg, "memory: ", 8) == 0);
}

static uint64_t pw(const char *s)
{
    uint64_t v = 0;
    qi_error e;
    if (qi_parse_power(s, strlen(s), "power", &v, &e) != QI_OK)
        fail_msg("refused \"%s\": %s", s, e.msg);
    return v;
}

static void pw_bad(const char *s, size_t len)
{
    uint64_t v = 12345;
    qi_error e;
    if (qi_parse_power(s, len, "power", &v, &e) != QI_ERR_INVALID_ARGUMENT)
        fail_msg("accepted \"%.*s\"", (int)len, s);
    assert_int_equal(v, 12345);
    assert_string_equal(e.field, "power");
}

#define MEM_BAD(s) mem_bad(s, sizeof(s) - 1)
#define PW_BAD(s) pw_bad(s, sizeof(s) - 1)

static void test_memory(void **state)
{
    (void)state;
    assert_int_equal(mem("1"), 1);
    assert_int_equal(mem("32M"), 32u << 20);
    assert_int_equal(mem("32m"), 32u << 20);
    assert_int_equal(mem("32MiB"), 32u << 20);
    assert_int_equal(mem("1536K"), 1536u << 10);
    assert_int_equal(mem("2k"), 2048);
    assert_int_equal(mem("2G"), 2ull << 30);
    assert_int_equal(mem("3T"), 3ull << 40);
    assert_int_equal(mem("3TiB"), 3ull << 40);
    assert_int_equal(mem("100B"), 100);
    assert_int_equal(mem("007M"), 7u << 20);
    assert_true(mem("18446744073709551615") == UINT64_MAX);
    assert_true(mem("16777215T") == 16777215ull << 40);
    assert_true(mem("17179869183G") == 17179869183ull << 30);
    /* decimals with a unit, rounded down to whole bytes (systemd's MemoryMax= does the same) */
    assert_int_equal(mem("5.5M"), 5767168);
    assert_int_equal(mem("4.65M"), 4875878);          /* 4875878.4, as qslm-quant names a variant */
    assert_int_equal(mem("3.47M"), 3638558);          /* 3638558.72: down, not to the nearest */
    assert_int_equal(mem("1.5G"), 1536ull << 20);
    assert_int_equal(mem("0.5K"), 512);
    assert_int_equal(mem("0.5KiB"), 512);
    assert_int_equal(mem("2.25t"), 9ull << 38);
    assert_int_equal(mem("1.0009765625K"), 1025);      /* exact: 1024 + 1 */
    assert_int_equal(mem("1.0009765624K"), 1024);      /* just below: rounded down */
    assert_int_equal(mem("0.001K"), 1);                /* 1.024 bytes */
    assert_int_equal(mem("0.999999999999999999T"), (1ull << 40) - 1); /* 18 decimals */
    assert_true(mem("16777215.999999999999999999T") == UINT64_MAX); /* 2^64 - 2^40 + 2^40 - 1 */
    assert_true(mem("15.999999999999999999G") == (16ull << 30) - 1);

    MEM_BAD("");
    MEM_BAD("0");
    MEM_BAD("0K");
    MEM_BAD("M");
    MEM_BAD("-1");
    MEM_BAD("+1");
    MEM_BAD(" 32M");
    MEM_BAD("32M ");
    MEM_BAD("32 M");
    MEM_BAD("32MB");      /* ambiguous: refused, with a hint (test_memory_hints) */
    MEM_BAD("32KB");
    MEM_BAD("32kB");
    MEM_BAD("32Mb");
    MEM_BAD("32MBx");
    MEM_BAD("32mib");
    MEM_BAD("32miB");
    MEM_BAD("32Mi");
    MEM_BAD("32KM");
    MEM_BAD("1.5");        /* a fraction of a byte */
    MEM_BAD("1.5B");
    MEM_BAD(".5M");
    MEM_BAD("5.M");
    MEM_BAD("5..5M");
    MEM_BAD("5.5.5M");
    MEM_BAD("5,5M");
    MEM_BAD("0.0M");
    MEM_BAD("0.0009K");     /* 0.92 bytes: rounds down to 0 */
    MEM_BAD("1.0000000000000000001K"); /* 19 decimals */
    MEM_BAD("16777216.0T");
    MEM_BAD("16777215.9999999999999999999T");
    MEM_BAD("1.5e3K");
    MEM_BAD("1.5 M");
    MEM_BAD("-1.5M");
    MEM_BAD("1e6");
    MEM_BAD("0x10");
    MEM_BAD("32P");
    MEM_BAD("32Mx");
    MEM_BAD("auto");
    MEM_BAD("18446744073709551616");       /* 2^64 */
    MEM_BAD("99999999999999999999999");
    MEM_BAD("16777216T");                  /* 2^64 bytes */
    MEM_BAD("17179869184G");
    MEM_BAD("000000000000000000001");      /* 21 digits */
    MEM_BAD("32M\0");                      /* a NUL counts as a byte */
    MEM_BAD("\xef\xbc\x93\xef\xbc\x92M");  /* full-width digits */
    MEM_BAD("123456789012345678901234567890123"); /* longer than QI_BUDGET_TEXT_MAX */
}

static void test_power(void **state)
{
    (void)state;
    assert_int_equal(pw("3.5W"), 3500000);
    assert_int_equal(pw("3.5"), 3500000);
    assert_int_equal(pw("3W"), 3000000);
    assert_int_equal(pw("500mW"), 500000);
    assert_int_equal(pw("0.5mW"), 500);
    assert_int_equal(pw("0.001mW"), 1);
    assert_int_equal(pw("0.000001W"), 1);
    assert_int_equal(pw("1.000000W"), 1000000);
    assert_int_equal(pw("03.50W"), 3500000);
    assert_true(pw("1000000W") == UINT64_C(1000000000000));
    assert_true(pw("1000000000mW") == UINT64_C(1000000000000));

    PW_BAD("");
    PW_BAD("0");
    PW_BAD("0W");
    PW_BAD("0.0000001W"); /* below the resolution */
    PW_BAD("0.0001mW");
    PW_BAD("-1W");
    PW_BAD("+1W");
    PW_BAD(".5W");
    PW_BAD("5.W");
    PW_BAD("5..0W");
    PW_BAD("1e3W");
    PW_BAD("3.5 W");
    PW_BAD(" 3.5W");
    PW_BAD("3.5w");
    PW_BAD("3.5MW");
    PW_BAD("3.5kW");
    PW_BAD("3,5W");
    PW_BAD("W");
    PW_BAD("inf");
    PW_BAD("nan");
    PW_BAD("1000000.000001W");
    PW_BAD("1000001W");
    PW_BAD("1000000001mW");
    PW_BAD("99999999999999999999W");
    PW_BAD("3.5W\0");
    PW_BAD("auto");
}

/* A refused "MB" says what to write instead; a fraction without a unit says why. */
static void test_memory_hints(void **state)
{
    (void)state;
    uint64_t v;
    qi_error e;
    assert_int_equal(qi_parse_memory("32MB", 4, "memory", &v, &e), QI_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.msg, "'MB' is refused: write M or MiB (1024-based; MB could mean 1000)"));
    assert_int_equal(qi_parse_memory("4kB", 3, "memory", &v, &e), QI_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.msg, "'kB' is refused: write K or KiB"));
    assert_int_equal(qi_parse_memory("1.5", 3, "memory", &v, &e), QI_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.msg, "a fraction needs a unit"));
    assert_int_equal(qi_parse_memory("1.1234567890123456789M", 22, NULL, &v, &e), QI_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.msg, "at most 18 decimals"));
    assert_int_equal(qi_parse_memory("5.M", 3, NULL, &v, &e), QI_ERR_INVALID_ARGUMENT);
    assert_null(strstr(e.msg, "decimals")); /* no digit after the point: the rule, no more */
}

/* format -> parse gives the value back; format picks the largest exact unit. */
static void test_format(void **state)
{
    (void)state;
    char buf[QI_BUDGET_TEXT_MAX];
    assert_string_equal(qi_format_memory(32u << 20, buf, sizeof buf), "32M");
    assert_string_equal(qi_format_memory(1536u << 10, buf, sizeof buf), "1536K");
    assert_string_equal(qi_format_memory(1000, buf, sizeof buf), "1000");
    assert_string_equal(qi_format_memory(5ull << 50, buf, sizeof buf), "5120T");
    assert_string_equal(qi_format_power(3500000, buf, sizeof buf), "3.5W");
    assert_string_equal(qi_format_power(1, buf, sizeof buf), "0.000001W");
    assert_string_equal(qi_format_power(2000000, buf, sizeof buf), "2W");
    const uint64_t mems[] = {1, 1023, 1024, 1025, 32u << 20, 3ull << 40, 5ull << 50, UINT64_MAX,
                             UINT64_MAX - 1023};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        assert_true(mem(qi_format_memory(mems[i], buf, sizeof buf)) == mems[i]);
    const uint64_t pws[] = {1, 999999, 1000000, 1000001, 123456789, UINT64_C(1000000000000)};
    for (size_t i = 0; i < sizeof pws / sizeof pws[0]; i++)
        assert_true(pw(qi_format_power(pws[i], buf, sizeof buf)) == pws[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_memory_hints),
        cmocka_unit_test(test_power),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
