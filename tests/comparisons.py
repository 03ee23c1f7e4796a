"""Comparison helpers shared by the kernel tests."""
import torch


def relative_error(result: torch.Tensor, expected: torch.Tensor) -> float:
    """‖result − expected‖ / ‖expected‖, computed in the expected (reference) dtype and on its device."""
    assert result.shape == expected.shape, (result.shape, expected.shape)
    assert expected.abs().max() > 0, "reference is all zero: the comparison would be vacuous"
    return float((result.to(device=expected.device, dtype=expected.dtype) - expected).norm() / expected.norm())


def assert_complex64_matches(pairs, tol: float = 1e-5) -> None:
    """Each (complex64 result, float64 reference) pair has the reference's shape and is within ``tol``."""
    for result, expected in pairs:
        assert result.dtype == torch.complex64 and result.shape == expected.shape
        assert relative_error(result, expected) <= tol


def sampled_columns(width: int, batch: int, per_batch: bool) -> torch.Tensor:
    """Four sampled columns: shared (first, 2, centre, last), or a random sorted set per batch entry."""
    if per_batch:
        return torch.stack([torch.randperm(width)[:4].sort().values for _ in range(batch)])
    return torch.tensor([0, 2, width // 2, width - 1])
