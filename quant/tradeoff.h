/* tradeoff.h: the performance-and-memory trade-off QSLM minimises (quant/README.md).
 *
 *   J = 100·(ppl/ppl₀ − 1) + 100·max(0, acc₀ − acc) + λ · 100 · M / M₀
 *
 * ppl, acc: the setting's perplexity and accuracy; ppl₀, acc₀: the f32 model's on the same data;
 * M: the setting's served footprint, M₀: the f32 model's. So J is "percent of perplexity lost +
 * points of accuracy lost + λ × percent of the f32 memory kept", lower is better, and λ says how
 * many points of performance one percent of memory is worth. On the calibration split the
 * perplexity term is computed from its NLL against the f32 model's there, and the classifier's
 * from the KL of its class distributions from f32's (qq_calib_loss). A model with
 * several classifier heads adds each further head's points of accuracy lost, and the accuracy
 * floor holds for each head on its own.
 *
 * The accuracy floor is a paired test, not a raw difference: on a few hundred sentences one
 * sentence is half a point, so a head breaks it only when its accuracy is more than the floor
 * below f32's AND the exact one-sided McNemar test on the sentences the two disagree on says it
 * is worse than f32 at level acc_alpha (stats.h). Both must hold: the drop alone is noise at
 * this size; the test alone would refuse a drop too small to matter on a large set. Without the
 * pairs (head_paired false) the drop alone decides, as before. */
#ifndef QQ_TRADEOFF_H
#define QQ_TRADEOFF_H

#include <stdbool.h>
#include <stdint.h>

#include "measure.h"

#define QQ_ACC_ALPHA 0.05      /* the McNemar test's default level */

typedef struct {
    double max_ppl_increase;      /* percent over f32, on validation */
    double max_acc_drop;          /* points below f32, on validation; for each head */
    double acc_alpha;             /* the level a drop must be significant at (0: QQ_ACC_ALPHA;
                                     1: any drop over the floor breaks it) */
    const char *head_names[QQ_HEADS_MAX]; /* task names for the messages (NULL: "head N") */
} qq_floors;

/* Performance lost in percent/points (the first two terms). */
double qq_performance_loss(const qq_metrics *m, const qq_metrics *ref);
/* The same on calibration: 100·(e^(nll − nll₀) − 1) + 100·(e^cls_kl − 1). Negative when the
 * setting's NLL happens to be lower than f32's there. The classifier's term is its class KL (head
 * 0's, from the reference run), what its NLL would gain were f32's class distribution the truth,
 * not its accuracy: on a few dozen sentences one is several points, and on the default data they
 * are sentences the head was trained on, which every setting down to q2_1 gets all right. KL
 * needs no label, so it measures the classifier there too. */
double qq_calib_loss(const qq_metrics *m, const qq_metrics *ref);
double qq_objective(double loss, uint64_t footprint, uint64_t f32_footprint, double lambda);
/* True when m (validation) is within the floors of ref. Writes why not into why, with the
 * numbers: the drop, and for the accuracy floor the discordant sentences and the p-value. When
 * within, why is empty or notes a drop over the accuracy floor that was within chance. */
bool qq_within_floors(const qq_metrics *m, const qq_metrics *ref, const qq_floors *f, char *why,
                      size_t why_size);

#endif
