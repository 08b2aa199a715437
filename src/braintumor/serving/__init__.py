"""Serving helpers: the model card stored with every packaged model, model-store writes and
Bento builds, the predictor the service runs, upload limits and the web page.

Nothing here starts a server: `service.py` at the repository root is the BentoML service and
imports these modules. Heavy dependencies (BentoML, TensorFlow, ONNX Runtime) are imported
inside the functions that need them, so importing this package stays cheap.
"""
