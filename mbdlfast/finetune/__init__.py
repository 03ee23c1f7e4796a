"""Training and fine-tuning: typed configs, the model registry, training batches, self-describing
checkpoints, a trainer with AMP, exact resume and DDP (launched by torchrun), and fine-tuning of
pruned networks (supervised, school, self-supervised)."""
from mbdlfast.finetune.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mbdlfast.finetune.config import DataConfig, ModelConfig, OptimConfig, TrainConfig, load_config
from mbdlfast.finetune.data import TrainingBatch, TrainingSlices, collate_batch, split_train_val
from mbdlfast.finetune.distributed import DistributedContext
from mbdlfast.finetune.finetuner import FinetuneResult, finetune, finetune_from_config
from mbdlfast.finetune.modes import Objective, build_objective
from mbdlfast.finetune.registry import MODEL_REGISTRY, ModelSpec, build_model
from mbdlfast.finetune.trainer import TrainResult, Trainer, train

__all__ = [
    "Checkpoint", "DataConfig", "DistributedContext", "FinetuneResult", "MODEL_REGISTRY", "ModelConfig", "ModelSpec",
    "Objective", "OptimConfig", "TrainConfig", "TrainResult", "Trainer", "TrainingBatch", "TrainingSlices",
    "build_model", "build_objective", "collate_batch", "finetune", "finetune_from_config", "load_checkpoint",
    "load_config", "save_checkpoint", "split_train_val", "train",
]
