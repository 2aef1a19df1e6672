"""notebooks/reach.ipynb runs top to bottom (nbclient, a real kernel) at small sizes in a copy of
the repo: live curve, evaluation GIF, the MLflow comparison, the ONNX controller; and it is
committed without outputs."""

from __future__ import annotations

import json

import pytest

from tests.helpers import ROOT, TINY_PARAMS, copy_repo

SMALL = """
TOTAL_STEPS = 16384
N_ENVS = 64
EVAL_EPISODES = 4
GIF_EPISODES = 1
CONTROLLER_EPISODES = 4
OVERRIDES = []
"""


def test_the_committed_notebook_has_no_outputs():
    nb = json.loads((ROOT / "notebooks" / "reach.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1


@pytest.mark.slow
def test_the_notebook_runs_at_small_sizes(tmp_path):
    import nbformat
    from mlflow.tracking import MlflowClient
    from nbclient import NotebookClient

    repo = copy_repo(tmp_path, TINY_PARAMS, git=False)
    nb = nbformat.read(repo / "notebooks" / "reach.ipynb", as_version=4)
    [params_cell] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params_cell.source = SMALL
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo / "notebooks")}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    mimes = {m for o in outputs for m in o.get("data", {})}
    assert {"image/png", "image/gif", "text/html"} <= mimes  # the curve, the GIF, the runs DataFrame
    text = "".join(o.get("text", "") for o in outputs)
    assert "16,384 steps" in text and "controller" in text and "p99" in text
    assert (repo / "out" / "notebook" / "policy.onnx").is_file()
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("rlcore").experiment_id])
    assert run.data.tags["dvc_stage"] == "notebook" and run.data.tags["mlflow.source.name"] == "notebooks/reach.ipynb"
    assert run.info.status == "FINISHED" and "eval_success_rate" in run.data.metrics
    assert run.data.metrics["eval_reference_within_1mm"] == 1.0 and "reference (dls)" in text  # side by side
    assert (repo / "out" / "notebook" / "eval_cdf.png").is_file()
    assert len(client.get_metric_history(run.info.run_id, "success_rate")) >= 2
