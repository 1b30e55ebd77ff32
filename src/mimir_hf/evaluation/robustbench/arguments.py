"""What a RobustBench entry needs beyond the evaluation: the recipe's `--protocol robustbench` options."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RobustBenchArguments"]


@dataclass
class RobustBenchArguments:
    """What a RobustBench entry needs beyond the evaluation (the recipe's `--protocol robustbench` reads these)."""

    robustbench_name: str | None = field(
        default=None, metadata={"help": "Entry name, RobustBench style <FirstAuthor><Year><FirstWordOfTitle>[_<arch>]."}
    )
    paper_link: str | None = field(default=None, metadata={"help": "ModelInfo `link`: the paper's URL."})
    paper_title: str | None = field(default=None, metadata={"help": "ModelInfo `name`: the paper's title."})
    paper_authors: str | None = field(default=None, metadata={"help": "ModelInfo `authors`, comma separated."})
    venue: str | None = field(default=None, metadata={"help": "ModelInfo `venue`, e.g. 'arXiv, Dec 2023'."})
    additional_data: bool | None = field(
        default=None, metadata={"help": "ModelInfo `additional_data`: did training use data beyond the train split?"}
    )
    reported_accuracy: str | None = field(
        default=None, metadata={"help": "ModelInfo `reported`: the robust accuracy (percent) the paper reports."}
    )
    architecture: str | None = field(default=None, metadata={"help": "ModelInfo `architecture` (default: from config)."})
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Hub repo of the checkpoint, for the model-zoo entry (default: model path)."}
    )
    hub_revision: str | None = field(default=None, metadata={"help": "Hub commit the model-zoo entry pins."})
    imagenet_ids_file: str | None = field(
        default=None,
        metadata={"help": "RobustBench's ImageNet list of 5,000 images (default: the copy shipped with mimir_hf)."},
    )
