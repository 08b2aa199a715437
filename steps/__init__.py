"""ZenML steps and materializers: thin wrappers around the braintumor library."""
