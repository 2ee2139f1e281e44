/* tradeoff.c: the objective and the floors. */
#include "tradeoff.h"

#include <math.h>
#include <stdio.h>

#include "stats.h"

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
    if (m->cls && ref->cls)
        loss += 100.0 * expm1(m->cls_kl);
    return loss;
}

double qq_objective(double loss, uint64_t footprint, uint64_t f32_footprint, double lambda)
{
    return loss + lambda * 100.0 * (double)footprint / (double)f32_footprint;
}

/* Floors are inclusive: a drop of exactly 1 point (2 of 200 sentences) meets a 1-point floor,
 * whatever the rounding of 0.78 - 0.77. */
#define FLOOR_SLACK 1e-9

/* Whether head h keeps the accuracy floor: it breaks it when its accuracy is more than the floor
 * under f32's and, when paired with f32's answers, significantly worse than f32 (exact one-sided
 * McNemar). A drop over the floor that is within chance leaves a note in why. */
static bool head_within(const qq_metrics *m, const qq_metrics *ref, const qq_floors *f, size_t h, char *why,
                        size_t why_size)
{
    double acc = h ? m->head_accuracy[h] : m->accuracy, acc0 = h ? ref->head_accuracy[h] : ref->accuracy;
    double drop = 100.0 * (acc0 - acc);
    if (drop <= f->max_acc_drop + FLOOR_SLACK)
        return true;
    char name[48] = "";
    if (h || f->head_names[1]) { /* head 0 is named only when there are several */
        if (f->head_names[h])
            snprintf(name, sizeof name, "task %s: ", f->head_names[h]);
        else
            snprintf(name, sizeof name, "head %zu: ", h);
    }
    if (!m->head_paired[h]) {
        snprintf(why, why_size, "%svalidation accuracy %.2f%% is %.2f points under f32's %.2f%% (floor: %.2f points)",
                 name, 100.0 * acc, drop, 100.0 * acc0, f->max_acc_drop);
        return false;
    }
    double alpha = f->acc_alpha > 0.0 ? f->acc_alpha : QQ_ACC_ALPHA;
    double p = qq_mcnemar_worse_p(m->head_lost[h], m->head_gained[h]);
    bool chance = p >= alpha;
    snprintf(why, why_size,
             "%svalidation accuracy %.2f%% is %.2f points under f32's %.2f%% (floor: %.2f points)%s: of %llu "
             "texts it gets %llu wrong that f32 gets right and %llu right that f32 gets wrong "
             "(exact one-sided McNemar p = %.3g, level %.3g)",
             name, 100.0 * acc, drop, 100.0 * acc0, f->max_acc_drop,
             chance ? " but within chance" : alpha < 1.0 ? ", beyond chance" : "",
             (unsigned long long)m->head_items[h], (unsigned long long)m->head_lost[h],
             (unsigned long long)m->head_gained[h], p, alpha);
    return chance;
}

bool qq_within_floors(const qq_metrics *m, const qq_metrics *ref, const qq_floors *f, char *why,
                      size_t why_size)
{
    if (why_size)
        why[0] = '\0';
    if (m->lm && ref->lm) {
        double inc = 100.0 * (m->ppl / ref->ppl - 1.0);
        if (inc > f->max_ppl_increase + FLOOR_SLACK) {
            snprintf(why, why_size, "validation perplexity %.3f is %+.2f%% over f32's %.3f (floor: +%.2f%%)",
                     m->ppl, inc, ref->ppl, f->max_ppl_increase);
            return false;
        }
    }
    if (m->cls && ref->cls && !head_within(m, ref, f, 0, why, why_size))
        return false;
    /* The floor holds for every head, not for their sum or mean. */
    for (size_t h = 1; h < QQ_HEADS_MAX; h++)
        if (m->head_measured[h] && ref->head_measured[h] && !head_within(m, ref, f, h, why, why_size))
            return false;
    return true;
}
