/* hierarchy.h: the tree of a SpikeGPT / RWKV-4 model, found from its model file alone.
 *
 *   model → blocks (input, layer 0 .. L-1, output) → sub-blocks (embedding, layer norms,
 *   time-mix i, channel-mix i, head, classifier) → modules (each tensor)
 *
 * QSLM's tiers quantize at these levels: one type for the whole model (global), one per block,
 * one per module. Only matrices (2-D tensors) are quantized; vectors stay f32 but are counted in
 * the tree so that parameter counts and bytes add up to the file's. */
#ifndef QQ_HIERARCHY_H
#define QQ_HIERARCHY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model_file.h"

typedef enum { QQ_NODE_MODEL, QQ_NODE_BLOCK, QQ_NODE_SUBBLOCK, QQ_NODE_MODULE } qq_node_kind;

typedef struct {
    qq_node_kind kind;
    char name[96];          /* "model", "block 3", "time-mix 3", or the tensor's name */
    size_t parent;          /* index of the parent node (the root is its own parent) */
    size_t first_child, n_children; /* children are contiguous in the node array */
    uint64_t params;        /* weights below this node */
    uint64_t matrix_params; /* of which in matrices (quantizable) */
    int tensor;             /* modules: index into the model file's tensors; else -1 */
    size_t mod_first, mod_count; /* the modules below (or at) this node: a contiguous range of
                                    node indices, since the tree is built in sorted order */
} qq_node;

typedef struct {
    qq_node *nodes;         /* nodes[0] is the model; breadth-first, so each tier is a range */
    size_t n_nodes;
    size_t first_block, n_blocks;
    size_t first_module, n_modules;
    size_t n_layer;
} qq_hierarchy;

/* Builds the tree from the tensor names of a SpikeGPT/RWKV-4 file. Every tensor lands in exactly
 * one module; a tensor the tree does not know is an error naming it. */
qr_status qq_hierarchy_build(const qr_model_file *file, qq_hierarchy *out, qr_error *err);
void qq_hierarchy_free(qq_hierarchy *h);

/* True for modules whose tensor is a matrix (a quantization unit at the module tier). */
bool qq_module_is_matrix(const qq_hierarchy *h, const qr_model_file *file, size_t node);

/* The block node (index) a node belongs to; the model node maps to itself. */
size_t qq_block_of(const qq_hierarchy *h, size_t node);

/* True when block node `block` is one of the model's layers (not the input or output block);
 * *layer is then its index. */
bool qq_block_layer(const qq_hierarchy *h, size_t block, size_t *layer);

#endif
