return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                     make_norm(norm_type, out_channels, num_groups))
