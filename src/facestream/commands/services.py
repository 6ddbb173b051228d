"""`facestream <service>`: each pipeline service as a subcommand (also `facestream-<service>`)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    from facestream.services import detector, embedder, frame_sampler, matcher, review

    for name, module in (
        ("frame-sampler", frame_sampler),
        ("detector", detector),
        ("embedder", embedder),
        ("matcher", matcher),
        ("review", review),
    ):
        summary = (module.__doc__ or name).strip().splitlines()[0]
        p = sub.add_parser(name, help=f"run the {summary}", description=module.__doc__)
        module.parser(p)
        p.set_defaults(handler=module.run)
