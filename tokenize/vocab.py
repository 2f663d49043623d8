"""Gato's token vocabulary and tokenizer constants, named once (docs/format.md section 2).

Layout of the id space::

    [0, 32000)      text: SentencePiece ids
    [0, 1024)       discrete values (not shifted: they share ids with text, as in Gato)
    [32000, 33024)  continuous values: 1024 mu-law (or linear, for bounded actions) bins
    33024           separator between a timestep's observation and its action
    33025           image-patch placeholder: one per 16x16 patch, where the patch's
                    embedding goes in the sequence (patches are never turned into ids)
"""

from __future__ import annotations

import math

TEXT_VOCAB_SIZE = 32_000
DISCRETE_VOCAB_SIZE = 1_024

NUM_CONTINUOUS_BINS = 1_024
CONTINUOUS_OFFSET = TEXT_VOCAB_SIZE  # continuous bin i is token 32000 + i

SEPARATOR = CONTINUOUS_OFFSET + NUM_CONTINUOUS_BINS  # 33024
IMAGE_PATCH = SEPARATOR + 1  # 33025, documented special id after the separator
VOCAB_SIZE = IMAGE_PATCH + 1  # 33026 ids in the shared embedding table

# Mu-law companding, F(x) = sign(x) * ln(1 + MU*|x|) / ln(1 + M*MU).
MU_LAW_MU = 100.0
MU_LAW_M = 256.0
MU_LAW_DENOMINATOR = math.log(1.0 + MU_LAW_M * MU_LAW_MU)  # ln(25601)

# Images are cut into non-overlapping PATCH_SIZE x PATCH_SIZE patches in raster order.
PATCH_SIZE = 16
# Normalised pixels ([-1, 1]) are divided by sqrt(PATCH_SIZE) at training time.
PIXEL_SCALE = math.sqrt(PATCH_SIZE)
# Patch row/column positions are quantised to this many levels (Gato section 2.3).
PATCH_POSITION_LEVELS = 128
