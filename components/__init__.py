"""KFP v2 components: typed wiring around `zonda.stages`, no science.

Each module defines one plain Python function whose body imports zonda and
calls the stage's library entry point; :func:`make_component` turns it into a
lightweight KFP component running in the image the params name. The bodies
must stay self-contained (KFP ships the function source into the container).
"""

from __future__ import annotations

from typing import Callable

from kfp import dsl


def make_component(func: Callable, image: str) -> Callable:
    """A KFP lightweight component of ``func`` that runs in ``image`` (which already has zonda and kfp)."""
    return dsl.component(func, base_image=image, install_kfp_package=False)
