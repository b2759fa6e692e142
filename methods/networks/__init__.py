"""Networks for DIP: the Survey B U-Net, the original DIP "skip" encoder–decoder, the deep decoder and
Survey A's 1-D CNN."""
from methods.networks import cnn1d, decoder, skipnet, unet  # noqa: F401 (they register themselves)
from methods.networks.config import (
                                     NETWORKS,
                                     NetConfig,
                                     SkipNetConfig,
                                     UNetConfig,
                                     build_network,
                                     network_configs,
                                     register_network,
)

__all__ = ["NETWORKS", "NetConfig", "SkipNetConfig", "UNetConfig", "build_network", "network_configs",
           "register_network"]
