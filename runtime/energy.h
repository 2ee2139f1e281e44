/* energy.h: an estimate of the energy of one decoded token, from operation counts.
 *
 * For a bound model, counts the arithmetic of every weight matrix product of one token by
 * kind — multiply-accumulates at the precision the storage type computes in, accumulates for
 * the spike-driven value products — and the bytes of weights read from DRAM, then prices them
 * with a per-operation energy table (by default Horowitz, ISSCC 2014, 45 nm; BUNDLE.md has the
 * table, its source and what is left out). It is a model for comparing variants, in the
 * tradition of SNN papers' energy estimates, not a measurement of this CPU: terms of order d
 * per layer (norms, WKV, LIF) and instruction overheads are not counted. */
#ifndef QR_ENERGY_H
#define QR_ENERGY_H

#include <stdbool.h>

#include "error.h"
#include "model.h"

/* Energy of one operation, in picojoules. */
typedef struct {
    double i8_add, i32_add, i8_mul, i32_mul;
    double f16_add, f16_mul, f32_add, f32_mul;
    double dram_64bit;     /* one 64-bit read from DRAM */
} qr_energy_table;

/* Horowitz 2014, 45 nm at 0.9 V; DRAM at 1300 pJ per 64 bits, the low end of his 1.3-2.6 nJ. */
qr_energy_table qr_energy_table_45nm(void);

typedef struct {
    double firing_rate;            /* spike.ffn_hidden models: the fraction of channel-mix hidden
                                      units that fire per token, in [0, 1]; ignored otherwise */
    bool with_head;                /* count the LM head (generation); false for a model used
                                      only as a classifier, whose head runs once per text */
    const qr_energy_table *table;  /* NULL: qr_energy_table_45nm() */
} qr_energy_options;

typedef struct {
    /* operations per token, by kind (fractional when a firing rate scales them) */
    double f32_mul, f32_add;   /* 32-bit float */
    double f16_mul, f16_add;   /* 16-bit float */
    double i8_mul;             /* 8-bit x 8-bit integer multiplies */
    double i32_add;            /* 32-bit integer adds (accumulating those products) */
    /* the same work by where it comes from */
    double macs;               /* multiply-accumulates of the dense products: one per weight */
    double acs;                /* accumulates of the spike-driven products: weights x rate */
    double dram_bytes;         /* weight bytes read per token */
    double pj_compute;         /* energy of the arithmetic, pJ */
    double pj_dram;            /* energy of the DRAM reads, pJ */
    double pj_total;           /* pj_compute + pj_dram */
} qr_energy;

/* Counts and prices one decoded token of m. QR_ERR_INVALID for a firing rate outside [0, 1] or a
 * matrix type the table does not price. */
qr_status qr_energy_per_token(const qr_model *m, const qr_energy_options *opt, qr_energy *out,
                              qr_error *err);

#endif
