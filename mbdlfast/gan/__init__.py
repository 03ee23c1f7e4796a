"""GAN priors (section 5 of the lottery-image-prior paper): a generator z -> image trained on image
crops, compressed sensing and inpainting by optimising its input (CSGM, Bora et al. 2017) with the
robust median-of-means objective of Jalal et al. (2020), and lottery tickets of its weights (IMP)."""
from mbdlfast.gan.inversion import (
    GaussianMeasurements, PixelMask, corrupt_measurements, invert_generator, median_of_means, per_pixel_error,
)
from mbdlfast.gan.lottery import generator_imp
from mbdlfast.gan.training import ImageCrops, train_gan

__all__ = ["GaussianMeasurements", "ImageCrops", "PixelMask", "corrupt_measurements", "generator_imp",
           "invert_generator", "median_of_means", "per_pixel_error", "train_gan"]
