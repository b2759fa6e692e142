"""Named image sets for the natural-image experiments.

Survey A's Figs 3 and 6 use ImageNet images that it does not list (and ImageNet
cannot be redistributed). Each set here *substitutes* them with named CBSD68 images
(the data set Survey A uses for its other natural-image results) and, for a fresh
clone without CBSD68, with photos bundled in scikit-image. Every set says what it
replaces; results on it are not the paper's images.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageSet:
    description: str
    substitutes: str  # what the paper used
    cbsd68: list[str] = field(default_factory=list)  # CBSD68 file stems (0000 … 0067)
    skimage: list[str] = field(default_factory=list)  # scikit-image photo names (sources.images.SKIMAGE_PHOTOS)


IMAGE_SETS: dict[str, ImageSet] = {
    "a_fig3": ImageSet(
        description=(
            "4 felines for the peak-iteration spread (A-F3): CBSD68 lion (0012, BSDS 105025), tiger (0014, 108005), "
            "clouded leopard (0030, 160068), black panther (0064, 304034). scikit-image has only one cat photo "
            "(chelsea), so its list is chelsea plus three other photos."
        ),
        substitutes="4 'cat' images from ImageNet (Survey A Fig 3; not identified in the paper)",
        cbsd68=["0012", "0014", "0030", "0064"],
        skimage=["chelsea", "coffee", "astronaut", "rocket"],
    ),
    "a_fig6": ImageSet(
        description=(
            "10 object-centred CBSD68 photos for the mean-PSNR robustness curves (A-F6): airplane 0000, penguin 0013, "
            "fox cubs 0029, mushroom 0041, anemone fish 0042, vase 0047, zebras 0052, horse 0057, elephants 0060, "
            "butterflyfish 0066. scikit-image bundles only 6 distinct colour photos, so its list has 6."
        ),
        substitutes="10 ImageNet images (Survey A Fig 6; not identified in the paper)",
        cbsd68=["0000", "0013", "0029", "0041", "0042", "0047", "0052", "0057", "0060", "0066"],
        skimage=["astronaut", "coffee", "chelsea", "rocket", "motorcycle", "immunohistochemistry"],
    ),
    "a_fig6_quick": ImageSet(
        description="the first 3 photos of a_fig6 (airplane 0000, penguin 0013, fox cubs 0029; scikit-image: "
                    "astronaut, coffee, chelsea), for the CPU twin of A-F6",
        substitutes="10 ImageNet images (Survey A Fig 6; not identified in the paper)",
        cbsd68=["0000", "0013", "0029"],
        skimage=["astronaut", "coffee", "chelsea"],
    ),
}

SET_SOURCES = ("cbsd68", "skimage")


def images_in_set(name: str, source: str) -> list[str]:
    """The image names of set ``name`` for image source ``cbsd68`` or ``skimage``."""
    if name not in IMAGE_SETS:
        raise KeyError(f"unknown image set {name!r}; valid: {', '.join(sorted(IMAGE_SETS))}")
    if source not in SET_SOURCES:
        raise KeyError(
            f"image set {name!r} has no list for source {source!r}; valid sources: {', '.join(SET_SOURCES)} "
            "(for a folder of your own PNGs, list the images explicitly)"
        )
    return list(getattr(IMAGE_SETS[name], source))
