"""Control catalogs as data: one YAML file per framework in this folder.

A catalog lists controls (id, title, the checks that evidence it, the question that stays manual).
`derive_from` renames another catalog's controls (CMMC L2 practices are 800-171 requirements);
`include` takes another catalog whole and adds controls (ITAR = the 800-171 baseline + its own).
Loading fails on an unknown check id, a duplicate control or a control with neither checks nor a
manual question: a catalog that claims evidence it cannot produce is refused, not rendered.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from airlock.errors import AirlockError
from compliance.checks import CHECKS

HERE = Path(__file__).parent
ORDER = ("soc2", "hipaa", "nist800_171", "cmmc_l2", "itar")


class CatalogError(AirlockError):
    pass


def _read(name: str) -> dict:
    path = HERE / f"{name}.yaml"
    if not path.is_file():
        raise CatalogError(f"no catalog {name}: expected {path}")
    return yaml.safe_load(path.read_text())


def _controls(name: str) -> list[dict]:
    data = _read(name)
    if "derive_from" in data:
        domains = data["domains"]
        derived = []
        for control in _controls(data["derive_from"]):
            family = control["id"].rsplit(".", 1)[0]
            if family not in domains:
                raise CatalogError(f"{name}.yaml: no domain for {data['derive_from']} family {family}")
            new_id = data["id_format"].format(domain=domains[family], id=control["id"])
            derived.append(
                {**control, "id": new_id, "derived_from": f"{data['derive_from']} {control['id']}"}
            )
        return derived
    controls = _controls(data["include"]) if "include" in data else []
    return controls + [{"checks": [], "manual": None, **c} for c in data.get("controls", [])]


def load(name: str) -> dict:
    data = _read(name)
    controls = _controls(name)
    seen: set[str] = set()
    for control in controls:
        where = f"{name}.yaml control {control['id']}"
        if control["id"] in seen:
            raise CatalogError(f"{where}: listed twice")
        seen.add(control["id"])
        unknown = [c for c in control["checks"] if c not in CHECKS]
        if unknown:
            raise CatalogError(f"{where}: unknown check(s) {', '.join(unknown)} (see compliance/checks.py)")
        if not control["checks"] and not control.get("manual"):
            raise CatalogError(f"{where}: no checks and no manual question; say what an assessor must ask")
    return {"id": data["id"], "title": data["title"], "controls": controls}


def load_all(names: tuple[str, ...] = ORDER) -> list[dict]:
    return [load(name) for name in names]
