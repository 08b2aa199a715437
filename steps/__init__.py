"""ZenML steps: one per file, thin. Each reads its inputs, calls one library function in
`braintumor`, logs metadata and returns named outputs."""

# The library first: it sets TensorFlow's environment (oneDNN) before any step imports Keras.
import braintumor  # noqa: F401
