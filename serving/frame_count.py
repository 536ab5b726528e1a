"""How many frames a request makes, from its inputs alone (plain Python: the forwarding model
counts the frames it should get back without the runtime): 1 for an image task; for video,
``num_frames``, or a video edit's clip length, or the model's trained number of frames."""

from __future__ import annotations

from nuwa.spec.tasks import find_task


def request_frames(
    task: str, num_frames: int | None, video_frames: int | None, trained_frames: int
) -> int:
    info = find_task(task)
    if info is None or not info.video:
        return 1
    if num_frames is not None:
        return num_frames
    if info.name == "tv2v" and video_frames is not None:
        return video_frames
    return trained_frames
