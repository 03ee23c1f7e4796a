"""Networks for MBDL reconstruction: CNN priors, (E2E-)VarNet, MoDL and the DEQ PnP model.

CNNs are real 2-channel modules; :mod:`mbdlfast.models.channels` converts complex images for them.
"""
from mbdlfast.models.channels import ComplexAdapter, channels_to_complex, complex_to_channels
from mbdlfast.models.deq_pnp import DEQ
from mbdlfast.models.dip import DeepDecoder, SkipHourglass, noise_code
from mbdlfast.models.dncnn import DnCNN
from mbdlfast.models.edsr import EDSR
from mbdlfast.models.modl import MoDL
from mbdlfast.models.unet import NormUnet, Unet
from mbdlfast.models.varnet import SensitivityModel, VarNet, VarNetBlock

__all__ = [
    "ComplexAdapter", "DEQ", "DeepDecoder", "DnCNN", "EDSR", "MoDL", "NormUnet", "SensitivityModel", "SkipHourglass",
    "Unet", "VarNet", "VarNetBlock",
    "channels_to_complex", "complex_to_channels", "noise_code",
]
