/* cmd_hierarchy.c: `qslm-quant hierarchy MODEL` — the tree, its parameter counts and f32 bytes. */
#include <stdio.h>

#include <json-c/json.h>

#include "cli.h"
#include "tensor_types.h"

static const char *kind_name(qq_node_kind k)
{
    return k == QQ_NODE_MODEL ? "model" : k == QQ_NODE_BLOCK ? "block" : k == QQ_NODE_SUBBLOCK ? "sub-block" : "module";
}

/* Depth-first from the breadth-first array: each node, then its children, indented. */
static void print_node(const qq_hierarchy *h, const qr_model_file *f, size_t i, int depth,
                       json_object *arr)
{
    const qq_node *n = &h->nodes[i];
    const qr_tensor_info *t = n->kind == QQ_NODE_MODULE ? qr_model_file_tensor(f, (size_t)n->tensor) : NULL;
    if (arr) {
        json_object *o = json_object_new_object();
        json_object_object_add(o, "node", json_object_new_string(n->name));
        json_object_object_add(o, "kind", json_object_new_string(kind_name(n->kind)));
        json_object_object_add(o, "depth", json_object_new_int(depth));
        json_object_object_add(o, "params", json_object_new_int64((int64_t)n->params));
        json_object_object_add(o, "matrix_params", json_object_new_int64((int64_t)n->matrix_params));
        json_object_object_add(o, "f32_bytes", json_object_new_int64((int64_t)(n->params * 4)));
        if (t) {
            json_object *shape = json_object_new_array();
            for (uint32_t d = 0; d < t->n_dims; d++)
                json_object_array_add(shape, json_object_new_int64((int64_t)t->dims[d]));
            json_object_object_add(o, "shape", shape);
            json_object_object_add(o, "quantizable", json_object_new_boolean(t->n_dims == 2));
        }
        json_object_array_add(arr, o);
    } else {
        char shape[96] = "";
        if (t) {
            int len = 0;
            for (uint32_t d = 0; d < t->n_dims && len < (int)sizeof shape - 24; d++)
                len += snprintf(shape + len, sizeof shape - (size_t)len, "%s%llu", d ? " x " : "(",
                                (unsigned long long)t->dims[d]);
            snprintf(shape + len, sizeof shape - (size_t)len, ")%s", t->n_dims == 2 ? "" : " kept f32");
        }
        printf("%*s%-*s %12llu %14llu  %s\n", 2 * depth, "", 44 - 2 * depth, n->name,
               (unsigned long long)n->params, (unsigned long long)(n->params * 4), shape);
    }
    if (n->kind != QQ_NODE_MODULE)
        for (size_t c = 0; c < n->n_children; c++)
            print_node(h, f, n->first_child + c, depth + 1, arr);
}

int qq_cmd_hierarchy(const qq_options *o)
{
    qr_error err;
    qr_model_file *f;
    qq_hierarchy h;
    if (qr_model_file_open(o->model_path, &f, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        return EXIT_USAGE;
    }
    if (qq_hierarchy_build(f, &h, &err)) {
        fprintf(stderr, "qslm-quant: %s\n", err.msg);
        qr_model_file_close(f);
        return EXIT_USAGE;
    }
    json_object *arr = o->json ? json_object_new_array() : NULL;
    if (!o->json) {
        printf("%s: %zu blocks, %zu layers, %zu modules (%llu of %llu parameters in matrices, the quantizable ones)\n\n",
               o->model_path, h.n_blocks, h.n_layer, h.n_modules, (unsigned long long)h.nodes[0].matrix_params,
               (unsigned long long)h.nodes[0].params);
        printf("%-44s %12s %14s\n", "node", "parameters", "bytes at f32");
    }
    print_node(&h, f, 0, 0, arr);
    if (arr) {
        printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
        json_object_put(arr);
    }
    qq_hierarchy_free(&h);
    qr_model_file_close(f);
    return 0;
}
