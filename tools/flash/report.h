/* Result collection and reports, shared by `flash sweep` and `flash report`.
 *
 * A sweep directory holds runs/<id>/ folders, each with run.json (what the
 * sweep planned: method, seed, guidance, the method of each `flash run`
 * variant and its noise-correction flag), config.yaml (the resolved config),
 * results.json (written by `flash run`), DONE when the run finished (written
 * atomically) or FAILED with the error. Collection reads only these files,
 * so run folders produced elsewhere (a cluster job array) are collected the
 * same way. A plain `flash run` directory (results.json and no runs/) is
 * collected as one run. */
#ifndef FLASH_TOOLS_REPORT_H
#define FLASH_TOOLS_REPORT_H

#include "flash/flash.h"

#define FLASH_SWEEP_DONE "DONE"
#define FLASH_SWEEP_FAILED "FAILED"
#define FLASH_SWEEP_META "run.json"

/* Collects dir and writes, into out (dir when NULL): results.csv (one row
 * per run and variant), results.json (rows and the aggregated table),
 * table.md and table.csv (mean and spread over seeds, relative columns
 * against baseline: a variant or method name; NULL picks the 25-step
 * teacher) and report.html (self-contained). Prints the Markdown table on
 * stdout when print is set. */
flash_status flash_report_write(const char *dir, const char *baseline, const char *out, int print, flash_error *err);

#endif
