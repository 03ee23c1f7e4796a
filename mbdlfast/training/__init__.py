"""Training infrastructure: typed configs, the model registry, training batches, self-describing
checkpoints (pruned shapes included), the objective, and a trainer with AMP, exact resume and DDP
(launched by torchrun). Fine-tuning of pruned networks builds on it in :mod:`mbdlfast.finetune`."""
from mbdlfast.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, save_pruned
from mbdlfast.training.config import DataConfig, ModelConfig, OptimConfig, TrainConfig, load_config
from mbdlfast.training.data import (
    AcquiredSlices, TrainingBatch, TrainingSlices, collate_batch, split_train_val, training_slices
)
from mbdlfast.training.distributed import DistributedContext
from mbdlfast.training.objective import Objective, SupervisedTerm
from mbdlfast.training.registry import MODEL_REGISTRY, ModelSpec, build_model, model_spec
from mbdlfast.training.trainer import TrainResult, Trainer, train

__all__ = [
    "AcquiredSlices", "Checkpoint", "DataConfig", "DistributedContext", "MODEL_REGISTRY", "ModelConfig", "ModelSpec",
    "Objective", "OptimConfig", "SupervisedTerm", "TrainConfig", "TrainResult", "Trainer", "TrainingBatch",
    "TrainingSlices", "build_model", "collate_batch", "load_checkpoint", "load_config", "model_spec",
    "save_checkpoint", "save_pruned", "split_train_val", "train", "training_slices",
]
