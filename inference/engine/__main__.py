"""Generate images locally with the engine (`python -m inference.engine`): the post-deployment check
of the seed's section 4.1 ("test generation with a small batch of prompts") without the API.

    python -m inference.engine --registry /srv/model_registry --trust /etc/airlock/keys/signing.pub \\
        --prompt "a lighthouse" --performance Speed --width 1024 --height 1024 --out /tmp/check.png

Each image is audited (`generations`, key id `local-cli`) like an API request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from airlock.audit import AuditLog
from airlock.audit.layout import audit_root
from airlock.errors import AirlockError
from airlock.keys import load_verifier
from airlock.registry import Registry, registry_root


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--registry", type=Path, default=None, help="registry root (default /srv/model_registry)"
    )
    parser.add_argument("--trust", type=Path, default=None, help="public key the manifest is signed with")
    parser.add_argument("--audit-root", type=Path, default=None, help="audit log root")
    parser.add_argument("--tenant", default=None)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default="")
    parser.add_argument("--style", action="append", default=[], dest="styles")
    parser.add_argument("--performance", default="Speed")
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--aspect-ratio")
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("--base-model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True, help="image file to write")
    args = parser.parse_args()

    from inference.engine.engine import Engine, EngineSettings  # torch and diffusers load here
    from inference.engine.request import GenerationRequest

    fields = {k: v for k, v in vars(args).items() if v is not None and k in GenerationRequest.model_fields}
    try:
        request = GenerationRequest(
            **fields, output_format=args.out.suffix.lstrip(".").replace("jpg", "jpeg")
        )
        with AuditLog(args.audit_root or audit_root()) as audit:
            registry = Registry(args.registry or registry_root(), load_verifier(args.trust))
            settings = EngineSettings(device=args.device, min_side=64)
            engine = Engine(registry, audit, settings)
            started = time.perf_counter()
            image = engine.generate(request, args.tenant)[0]
            args.out.write_bytes(image.data)
            meta = image.metadata
            audit.append(
                "generations",
                "generation.completed",
                outcome="success",
                key_id="local-cli",
                tenant=args.tenant,
                prompt=meta["prompt"],
                negative_prompt=meta["negative_prompt"],
                model=meta["base_model"],
                output_ref=str(args.out),
                duration_ms=round((time.perf_counter() - started) * 1000),
                parameters={
                    k: meta[k]
                    for k in (
                        "performance",
                        "width",
                        "height",
                        "steps",
                        "guidance_scale",
                        "sampler",
                        "scheduler",
                        "seed",
                    )
                },
            )
    except (AirlockError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"out": str(args.out), "seed": image.seed, "model": meta["base_model"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
