"""The torch adapter starts as the identity and exports to the numpy adapter the library applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.adapters import Adapter
from trainer.adapter_model import ResidualAdapter, TwinAdapter


def test_starts_as_the_identity():
    x = torch.nn.functional.normalize(torch.randn(20, 16), dim=-1)
    twin = TwinAdapter(16)
    img, txt = twin(x, x)
    torch.testing.assert_close(img, x)
    torch.testing.assert_close(txt, x)
    assert twin.image.down.out_features == 8  # max(8, 16 // 4)


@pytest.mark.parametrize("blend", [1.0, 0.3])
def test_export_matches_torch(blend):
    torch.manual_seed(0)
    twin = TwinAdapter(16, hidden=6)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.nn.functional.normalize(torch.randn(30, 16), dim=-1)
    exported = twin.export(blend, profile="boats")
    assert isinstance(exported, Adapter) and exported.metadata == {"profile": "boats"}
    with torch.no_grad():
        img, txt = twin(x, x, blend)
    np.testing.assert_allclose(exported.apply_image(x.numpy()), img.numpy(), atol=1e-5)
    np.testing.assert_allclose(exported.apply_text(x.numpy()), txt.numpy(), atol=1e-5)
    again = TwinAdapter.from_adapter(exported)
    with torch.no_grad():
        torch.testing.assert_close(again(x, x, blend)[0], img)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="positive"):
        ResidualAdapter(0)
    with pytest.raises(ValueError, match="hidden"):
        ResidualAdapter(16, hidden=0)
