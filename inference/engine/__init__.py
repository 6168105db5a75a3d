"""The offline SDXL engine: registry-verified models only, Fooocus' generation features on diffusers.

Importing this package is cheap; torch and diffusers load with `inference.engine.engine`."""
