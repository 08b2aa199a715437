"""KerasModelMaterializer: `.keras` round trip, directly and through a real ZenML pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from braintumor.models.backbones import CnnSpec, build_classifier

REPO = Path(__file__).resolve().parents[1]


def tiny_model() -> keras.Model:
    return build_classifier("custom_cnn", input_shape=(32, 32, 1), cnn=CnnSpec(filters=(8, 16)))


def test_round_trip_writes_model_keras_and_predicts_the_same(tmp_path: Path) -> None:
    from braintumor_zenml.materializers import MODEL_FILE, KerasModelMaterializer

    model = tiny_model()
    materializer = KerasModelMaterializer(uri=str(tmp_path / "artifact"))
    materializer.save(model)
    assert (tmp_path / "artifact" / MODEL_FILE).is_file()
    assert not list((tmp_path / "artifact").glob("*.pkl"))
    loaded = materializer.load(keras.Model)
    assert isinstance(loaded, keras.Model)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )
    metadata = materializer.extract_metadata(model)
    assert metadata["num_params"] == model.count_params()
    assert metadata["input_shape"] == "(32, 32, 1)"


PIPELINE = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    from zenml import pipeline, step
    from zenml.client import Client
    from braintumor.models.backbones import CnnSpec, build_classifier
    from braintumor_zenml.materializers import KerasModelMaterializer

    @step(output_materializers=KerasModelMaterializer)
    def make() -> keras.Model:
        keras.utils.set_random_seed(0)
        return build_classifier("custom_cnn", input_shape=(32, 32, 1), cnn=CnnSpec(filters=(8,)))

    @step
    def use(model: keras.Model) -> list:
        x = np.full((1, 32, 32, 1), 100.0, "float32")
        return keras.ops.convert_to_numpy(model(x))[0].tolist()

    @pipeline(enable_cache=False)
    def roundtrip():
        use(make())

    run = roundtrip()
    run = Client().get_pipeline_run(run.id)
    artifact = run.steps["make"].outputs["output"][0]
    probs = run.steps["use"].outputs["output"][0].load()
    print(json.dumps({"uri": artifact.uri, "materializer": artifact.materializer.import_path,
                      "probs": probs, "type": artifact.type}))
    """
)


@pytest.mark.slow
def test_models_pass_between_real_zenml_steps_without_pickling(tmp_path: Path) -> None:
    pytest.importorskip("zenml")
    env = {
        **os.environ,
        "ZENML_CONFIG_PATH": str(tmp_path / "zenml"),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_LOGGING_VERBOSITY": "WARN",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    script = tmp_path / "roundtrip.py"
    script.write_text(PIPELINE)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["materializer"].endswith("braintumor_zenml.materializers.KerasModelMaterializer")
    assert Path(result["uri"], "model.keras").is_file()
    assert len(result["probs"]) == 4 and abs(sum(result["probs"]) - 1) < 1e-5
