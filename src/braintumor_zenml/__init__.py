"""braintumor_zenml: everything of the project that talks to ZenML, except the steps and
pipelines themselves (`steps/`, `pipelines/`).

- `cli`: the `braintumor` console script, the library's commands plus those that run a
  pipeline or use the model registry;
- `launch`: starting a run (its parameters, submission, what it produced);
- `operations`: promote, roll back and package model versions outside a run;
- `registry`: the Model Control Plane lookups that steps and operations share, and
  `production_model`: the production version and its drift reference (monitoring);
- `materializers`: how the project's own types are stored as artifacts;
- `kubeflow_flavor`: the Kubeflow orchestrator flavor that requests each step's resources;
- `dashboard`: the local ZenML dashboard (`make dashboard`);
- `sources`: how ZenML records this package's classes.

The library (`braintumor`) never imports this package.
"""

# The library first: it sets TensorFlow's environment (oneDNN) before anything imports Keras.
import braintumor  # noqa: F401
