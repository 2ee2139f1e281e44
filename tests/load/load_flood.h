/* load_flood.h: qslm-load's `flood` mode (load_flood.c): a short generate's latency alone and
 * next to long-text classify floods. */
#ifndef QSLM_LOAD_FLOOD_H
#define QSLM_LOAD_FLOOD_H

/* argv[0] is "flood"; returns the process's exit status. */
int qslm_load_flood(int argc, char **argv);

#endif
