/* The training loop's checkpoints also record how many data-parallel ranks
 * wrote them, so a run resumed on another rank count can say so. Internal:
 * the public flash_ckpt_info keeps its size for plugins built against it. */
#ifndef FLASH_CHECKPOINT_INTERNAL_H
#define FLASH_CHECKPOINT_INTERNAL_H

#include "flash/flash.h"

/* ranks <= 0: not recorded (flash_checkpoint_save) */
flash_status flash_checkpoint_save_ranks(const char *path, flash_params *p, const flash_ckpt_info *info, int ranks,
                                         flash_error *err);
/* The weights and their EMA block (when p has one), without the Adam
 * moments: a training snapshot (trainer.h), loaded as any checkpoint. */
flash_status flash_checkpoint_save_weights(const char *path, flash_params *p, const flash_ckpt_info *info,
                                           flash_error *err);
/* *ranks = the recorded count, 0 when the file has none */
flash_status flash_checkpoint_load_ranks(const char *path, flash_params *p, flash_ckpt_info *info, int *ranks,
                                         flash_error *err);

#endif
