"""Networks made fast for scoring give the registered program's answers, or are not used."""

import pytest

torch = pytest.importorskip("torch")

from telescope_assets.ml.inference import for_inference  # noqa: E402
from telescope_assets.ml.networks import QualityNet, RealBogusNet  # noqa: E402


def _program(net, *example):
    """What ``model_registry.load_version`` returns: a ``torch.export`` program's module."""
    torch.manual_seed(0)
    net.eval()
    for module in net.modules():  # batch statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    batch = torch.export.Dim("batch", min=2)
    dynamic = tuple({0: batch} for _ in example)  # any batch size, as MLflow exports it
    return torch.export.export(net, example, dynamic_shapes=dynamic).module()


def test_real_bogus_scores_are_the_programs_with_batch_norm_folded():
    x = torch.randn(40, 3, 63, 63, generator=torch.Generator().manual_seed(1))
    program = _program(RealBogusNet(), x[:2])
    fast = for_inference(program, "real_bogus")
    assert fast is not program
    names = {type(m).__name__ for m in fast.modules()}
    assert "BatchNorm2d" not in names  # folded into the convolutions
    with torch.no_grad():
        torch.testing.assert_close(fast(x), program(x), atol=1e-4, rtol=1e-4)


def test_frame_quality_takes_its_two_inputs():
    g = torch.Generator().manual_seed(2)
    image, scalars = torch.randn(12, 2, 64, 64, generator=g), torch.randn(12, 3, generator=g)
    program = _program(QualityNet(), image[:2], scalars[:2])
    fast = for_inference(program, "frame_quality")
    assert fast is not program
    with torch.no_grad():
        torch.testing.assert_close(
            fast(image, scalars), program(image, scalars), atol=1e-4, rtol=1e-4
        )


def test_a_network_this_code_does_not_know_is_scored_as_registered():
    """Another width (a model trained by other code): the program itself is returned."""
    x = torch.randn(2, 3, 63, 63)
    program = _program(RealBogusNet(width=8), x)
    assert for_inference(program, "real_bogus") is program
    assert for_inference(program, "anomaly") is program
