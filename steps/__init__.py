"""ZenML steps: one per file, thin. Each reads its inputs, calls one library function in
`braintumor`, logs metadata and returns named outputs."""
