/* flash report RUNDIR [--baseline NAME] [--out DIR]: flash_report_write
 * (flash/pipeline.h) behind a command line. */
#include "cli.h"

#include <stdio.h>

typedef struct report_args {
    const char *dir, *baseline, *out;
} report_args;

static const flash_opt report_opts[] = {
    FLASH_STRING("--baseline", "NAME", report_args, baseline, "the variant or method that is 100% in the relative\n"
                                                              "columns (default: the 25-step teacher)"),
    FLASH_STRING("--out", "DIR", report_args, out, "where to write (default RUNDIR)"),
    FLASH_OPT_FORCE_ENTRY,
    {0},
};

static const flash_command report_cmd = {
    .name = "report",
    .positional = "RUNDIR",
    .positional_offset = offsetof(report_args, dir),
    .opts = report_opts,
    .about = "Builds tables (Markdown, CSV, JSON) and a self-contained HTML report\n"
             "with sample pictures and plots from a sweep directory (its runs/<id>/\n"
             "folders, wherever they were produced) or a `flash run` directory.\n"
             "Writes results.csv (one row per run and variant), results.json,\n"
             "table.md, table.csv (mean and spread over seeds) and report.html.\n",
};

int flash_cmd_report(int argc, char **argv)
{
    report_args a = {0};
    int rc;
    if (!flash_options_parse(&report_cmd, argc, argv, &a, &rc)) return rc;
    flash_error err = {0};
    flash_status st = flash_report_write(a.dir, a.baseline, a.out, stdout, &err);
    return st ? flash_cli_fail("report", &err) : FLASH_EXIT_OK;
}
