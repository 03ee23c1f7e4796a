"""Networks for MBDL reconstruction: CNN priors, (E2E-)VarNet, MoDL and the DEQ PnP model; USRNet
for super-resolution.

A DCGAN generator and critic serve the GAN-prior experiments. CNNs are real 2-channel modules; :mod:`mbdlfast.models.channels` converts complex images for them.
"""
from mbdlfast.models.channels import ComplexAdapter, channels_to_complex, complex_to_channels
from mbdlfast.models.dcgan import DCGANDiscriminator, DCGANGenerator
from mbdlfast.models.deq_pnp import DEQ
from mbdlfast.models.dip import DeepDecoder, SkipHourglass, noise_code
from mbdlfast.models.dncnn import DnCNN
from mbdlfast.models.edsr import EDSR
from mbdlfast.models.modl import MoDL
from mbdlfast.models.resunet import ResUNet
from mbdlfast.models.unet import NormUnet, Unet
from mbdlfast.models.usrnet import HyperParameterNet, USRNet
from mbdlfast.models.varnet import SensitivityModel, VarNet, VarNetBlock

__all__ = [
    "ComplexAdapter", "DCGANDiscriminator", "DCGANGenerator", "DEQ", "DeepDecoder", "DnCNN", "EDSR", "HyperParameterNet", "MoDL", "NormUnet", "ResUNet",
    "SensitivityModel", "SkipHourglass", "USRNet", "Unet", "VarNet", "VarNetBlock",
    "channels_to_complex", "complex_to_channels", "noise_code",
]
