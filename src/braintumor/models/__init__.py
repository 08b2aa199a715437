"""Model building blocks: serialisable layers, the backbone registry, export."""
