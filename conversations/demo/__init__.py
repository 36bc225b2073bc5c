"""The bundled offline gateway: `script` (how it answers), `server` (its HTTP side)."""
