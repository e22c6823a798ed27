"""Reading a compiled KFP pipeline spec (IR) in tests."""

from __future__ import annotations


def pipeline_tasks(ir: dict) -> dict[str, dict]:
    """Every task of the compiled pipeline, nested DAGs (the exit handler's) included, by task name."""
    tasks: dict[str, dict] = {}

    def walk(dag: dict) -> None:
        for name, task in dag["tasks"].items():
            tasks[name] = task
            component = ir["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"])

    walk(ir["root"]["dag"])
    return tasks
