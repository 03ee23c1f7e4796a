"""Fine-tuning of pruned networks on the training loop of :mod:`mbdlfast.training`: the modes
(supervised, school from a frozen teacher, self-supervised by measurement consistency and
equivariant imaging) and the fine-tuner."""
from mbdlfast.finetune.finetuner import FinetuneResult, finetune, finetune_from_config
from mbdlfast.finetune.modes import MODES, build_objective, parse_mode

__all__ = ["FinetuneResult", "MODES", "build_objective", "finetune", "finetune_from_config", "parse_mode"]
