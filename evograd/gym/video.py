"""Writing rendered frames: GIF through Pillow (a matplotlib dependency), MP4 through the optional
`video` extra (imageio with its ffmpeg plugin)."""
from __future__ import annotations

import os

import numpy as np


def write_video(frames: list[np.ndarray], path: str | os.PathLike, fps: int = 30) -> None:
    if not frames:
        raise ValueError("no frames to write (did the env render?)")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.lower().endswith(".gif"):
        from PIL import Image

        images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, int(1000 / fps)), loop=0)
        return
    if path.lower().endswith(".mp4"):
        try:
            import imageio.v2 as imageio
        except ImportError:
            raise ValueError("writing .mp4 needs the video extra: pip install 'evograd[video]' "
                             "(or write a .gif, which needs nothing more)") from None
        imageio.mimsave(path, [np.asarray(f, dtype=np.uint8) for f in frames], fps=fps)
        return
    raise ValueError(f"--video needs a .gif or .mp4 path; got {path!r}")
