/* request_stats.c: counting answered requests and switches into fixed arrays (request_stats.h). */
#include "request_stats.h"

const double qd_hist_bounds[QD_HIST_BOUNDS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                               0.5,   1,      2.5,   5,    10,    30,   60,  120};

const char *qd_stats_op_name(size_t op)
{
    return op == QD_OP_NONE ? "none" : qi_op_name((qi_op)op);
}

void qd_histogram_observe(qd_histogram *h, double seconds)
{
    if (!(seconds >= 0)) /* a clock that went back, or NaN: the fastest bucket */
        seconds = 0;
    size_t b = 0;
    while (b < QD_HIST_BOUNDS && seconds > qd_hist_bounds[b])
        b++;
    h->count[b]++;
    h->sum += seconds;
}

uint64_t qd_histogram_count(const qd_histogram *h)
{
    uint64_t n = 0;
    for (size_t b = 0; b <= QD_HIST_BOUNDS; b++)
        n += h->count[b];
    return n;
}

void qd_stats_answered(qd_request_stats *st, size_t op, qi_code code, double seconds)
{
    if (op > QD_OP_NONE)
        op = QD_OP_NONE;
    st->answered[op]++;
    if (code != QI_OK)
        st->errors[op][qi_code_is_wire(code) ? code : QI_ERR_INTERNAL]++;
    qd_histogram_observe(&st->duration[op], seconds);
}

void qd_stats_switched(qd_request_stats *st, qd_why why, double seconds)
{
    st->switches[(unsigned)why < QD_WHY_COUNT ? why : QD_WHY_NONE_FITS]++;
    qd_histogram_observe(&st->switch_duration, seconds);
}

uint64_t qd_stats_requests(const qd_request_stats *st)
{
    uint64_t n = 0;
    for (size_t op = 0; op < QD_STATS_OPS; op++)
        n += st->answered[op];
    return n;
}

uint64_t qd_stats_errors(const qd_request_stats *st)
{
    uint64_t n = 0;
    for (size_t op = 0; op < QD_STATS_OPS; op++)
        for (size_t c = 0; c < QD_STATS_CODES; c++)
            n += st->errors[op][c];
    return n;
}

uint64_t qd_stats_switches(const qd_request_stats *st)
{
    uint64_t n = 0;
    for (size_t w = 0; w < QD_WHY_COUNT; w++)
        n += st->switches[w];
    return n;
}
