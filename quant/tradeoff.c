/* tradeoff.c: the objective and the floors. */
#include "tradeoff.h"

#include <math.h>
#include <stdio.h>

/* Points of accuracy lost by the heads after the first (each head's drop counts; a gain
 * counts nothing, as for head 0). */
static double other_heads_loss(const qq_metrics *m, const qq_metrics *ref)
{
    double loss = 0.0;
    for (size_t h = 1; h < QQ_HEADS_MAX; h++)
        if (m->head_measured[h] && ref->head_measured[h] && ref->head_accuracy[h] > m->head_accuracy[h])
            loss += 100.0 * (ref->head_accuracy[h] - m->head_accuracy[h]);
    return loss;
}

double qq_performance_loss(const qq_metrics *m, const qq_metrics *ref)
{
    double loss = 0.0;
    if (m->lm && ref->lm)
        loss += 100.0 * (m->ppl / ref->ppl - 1.0);
    if (m->cls && ref->cls && ref->accuracy > m->accuracy)
        loss += 100.0 * (ref->accuracy - m->accuracy);
    return loss + other_heads_loss(m, ref);
}

double qq_calib_loss(const qq_metrics *m, const qq_metrics *ref)
{
    double loss = 0.0;
    if (m->lm && ref->lm)
        loss += 100.0 * expm1(m->nll - ref->nll);
    if (m->cls && ref->cls && ref->accuracy > m->accuracy)
        loss += 100.0 * (ref->accuracy - m->accuracy);
    return loss + other_heads_loss(m, ref);
}

double qq_objective(double loss, uint64_t footprint, uint64_t f32_footprint, double lambda)
{
    return loss + lambda * 100.0 * (double)footprint / (double)f32_footprint;
}

/* Floors are inclusive: a drop of exactly 1 point (2 of 200 sentences) meets a 1-point floor,
 * whatever the rounding of 0.78 - 0.77. */
#define FLOOR_SLACK 1e-9

bool qq_within_floors(const qq_metrics *m, const qq_metrics *ref, const qq_floors *f, char *why,
                      size_t why_size)
{
    if (m->lm && ref->lm) {
        double inc = 100.0 * (m->ppl / ref->ppl - 1.0);
        if (inc > f->max_ppl_increase + FLOOR_SLACK) {
            snprintf(why, why_size, "validation perplexity %.3f is %+.2f%% over f32's %.3f (floor: +%.2f%%)",
                     m->ppl, inc, ref->ppl, f->max_ppl_increase);
            return false;
        }
    }
    if (m->cls && ref->cls) {
        double drop = 100.0 * (ref->accuracy - m->accuracy);
        if (drop > f->max_acc_drop + FLOOR_SLACK) {
            snprintf(why, why_size, "validation accuracy %.2f%% is %.2f points under f32's %.2f%% (floor: %.2f points)",
                     100.0 * m->accuracy, drop, 100.0 * ref->accuracy, f->max_acc_drop);
            return false;
        }
    }
    /* The floor holds for every head, not for their sum or mean. */
    for (size_t h = 1; h < QQ_HEADS_MAX; h++) {
        if (!m->head_measured[h] || !ref->head_measured[h])
            continue;
        double drop = 100.0 * (ref->head_accuracy[h] - m->head_accuracy[h]);
        if (drop > f->max_acc_drop + FLOOR_SLACK) {
            char name[48];
            if (f->head_names[h])
                snprintf(name, sizeof name, "task %s", f->head_names[h]);
            else
                snprintf(name, sizeof name, "head %zu", h);
            snprintf(why, why_size, "%s: validation accuracy %.2f%% is %.2f points under f32's %.2f%% (floor: %.2f points)",
                     name, 100.0 * m->head_accuracy[h], drop, 100.0 * ref->head_accuracy[h], f->max_acc_drop);
            return false;
        }
    }
    return true;
}
