"""From a robustness report to a RobustBench leaderboard submission.

RobustBench ranks models by AutoAttack "standard" accuracy on fixed images: all 10,000 CIFAR-10/100
test images, and for ImageNet a fixed list of 5,000 validation images (shipped here as package data,
see `data/NOTICE.md`). A leaderboard entry is a `model_info/<dataset>/<threat_model>/<Name>.json` in
RobustBench's `ModelInfo` schema, with accuracies as percentage strings ("59.68"), plus a "[New Model]"
issue and, for the model zoo, a loader.

What an evaluation cannot know (the paper's title, authors, venue and link; whether the training used
extra data; the accuracy the paper reports) is left null unless given, and named in the output. An
evaluation that does not follow the protocol (another data set, a subset, a partial AutoAttack, failed
gradient-masking checks) still produces a schema-valid file, but its footnote starts with
"NOT A ROBUSTBENCH ENTRY" and says why, so it can never pass for a leaderboard number.

The parts: `arguments` (what the recipe asks the user), `datasets` (RobustBench's names and images),
`protocol` (what an entry must follow), `schema` (ModelInfo and its validator), `model_info` (building
it from a report), `submission` (the files).
"""

from .arguments import RobustBenchArguments
from .datasets import (
    ROBUSTBENCH_EPSILONS,
    ROBUSTBENCH_NUM_IMAGES,
    imagenet_test_image_ids,
    imagenet_test_indices,
    robustbench_dataset,
)
from .model_info import build_model_info
from .protocol import NOT_AN_ENTRY, check_protocol_arguments, protocol_problems
from .schema import (
    CORRUPTIONS_MODEL_INFO_FIELDS,
    CORRUPTIONS_MODEL_INFO_SCHEMA,
    MODEL_INFO_FIELDS,
    MODEL_INFO_SCHEMA,
    validate_model_info,
)
from .submission import RobustBenchSubmission, write_robustbench_corruptions_info, write_robustbench_submission

__all__ = [
    "CORRUPTIONS_MODEL_INFO_FIELDS",
    "CORRUPTIONS_MODEL_INFO_SCHEMA",
    "MODEL_INFO_FIELDS",
    "MODEL_INFO_SCHEMA",
    "NOT_AN_ENTRY",
    "ROBUSTBENCH_EPSILONS",
    "ROBUSTBENCH_NUM_IMAGES",
    "RobustBenchArguments",
    "RobustBenchSubmission",
    "build_model_info",
    "check_protocol_arguments",
    "imagenet_test_image_ids",
    "imagenet_test_indices",
    "protocol_problems",
    "robustbench_dataset",
    "validate_model_info",
    "write_robustbench_corruptions_info",
    "write_robustbench_submission",
]
