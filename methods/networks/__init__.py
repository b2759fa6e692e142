"""Networks for DIP: the Survey B U-Net and the original DIP "skip" encoder–decoder."""
from methods.networks.config import NetConfig, build_network

__all__ = ["NetConfig", "build_network"]
