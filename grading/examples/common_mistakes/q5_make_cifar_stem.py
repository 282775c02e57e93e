return nn.Sequential(
    nn.Conv2d(3, out_channels, 3, stride=1, padding=1, bias=False),
    make_norm(norm_type, out_channels, num_groups),
    nn.ReLU(inplace=True),
    nn.MaxPool2d(3, stride=2, padding=1),
)
