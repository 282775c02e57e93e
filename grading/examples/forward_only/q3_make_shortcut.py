return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
