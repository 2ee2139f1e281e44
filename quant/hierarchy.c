/* hierarchy.c: tensor names → (block, sub-block) → a breadth-first tree. */
#include "hierarchy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heads.h"

/* Sub-blocks in their order within each block. */
enum { SUB_EMBEDDING, SUB_LN0, SUB_LN1, SUB_TIME_MIX, SUB_LN2, SUB_CHANNEL_MIX, SUB_LN_OUT, SUB_HEAD,
       SUB_CLASSIFIER, SUB_KINDS };
static const char *const sub_names[SUB_KINDS] = {"embedding", "ln0", "ln1", "time-mix", "ln2",
                                                 "channel-mix", "ln_out", "head", "classifier"};

typedef struct {
    size_t block;   /* 0: input, 1..L: layer block-1, L+1: output */
    int sub;
    size_t tensor;
} placement;

/* The layer of "blocks.N.rest" (name starts with "blocks."): N in canonical decimal (no sign, space or leading zero, so that
 * one layer has one spelling) and below n_layer; *rest points after the dot. */
static bool layer_of(const char *name, size_t n_layer, unsigned long *layer, const char **rest)
{
    const char *p = name + strlen("blocks.");
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '.'))
        return false;
    unsigned long v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (unsigned long)(*p - '0');
        if (v >= n_layer)
            return false;
    }
    if (*p != '.')
        return false;
    *layer = v;
    *rest = p + 1;
    return true;
}

/* Where a tensor belongs, from its name (runtime/tensor_names.def, plus the classifier heads'
 * names of runtime/heads.h); false for a name a SpikeGPT / RWKV-4 model does not have. */
static bool place(const char *name, size_t n_layer, placement *p)
{
    unsigned long layer = 0;
    const char *rest = NULL;
    bool bias;
    if (strncmp(name, "blocks.", strlen("blocks.")) == 0 && !layer_of(name, n_layer, &layer, &rest))
        return false;
    if (!rest && qr_head_tensor_index(name, &bias) >= 0) {
        *p = (placement){n_layer + 1, SUB_CLASSIFIER, 0};
        return true;
    }
#define QR_TENSOR(where, tname, kind, rows, cols, field, group) PLACE_##where(tname, SUB_##group)
#define PLACE_INPUT(tname, sub)                                                                 \
    if (!rest && strcmp(name, tname) == 0) {                                                    \
        *p = (placement){0, sub, 0};                                                            \
        return true;                                                                            \
    }
#define PLACE_FIRST(tname, sub)                                                                 \
    if (rest && layer == 0 && strcmp(rest, tname) == 0) {                                       \
        *p = (placement){0, sub, 0};                                                            \
        return true;                                                                            \
    }
#define PLACE_LAYER(tname, sub)                                                                 \
    if (rest && strcmp(rest, tname) == 0) {                                                     \
        *p = (placement){layer + 1, sub, 0};                                                    \
        return true;                                                                            \
    }
#define PLACE_OUTPUT(tname, sub)                                                                \
    if (!rest && strcmp(name, tname) == 0) {                                                    \
        *p = (placement){n_layer + 1, sub, 0};                                                  \
        return true;                                                                            \
    }
#define PLACE_LM_HEAD PLACE_OUTPUT
#include "tensor_names.def"
#undef QR_TENSOR
    return false;
}

static int by_place(const void *a, const void *b)
{
    const placement *x = a, *y = b;
    if (x->block != y->block)
        return x->block < y->block ? -1 : 1;
    if (x->sub != y->sub)
        return x->sub < y->sub ? -1 : 1;
    return x->tensor < y->tensor ? -1 : x->tensor > y->tensor;
}

static void block_name(size_t block, size_t n_layer, char *out, size_t cap)
{
    if (block == 0)
        snprintf(out, cap, "input");
    else if (block == n_layer + 1)
        snprintf(out, cap, "output");
    else
        snprintf(out, cap, "block %zu", block - 1);
}

qr_status qq_hierarchy_build(const qr_model_file *file, qq_hierarchy *out, qr_error *err)
{
    memset(out, 0, sizeof *out);
    const char *path = qr_model_file_path(file);
    uint64_t n_layer;
    qr_status st = qr_model_file_get_u64(file, "model.n_layer", 0, &n_layer, err);
    if (st)
        return st;
    if (n_layer == 0 || n_layer > 4096)
        return qr_fail(err, QR_ERR_FORMAT, "%s: model.n_layer %llu is out of range", path,
                       (unsigned long long)n_layer);
    size_t n_tensors = qr_model_file_tensor_count(file);
    placement *pl = calloc(n_tensors ? n_tensors : 1, sizeof *pl);
    if (!pl)
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the hierarchy");
    for (size_t i = 0; i < n_tensors; i++) {
        const char *name = qr_model_file_tensor(file, i)->name;
        if (!place(name, n_layer, &pl[i])) {
            free(pl);
            return qr_fail(err, QR_ERR_FORMAT, "%s: tensor '%s' is not part of a SpikeGPT/RWKV-4 model",
                           path, name);
        }
        pl[i].tensor = i;
    }
    qsort(pl, n_tensors, sizeof *pl, by_place);
    /* Count distinct blocks and sub-blocks. */
    size_t n_blocks = 0, n_subs = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        n_blocks += i == 0 || pl[i].block != pl[i - 1].block;
        n_subs += i == 0 || pl[i].block != pl[i - 1].block || pl[i].sub != pl[i - 1].sub;
    }
    size_t n_nodes = 1 + n_blocks + n_subs + n_tensors;
    qq_node *nodes = calloc(n_nodes, sizeof *nodes);
    if (!nodes) {
        free(pl);
        return qr_fail(err, QR_ERR_NOMEM, "out of memory for the hierarchy");
    }
    nodes[0] = (qq_node){QQ_NODE_MODEL, "model", 0, 1, n_blocks, 0, 0, -1};
    size_t b = 0, s = 0; /* next block and sub-block slot */
    size_t block0 = 1, sub0 = 1 + n_blocks, mod0 = 1 + n_blocks + n_subs;
    for (size_t i = 0; i < n_tensors; i++) {
        bool new_block = i == 0 || pl[i].block != pl[i - 1].block;
        bool new_sub = new_block || pl[i].sub != pl[i - 1].sub;
        if (new_block) {
            qq_node *bn = &nodes[block0 + b++];
            *bn = (qq_node){QQ_NODE_BLOCK, "", 0, sub0 + s, 0, 0, 0, -1};
            block_name(pl[i].block, n_layer, bn->name, sizeof bn->name);
        }
        size_t bi = block0 + b - 1;
        if (new_sub) {
            qq_node *sn = &nodes[sub0 + s++];
            *sn = (qq_node){QQ_NODE_SUBBLOCK, "", bi, mod0 + i, 0, 0, 0, -1};
            if (pl[i].block >= 1 && pl[i].block <= n_layer)
                snprintf(sn->name, sizeof sn->name, "%s %zu", sub_names[pl[i].sub], pl[i].block - 1);
            else
                snprintf(sn->name, sizeof sn->name, "%s", sub_names[pl[i].sub]);
            nodes[bi].n_children++;
        }
        size_t si = sub0 + s - 1;
        const qr_tensor_info *t = qr_model_file_tensor(file, pl[i].tensor);
        qq_node *mn = &nodes[mod0 + i];
        *mn = (qq_node){QQ_NODE_MODULE, "", si, 0, 0, t->n_elements, t->n_dims == 2 ? t->n_elements : 0,
                        (int)pl[i].tensor};
        snprintf(mn->name, sizeof mn->name, "%s", t->name);
        nodes[si].n_children++;
        for (size_t up = si;; up = nodes[up].parent) {
            nodes[up].params += mn->params;
            nodes[up].matrix_params += mn->matrix_params;
            if (up == 0)
                break;
        }
    }
    free(pl);
    /* Module ranges, bottom-up: modules are their own range; a parent spans its children's. */
    for (size_t i = n_nodes; i-- > 0;) {
        qq_node *nd = &nodes[i];
        if (nd->kind == QQ_NODE_MODULE) {
            nd->mod_first = i;
            nd->mod_count = 1;
        } else if (nd->n_children == 0) {
            nd->mod_first = nd->mod_count = 0;
        } else {
            const qq_node *first = &nodes[nd->first_child], *last = &nodes[nd->first_child + nd->n_children - 1];
            nd->mod_first = first->mod_first;
            nd->mod_count = last->mod_first + last->mod_count - first->mod_first;
        }
    }
    *out = (qq_hierarchy){nodes, n_nodes, block0, n_blocks, mod0, n_tensors, (size_t)n_layer};
    return QR_OK;
}

void qq_hierarchy_free(qq_hierarchy *h)
{
    free(h->nodes);
    memset(h, 0, sizeof *h);
}

bool qq_module_is_matrix(const qq_hierarchy *h, const qr_model_file *file, size_t node)
{
    const qq_node *n = &h->nodes[node];
    return n->kind == QQ_NODE_MODULE && qr_model_file_tensor(file, (size_t)n->tensor)->n_dims == 2;
}

size_t qq_block_of(const qq_hierarchy *h, size_t node)
{
    while (h->nodes[node].kind != QQ_NODE_BLOCK && node != 0)
        node = h->nodes[node].parent;
    return node;
}

bool qq_block_layer(const qq_hierarchy *h, size_t block, size_t *layer)
{
    if (block < h->first_block || block >= h->first_block + h->n_blocks)
        return false;
    size_t i;
    char tail;
    if (sscanf(h->nodes[block].name, "block %zu%c", &i, &tail) != 1 || i >= h->n_layer)
        return false;
    *layer = i;
    return true;
}
