"""Independent PyTorch forwards of the backbones, for tests only: modules whose trees (and so
state-dict names) are torchvision's ResNet-50 and ConvNeXt-Tiny (torchvision/models/resnet.py,
convnext.py; torchvision itself cannot be installed beside this machine's torch), in NCHW with
torch's own convolution, batch norm, layer norm and GELU. Each returns (levels {name: NCHW},
head vector, logits).
"""

import torch
from torch import nn
from torch.nn import functional as F


class Bottleneck(nn.Module):
  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU()
    self.downsample = downsample

  def forward(self, x):
    h = self.relu(self.bn1(self.conv1(x)))
    h = self.relu(self.bn2(self.conv2(h)))
    h = self.bn3(self.conv3(h))
    return self.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU()
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for i, (blocks, planes) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512))):
      stride = 1 if i == 0 else 2
      down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                           nn.BatchNorm2d(planes * 4))
      layer = [Bottleneck(inplanes, planes, stride, down)]
      inplanes = planes * 4
      layer += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
      setattr(self, f'layer{i + 1}', nn.Sequential(*layer))
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(2048, 1000)

  def forward(self, x):
    levels = {}
    x = self.relu(self.bn1(self.conv1(x)))
    levels['conv1'] = x
    x = self.maxpool(x)
    for i in range(4):
      x = getattr(self, f'layer{i + 1}')(x)
      levels[f'layer{i + 1}'] = x
    head = torch.flatten(self.avgpool(x), 1)
    return levels, head, self.fc(head)


class LayerNorm2d(nn.LayerNorm):
  def forward(self, x):
    return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                        self.eps).permute(0, 3, 1, 2)


class Permute(nn.Module):
  def __init__(self, dims):
    super().__init__()
    self.dims = dims

  def forward(self, x):
    return x.permute(*self.dims)


class CNBlock(nn.Module):
  def __init__(self, dim):
    super().__init__()
    self.block = nn.Sequential(
        nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim), Permute([0, 2, 3, 1]),
        nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
        Permute([0, 3, 1, 2]))
    self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 1e-6)

  def forward(self, x):
    return x + self.layer_scale * self.block(x)


class ConvNeXtTiny(nn.Module):
  def __init__(self):
    super().__init__()
    norm = lambda c: LayerNorm2d(c, eps=1e-6)
    layers = [nn.Sequential(nn.Conv2d(3, 96, 4, 4), norm(96))]
    settings = ((96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3))
    for cin, cout, depth in settings:
      layers.append(nn.Sequential(*[CNBlock(cin) for _ in range(depth)]))
      if cout is not None:
        layers.append(nn.Sequential(norm(cin), nn.Conv2d(cin, cout, 2, 2)))
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.classifier = nn.Sequential(norm(768), nn.Flatten(1), nn.Linear(768, 1000))

  def forward(self, x):
    levels = {}
    for i, layer in enumerate(self.features):
      x = layer(x)
      if i % 2:
        levels[f'stage{i // 2 + 1}'] = x
    head = self.classifier[:2](self.avgpool(x))
    return levels, head, self.classifier[2](head)


def randomise(model, seed=0):
  """Random values everywhere a pretrained file has them, batch norm statistics and ConvNeXt's
  layer scales included (their initial 0/1/1e-6 would hide a mistake in their mapping)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        module.running_mean.normal_(0, 0.1, generator=g)
        module.running_var.uniform_(0.5, 1.5, generator=g)
        module.weight.uniform_(0.5, 1.5, generator=g)
        module.bias.normal_(0, 0.1, generator=g)
      elif isinstance(module, nn.LayerNorm):
        module.weight.uniform_(0.5, 1.5, generator=g)
        module.bias.normal_(0, 0.1, generator=g)
      elif isinstance(module, CNBlock):
        module.layer_scale.uniform_(0.2, 1.0, generator=g)
  return model.eval()
