/* unit.h -- a tiny header-only harness for the C unit tests in spec/c.
 *
 *   static void test_x(void) { UNIT_CHECK(1 + 1 == 2); UNIT_EQ_INT(f(), 3); }
 *   int main(void) { UNIT_RUN(test_x); return unit_summary(); }
 *
 * A failed check prints "file:line: expression" (with the values for the _EQ_ forms) and
 * the test goes on; a test function fails if any of its checks failed. Every check is an
 * expression worth 1 when it passed, so a test can stop early: if (!UNIT_CHECK(p)) return;
 * unit_summary() prints "unit: N passed, M failed" and returns the exit status. */
#ifndef GG_UNIT_H
#define GG_UNIT_H

#include <stdio.h>
#include <string.h>

typedef struct unit_state {
    long checks_failed; /* failed checks so far, over all tests */
    int passed;         /* test functions */
    int failed;
} unit_state;

/* The one state of this test program (function-local static: no global symbol). */
static inline unit_state *unit_state_get(void)
{
    static unit_state st;
    return &st;
}

static inline int unit_check_(int ok, const char *file, int line, const char *expr)
{
    if (!ok) {
        unit_state_get()->checks_failed++;
        fprintf(stderr, "%s:%d: check failed: %s\n", file, line, expr);
    }
    return ok;
}

static inline int unit_eq_int_(long long a, long long b, const char *file, int line, const char *ea,
                               const char *eb)
{
    if (a == b) return 1;
    unit_state_get()->checks_failed++;
    fprintf(stderr, "%s:%d: check failed: %s == %s (%lld != %lld)\n", file, line, ea, eb, a, b);
    return 0;
}

static inline int unit_eq_str_(const char *a, const char *b, const char *file, int line,
                               const char *ea, const char *eb)
{
    if (a && b && strcmp(a, b) == 0) return 1;
    unit_state_get()->checks_failed++;
    fprintf(stderr, "%s:%d: check failed: %s == %s (\"%s\" != \"%s\")\n", file, line, ea, eb,
            a ? a : "(null)", b ? b : "(null)");
    return 0;
}

static inline void unit_run_(void (*fn)(void), const char *name)
{
    unit_state *st = unit_state_get();
    long before = st->checks_failed;
    fn();
    if (st->checks_failed == before) {
        st->passed++;
    } else {
        st->failed++;
        fprintf(stderr, "FAIL %s\n", name);
    }
}

static inline int unit_summary(void)
{
    unit_state *st = unit_state_get();
    printf("unit: %d passed, %d failed\n", st->passed, st->failed);
    fflush(stdout);
    return st->failed ? 1 : 0;
}

#define UNIT_CHECK(cond)  unit_check_((cond) ? 1 : 0, __FILE__, __LINE__, #cond)
#define UNIT_EQ_INT(a, b) unit_eq_int_((long long)(a), (long long)(b), __FILE__, __LINE__, #a, #b)
#define UNIT_EQ_STR(a, b) unit_eq_str_((a), (b), __FILE__, __LINE__, #a, #b)
#define UNIT_RUN(fn)      unit_run_((fn), #fn)

#endif
