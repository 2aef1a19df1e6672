"""The exported policy in MLflow: logged with the onnx flavor into the pipeline's run (the runs
table's Model column), registered as `rlcore-reach` from `export.register_min_success`, and the
alias `champion` moved only to a version with a higher held-out success than the current one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlcore.tracking import runs as tracking

MODEL_NAME = "rlcore-reach"
CHAMPION = "champion"
SUCCESS_TAG = "heldout_success_rate"


def log_onnx_model(
    run_id: str, path: Path, example_obs: np.ndarray, success: float | None, min_success: float
) -> dict[str, Any]:
    """Log the ONNX file into `run_id` (signature inferred from onnxruntime on `example_obs`);
    register it when `success` (held-out, from eval.json) reaches `min_success`; returns what
    happened: model_uri, version (or None) and whether it became the champion."""
    import mlflow
    import onnx
    import onnxruntime as ort
    from mlflow.models import infer_signature

    tracking.setup()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = dict(zip(["action", "joint_velocity"], session.run(None, {"obs": example_obs})))
    signature = infer_signature({"obs": example_obs}, outputs)
    register = success is not None and success >= min_success

    def log() -> Any:
        with mlflow.start_run(run_id=run_id):
            return mlflow.onnx.log_model(
                onnx.load(str(path)),
                name="policy",
                signature=signature,
                input_example={"obs": example_obs},
                registered_model_name=MODEL_NAME if register else None,
                onnx_execution_providers=["CPUExecutionProvider"],  # a controller's CPU; no GPU provider assumed
            )

    info = tracking.retry(log, "logging the ONNX model")
    result: dict[str, Any] = {"model_uri": info.model_uri, "version": None, "champion": False}
    if not register:
        why = "unknown (no out/eval.json)" if success is None else f"{success:.1%}"
        result["not_registered"] = f"held-out success {why}, below export.register_min_success {min_success:.1%}"
        return result
    version = str(info.registered_model_version)
    result["version"] = version
    client = tracking.client()
    tracking.retry(lambda: client.set_model_version_tag(MODEL_NAME, version, SUCCESS_TAG, str(success)), "tagging")
    result["champion"] = promote_if_better(client, version, float(success))
    return result


def champion_success(client: Any) -> tuple[str | None, float | None]:
    """(version, held-out success) of the current champion, or (None, None)."""
    try:
        current = client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    except Exception:  # noqa: BLE001 - no alias yet (MLflow raises RESOURCE_DOES_NOT_EXIST)
        return None, None
    value = current.tags.get(SUCCESS_TAG)
    return current.version, (float(value) if value is not None else None)


def promote_if_better(client: Any, version: str, success: float) -> bool:
    """Point `champion` at `version` when there is no champion or it beats the champion's success."""
    _, best = champion_success(client)
    if best is not None and success <= best:
        return False
    tracking.retry(lambda: client.set_registered_model_alias(MODEL_NAME, CHAMPION, version), "moving the alias")
    return True
