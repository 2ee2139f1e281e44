/* budget.h: the memory and power budget strings of set-budget ("32M", "3.5W"), and the one size
 * grammar of every qslm tool (qslmctl, qslmd and its configuration, qslm-quant).
 *
 * Strict on purpose: these come from people (qslmctl set-budget 32M) and from scripts, and a
 * typo must be refused, not read as something else. No sign, no spaces, no exponent, nothing
 * after the unit, no value that overflows. The grammars (also in PROTOCOL.md):
 *
 *   memory := DIGITS [ "." DIGITS ] UNIT | DIGITS [ "B" ]
 *   UNIT   := "K" | "M" | "G" | "T" | "k" | "m" | "g" | "t" | "KiB" | "MiB" | "GiB" | "TiB"
 *             1024-based (K = 1024 bytes), as systemd's MemoryMax=; no unit or "B" = bytes.
 *             A fraction (at most QI_MEMORY_DECIMALS_MAX decimals) needs a unit and is rounded
 *             down to whole bytes, as systemd does: "5.5M" = 5767168, "4.65M" = 4875878.
 *             "MB", "kB" and the like are refused with a hint (systemd refuses them too: a
 *             reader cannot tell 1000 from 1024). 1 .. 2^64-1 bytes.
 *   power  := DIGITS [ "." DIGITS ] [ "W" | "mW" ]
 *             watts when no unit; at most 6 decimals for W (1 uW resolution) and 3 for mW;
 *             1 uW .. 1,000,000 W.
 *
 * where DIGITS is 1..20 ASCII digits (leading zeros allowed). "auto" is not a budget string;
 * the request parser handles it. Strings are given with their length (JSON strings may hold
 * anything) and may be at most QI_BUDGET_TEXT_MAX bytes. */
#ifndef QI_BUDGET_H
#define QI_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "ipc_error.h"

#define QI_BUDGET_TEXT_MAX 32
#define QI_MEMORY_DECIMALS_MAX 18 /* 10^18 < 2^63: the fraction's arithmetic stays exact (the
                                   * messages say 18) */
#define QI_POWER_MAX_UW UINT64_C(1000000000000) /* 1,000,000 W */

/* "32M" -> 33554432. Errors are QI_ERR_INVALID_ARGUMENT naming `field` (may be NULL). */
qi_code qi_parse_memory(const char *s, size_t len, const char *field, uint64_t *bytes,
                        qi_error *err);

/* "3.5W" -> 3500000 microwatts. */
qi_code qi_parse_power(const char *s, size_t len, const char *field, uint64_t *microwatts,
                       qi_error *err);

/* The inverses, for messages and tools: the largest unit that divides exactly ("32M", "1536K",
 * "1000"), and watts with the decimals needed ("3.5W", "0.000001W"). Both read back through the
 * parsers to the same value. They return buf; cap >= QI_BUDGET_TEXT_MAX is always enough. */
const char *qi_format_memory(uint64_t bytes, char *buf, size_t cap);
const char *qi_format_power(uint64_t microwatts, char *buf, size_t cap);

#endif
